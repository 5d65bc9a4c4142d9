#pragma once
// The reverse-chain view: watch a trained model turn noise into an image step by step, with
// play / pause / step / scrub, live guidance scale and fork-from-step.

#include <QElapsedTimer>
#include <QThread>
#include <QVector>
#include <QWidget>

#include "ui/jobs/sampling_worker.h"

class QCheckBox;
class QComboBox;
class QFormLayout;
class QLineEdit;
class QDoubleSpinBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QSlider;
class QSpinBox;

namespace dlab::ui {

class ImagePanel;

class ReverseView : public QWidget {
    Q_OBJECT
public:
    explicit ReverseView(const QString& device, QWidget* parent = nullptr);
    ~ReverseView() override;

    /// Frames recorded for the current chain.
    int frameCount() const { return m_frames.size(); }
    const QVector<ChainFrame>& frames() const { return m_frames; }
    bool isRunning() const { return m_running; }
    SamplingWorker* worker() const { return m_worker; }
    /// The image currently shown in the x0 panel (for export).
    QImage currentImage() const;
    QString currentParameters() const;
    /// Writes the recorded chain (x_t of every step, then the final image) as MP4; empty on success.
    QString exportChainVideo(const QString& path) const;

    /// Adds a model file to the model list (once; before "Open model file…") without loading it.
    void addModel(const QString& name, const QString& path);

public Q_SLOTS:
    void loadModel(const QString& path);
    /// Adds the model if needed, selects it and loads it.
    void useModel(const QString& name, const QString& path);
    void playPause();
    void stepOnce();
    void newChain();
    void forkHere();
    void setGuidance(double scale);
    /// Applies the guidance kind and both scales to the running chain (live).
    void applyGuidance();
    /// Kind 0 classifier-free, 1 classifier, 2 both; c the classifier scale.
    void setClassifierGuidance(int kind, double c);
    void showFrame(int index);
    /// Selects a class of the loaded model (an index into its class names; ignored if out of range).
    void setClassIndex(int classIndex);
    /// Where the next chain starts: test image `image` noised to t, or pure noise (image -1).
    void setStartFrom(int image, int t);
    /// Text-to-image models: the prompt and the negative prompt of the next chain.
    void setPrompt(const QString& prompt, const QString& negative = QString());
    /// Text-to-image models: what is wrong with the typed prompt (unknown words, too long); empty when fine.
    QString promptProblem() const;
    /// Text-to-image models: the prompts used, newest first (kept across starts).
    QStringList promptHistory() const { return m_history; }
    /// The first-start demonstration: one chain per class in `classes`, each a short pause after the
    /// last, then it stops. Any chain the user starts (Play, Step, New chain, Fork) ends it.
    void startDemo(const QVector<int>& classes);
    /// The loaded model's recommended sampling (its manifest's "recommended": sampler, steps,
    /// guidance) into the controls; false when it recommends none this view can use.
    bool useRecommendedSampling();
    bool demoRunning() const { return !m_demo.isEmpty() || m_inDemo; }

Q_SIGNALS:
    /// The first-start demonstration ran through all its classes.
    void demoFinished();
    void statusMessage(const QString& message);
    /// A model finished loading (emitted on the GUI thread).
    void modelReady(const dlab::ui::ModelInfo& info);
    void chainFinished();

private:
    void startChain();
    void endDemo();
    void nextDemoChain();
    ChainSettings settings() const;
    void onFrame(const ChainFrame& f);
    void onStopped(int done, int total, int requestId);
    void onModelLoaded(const ModelInfo& info);
    void refresh();
    void setRunning(bool running);
    void saveSettings() const;
    void checkPrompt();
    void rememberPrompt(const QString& prompt);

    QThread m_thread;
    SamplingWorker* m_worker = nullptr;
    QString m_device;
    QComboBox* m_model = nullptr;
    QComboBox* m_class = nullptr;
    QFormLayout* m_form = nullptr;
    QLineEdit* m_prompt = nullptr;     // text-to-image models
    QLineEdit* m_negative = nullptr;
    QLabel* m_promptNote = nullptr;
    QWidget* m_tokenRow = nullptr;     // per-word cross-attention maps
    QVector<ImagePanel*> m_tokenPanels;
    bool m_text = false;
    int m_classifierRow = -1;
    QStringList m_vocabulary;
    int m_promptWords = 0;
    QStringList m_history;
    QSlider* m_guidance = nullptr;
    QLabel* m_guidanceLabel = nullptr;
    QComboBox* m_kind = nullptr;          // classifier-free, classifier, both
    QSlider* m_classifier = nullptr;      // classifier scale c x 10
    QLabel* m_classifierLabel = nullptr;
    ImagePanel* m_cmap = nullptr;
    QComboBox* m_sampler = nullptr;
    QSpinBox* m_steps = nullptr;
    QComboBox* m_spacing = nullptr;
    QDoubleSpinBox* m_eta = nullptr;
    QSpinBox* m_seed = nullptr;
    QCheckBox* m_randomSeed = nullptr;
    QComboBox* m_startFrom = nullptr;  // pure noise or a test image noised to t
    QSpinBox* m_realImage = nullptr;
    QSpinBox* m_realT = nullptr;
    QLabel* m_stripCaption = nullptr;  // says where the strip's chain started
    QPushButton* m_play = nullptr;
    QPushButton* m_step = nullptr;
    QPushButton* m_fork = nullptr;
    QSlider* m_scrub = nullptr;
    QLabel* m_stepLabel = nullptr;
    QLabel* m_modelInfo = nullptr;
    QPushButton* m_recommended = nullptr;  ///< shown when the loaded model's manifest recommends a sampling
    struct Recommendation {
        QString sampler;  ///< empty: none
        int steps = 0;
        double guidance = 1.0;
        QString spacing;  ///< empty: the sampler's default
    } m_recommendation;           ///< the loaded model's (from its ModelInfo)
    bool m_recommendOnLoad = false;  ///< first start: apply the first model's recommendation when it loads
    QProgressBar* m_progress = nullptr;
    ImagePanel* m_xt = nullptr;
    ImagePanel* m_x0 = nullptr;
    ImagePanel* m_eps = nullptr;
    ImagePanel* m_x0c = nullptr;
    ImagePanel* m_x0u = nullptr;
    ImagePanel* m_map = nullptr;
    ImagePanel* m_x0Latent = nullptr;  // latent models: the predicted x0's latent channels
    QVector<ImagePanel*> m_strip;
    QVector<ChainFrame> m_frames;
    QString m_loadedModel;  // the list name of the model that last loaded (saved in the settings)
    int m_shown = -1;
    bool m_follow = true;
    bool m_running = false;
    int m_chainRequest = 0;  // the worker request of this view's latest chain
    bool m_refreshPending = false;
    bool m_haveChain = false;
    QVector<int> m_demo;   // classes of the demonstration still to play
    bool m_inDemo = false; // the running chain is one of the demonstration
    int m_savedClass = -1;
    QElapsedTimer m_chainTimer;
};

}  // namespace dlab::ui
