#pragma once

#include <functional>
#include <memory>

#include <QMainWindow>

#include "ui/common/run_history.h"

class QLabel;
class QTabWidget;

namespace dlab::ui {

class BatchView;
class ExplorerView;
class ForwardView;
class HistoryView;
class LectureTour;
class ModelsView;
class LikelihoodView;
class SdsView;
class VideoView;
class TrainingView;
class ToyView;
class ReverseView;
class ScheduleView;

/// Startup settings the entry point passes to the window.
struct MainWindowOptions {
    QString deviceLabel;  ///< e.g. "CPU" or "CUDA:0"
    int threads = 1;
    QString torchVersion;
    /// The first start: once the model is loaded, a chain plays by itself for a few classes.
    bool firstStart = false;
    QString precision{};  ///< the CUDA inference precision ("fp32", "fp16", "bf16"); empty: a CPU run
};

/// The application window: one tab per view (schedules first; more views build on it).
class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(const MainWindowOptions& options, QWidget* parent = nullptr);
    ScheduleView* scheduleView() const { return m_schedules; }
    ReverseView* reverseView() const { return m_reverse; }
    BatchView* batchView() const { return m_batch; }
    ToyView* toyView() const { return m_toy; }
    ExplorerView* explorerView() const { return m_explorer; }
    TrainingView* trainingView() const { return m_training; }
    ForwardView* forwardView() const { return m_forward; }
    HistoryView* historyView() const { return m_historyView; }
    LectureTour* tour() const { return m_tour; }
    ModelsView* modelsView() const { return m_models; }
    LikelihoodView* likelihoodView() const { return m_likelihood; }
    SdsView* sdsView() const { return m_sds; }
    VideoView* videoView() const { return m_video; }
    RunHistory* history() const { return m_history.get(); }
    int currentTab() const;
    /// Shows the tab at `index` (ignored when out of range).
    void setCurrentTab(int index);
    /// Loads a bundled model by name in the lab (unless it is loaded), then calls `then`.
    void withBundledModel(const QString& name, std::function<void()> then);

    /// Chooses the CUDA inference precision ("fp32", "fp16" or "bf16"; Settings menu), keeps it in
    /// the settings and reloads the lab's model in it. Ignored on a CPU run or for another name.
    void setPrecision(const QString& name);

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void restoreState();
    QString deviceStatusText() const;
    void exportImage();
    void openRun(const RunRecord& run);
    void rerunRun(const RunRecord& run);
    /// Loads `modelPath` in the lab (unless it is loaded) and then calls `then`.
    void withModel(const QString& modelPath, std::function<void()> then);
    QTabWidget* m_tabs = nullptr;
    ScheduleView* m_schedules = nullptr;
    ReverseView* m_reverse = nullptr;
    BatchView* m_batch = nullptr;
    ToyView* m_toy = nullptr;
    ExplorerView* m_explorer = nullptr;
    TrainingView* m_training = nullptr;
    ForwardView* m_forward = nullptr;
    HistoryView* m_historyView = nullptr;
    LectureTour* m_tour = nullptr;
    ModelsView* m_models = nullptr;
    LikelihoodView* m_likelihood = nullptr;
    SdsView* m_sds = nullptr;
    VideoView* m_video = nullptr;
    std::unique_ptr<RunHistory> m_history;
    QString m_loadedModel;
    MainWindowOptions m_options;
    QLabel* m_deviceStatus = nullptr;
};

}  // namespace dlab::ui
