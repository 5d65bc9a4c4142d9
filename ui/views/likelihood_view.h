#pragma once
// The "Loss and likelihood" view: the lecture's "minimise the KL between the true and the learned
// reverse steps" as a picture. For a model (the loaded one or a bundled one) it measures on test
// images the terms of the variational bound, L_t = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) in
// bits/dim against t (with the decoder L_0 and the prior L_T), and the noise-prediction loss
// ||eps - eps_hat||^2 that training minimises, against t; the total bound in bits/dim with its
// standard error. Curves of several models stay side by side (linear against cosine: where does a
// schedule spend its steps?), and a bundled model's exact curve measured on the GPU is drawn
// beside the live estimate.

#include <QMap>
#include <QSet>
#include <QVector>
#include <QWidget>

#include "ui/jobs/sampling_worker.h"

class QCheckBox;
class QComboBox;
class QCustomPlot;
class QLabel;
class QProgressBar;
class QPushButton;
class QSpinBox;

namespace dlab::ui {

class LikelihoodView : public QWidget {
    Q_OBJECT
public:
    explicit LikelihoodView(SamplingWorker* worker, bool cuda, QWidget* parent = nullptr);
    /// The curves measured in this session, by model name (the latest per model).
    const QMap<QString, LikelihoodCurve>& curves() const { return m_curves; }
    /// The exact per-timestep curves bundled with the models (<model>.nll.csv), by model name.
    const QMap<QString, LikelihoodCurve>& bundledCurves() const { return m_bundled; }
    QString summary() const;
    bool running() const { return m_running; }

public Q_SLOTS:
    void setModelInfo(const dlab::ui::ModelInfo& info);
    /// Measures the chosen model with the chosen settings.
    void compute();
    /// Chooses a model by name ("" or "loaded": the lab's), the image count and the timestep count
    /// (0: all), as the controls would.
    void configure(const QString& model, int images, int strata);
    void stop();
    void clearCurves();

Q_SIGNALS:
    /// A measurement ended (complete or not).
    void finished();

private:
    void replot();
    void loadBundled(const QString& name);

    SamplingWorker* m_worker;
    QComboBox* m_model = nullptr;
    QSpinBox* m_images = nullptr;
    QComboBox* m_timesteps = nullptr;
    QComboBox* m_variance = nullptr;
    QCheckBox* m_logSnrAxis = nullptr;
    QPushButton* m_compute = nullptr;
    QPushButton* m_stop = nullptr;
    QProgressBar* m_progress = nullptr;
    QLabel* m_summary = nullptr;
    QLabel* m_note = nullptr;
    QCustomPlot* m_termPlot = nullptr;
    QCustomPlot* m_lossPlot = nullptr;
    QMap<QString, LikelihoodCurve> m_curves;
    QMap<QString, LikelihoodCurve> m_bundled;
    QSet<QString> m_bundledTried;  // names whose bundled curve was looked up
    QString m_loadedName;
    int m_request = 0;
    bool m_running = false;
};

}  // namespace dlab::ui
