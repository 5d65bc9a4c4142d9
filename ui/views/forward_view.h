#pragma once
// The forward-process view: noise an image with q(x_t | x_0) under two schedules side by side,
// scrub t, and see abar_t of both with the current t marked.

#include <QWidget>

#include "ui/jobs/forward_job.h"

class QCheckBox;
class QComboBox;
class QCustomPlot;
class QCPItemStraightLine;
class QLabel;
class QSlider;
class QSpinBox;

namespace dlab::ui {

class ImagePanel;
class SamplingWorker;

/// Every change of x_0, t, schedule or the latent option becomes a ForwardRequest for the lab's
/// worker (coalesced there: the latest wins); the view shows each ForwardResult as it arrives and
/// never computes or waits on the GUI thread.
class ForwardView : public QWidget {
    Q_OBJECT
public:
    explicit ForwardView(SamplingWorker* worker, QWidget* parent = nullptr);

    /// Uses an image file (any format OpenCV reads) as x_0, resized to the loaded model's size; an
    /// unreadable file is reported in the view (message(), hasError()) and the previous x_0 kept.
    void loadImageFile(const QString& path);
    /// Uses test image `index` of a class of Fashion-MNIST as x_0.
    void loadDatasetSample(int classIndex, int index);
    /// Uses 2000 points of a 2-D toy set ("moons", ...) as x_0, drawn as a point cloud.
    void loadToySet(const QString& name);
    /// Also noises in the bundled autoencoder's latent space (schedule B) and shows the decoded
    /// result beside pixel-space noise; turned off again with a message when it is missing.
    void setLatent(bool on);
    bool latent() const { return m_request.latent; }
    /// The decoded latent-space x_t panel (null image when off).
    QImage latentImage() const;
    void setT(int t);
    int t() const;
    /// x_t under schedule A (0) or B (1) at the current t, as shown.
    QImage noisedImage(int which) const;
    QImage originalImage() const;
    /// What the last result said about x_0 (or what went wrong).
    QString message() const { return m_lastMessage; }
    bool hasError() const { return m_error; }
    /// The t of the result on screen.
    int shownT() const { return m_shownT; }

Q_SIGNALS:
    /// A result from the worker is on screen.
    void previewShown();

protected:
    void dragEnterEvent(QDragEnterEvent* event) override;
    void dropEvent(QDropEvent* event) override;
    void showEvent(QShowEvent* event) override;  // the plot is redrawn only while visible

private:
    void refresh();
    void showResult(const ForwardResult& result);
    SamplingWorker* m_worker = nullptr;
    ForwardRequest m_request;   // what the controls say
    ForwardRequest m_good;      // the last source that loaded (restored after an error)
    int m_serial = 0;
    QString m_lastMessage;
    bool m_error = false;
    int m_shownT = -1;
    QString m_curvesShown;  // the schedules whose curves are plotted
    QCheckBox* m_latentBox = nullptr;
    ImagePanel* m_latentPanel = nullptr;
    QVector<ImagePanel*> m_stripL;
    QComboBox* m_class = nullptr;
    QComboBox* m_toy = nullptr;
    QSpinBox* m_index = nullptr;
    QComboBox* m_scheduleA = nullptr;
    QComboBox* m_scheduleB = nullptr;
    QSlider* m_t = nullptr;
    QLabel* m_tLabel = nullptr;
    QLabel* m_message = nullptr;
    ImagePanel* m_original = nullptr;
    ImagePanel* m_a = nullptr;
    ImagePanel* m_b = nullptr;
    QVector<ImagePanel*> m_stripA, m_stripB;
    QCustomPlot* m_plot = nullptr;
    QCPItemStraightLine* m_marker = nullptr;
};

}  // namespace dlab::ui
