#include "ui/views/lecture_tour.h"

#include <QHBoxLayout>
#include <QKeySequence>
#include <QLabel>
#include <QPushButton>
#include <QShortcut>
#include <QTextBrowser>
#include <QVBoxLayout>

#include "ui/jobs/training_request.h"
#include "ui/views/batch_view.h"
#include "ui/views/explorer_view.h"
#include "ui/views/forward_view.h"
#include "ui/views/likelihood_view.h"
#include "ui/views/main_window.h"
#include "ui/views/models_view.h"
#include "ui/views/reverse_view.h"
#include "ui/views/schedule_view.h"
#include "ui/views/toy_view.h"
#include "ui/views/training_view.h"

namespace dlab::ui {

namespace {

// The explanation of a stop: a few sentences, the formula of what is on screen, how to read it.
QString page(const QString& body, const QString& formula, const QString& read) {
    return QStringLiteral("<p>%1</p><p style='margin-left:12px; font-size:12pt;'>%2</p><p><i>%3</i></p>").arg(body, formula, read);
}

}  // namespace

QVector<TourStop> lectureStops(MainWindow* w) {
    ReverseView* rev = w->reverseView();
    QVector<TourStop> s;
    auto chain = [w, rev](const QString& model, std::function<void()> setup) {
        return [w, rev, model, setup] {
            w->setCurrentTab(0);
            w->withBundledModel(model, [rev, setup] {
                setup();
                rev->newChain();
            });
        };
    };

    s.push_back({QObject::tr("The goal: one big step, or many small ones"),
                 page(QObject::tr("A generative model turns noise into data. A GAN or a VAE does it in <b>one big "
                                  "step</b>: one pass of a generator. Diffusion takes <b>many small steps</b>, each an "
                                  "easy Gaussian denoising. On screen, one class from the bundled GAN, the VAE prior and "
                                  "diffusion with DDIM; move the steps slider to watch quality arrive. Below, the "
                                  "trilemma as measured (N = 10,000 on the GPU machine): the GAN is sharp (precision "
                                  "0.87) and 40x faster than 64 diffusion steps, diffusion covers more of the data "
                                  "(recall 0.81 against 0.68) with a slightly better FID (46 against 52)."),
                      QObject::tr("GAN: x = G(z, y) &nbsp;·&nbsp; VAE: x = D(z) &nbsp;·&nbsp; diffusion: x<sub>T</sub> ~ N(0, I), "
                                  "x<sub>t−1</sub> ~ p<sub>θ</sub>(x<sub>t−1</sub> | x<sub>t</sub>), t = T … 1"),
                      QObject::tr("Click a point of the plot to sample it; Interpolate shows the GAN's z path beside "
                                  "diffusion's spherical path of starting noise.")),
                 8,
                 [w] {
                     w->setCurrentTab(8);
                     w->withBundledModel(QStringLiteral("fashion-mnist-live"), [w] { w->modelsView()->compare(); });
                 },
                 w->modelsView(), SIGNAL(finished())});

    s.push_back({QObject::tr("The forward process: adding noise"),
                 page(QObject::tr("Training data are destroyed step by step with Gaussian noise. Any step t can be "
                                  "reached in one jump from the clean image x<sub>0</sub>: no chain is needed to make a "
                                  "training example."),
                      QObject::tr("q(x<sub>t</sub> | x<sub>0</sub>) = N(√ᾱ<sub>t</sub> x<sub>0</sub>, (1 − ᾱ<sub>t</sub>) I), "
                                  "&nbsp; x<sub>t</sub> = √ᾱ<sub>t</sub> x<sub>0</sub> + √(1 − ᾱ<sub>t</sub>) ε, ε ~ N(0, I)"),
                      QObject::tr("Drag t: schedule A (linear) has destroyed the garment long before schedule B (cosine).")),
                 1,
                 [w] {
                     w->setCurrentTab(1);
                     w->forwardView()->loadDatasetSample(0, 0);
                     w->forwardView()->setT(400);
                 },
                 w->forwardView(), SIGNAL(previewShown())});

    s.push_back({QObject::tr("Noise schedules: linear against cosine"),
                 page(QObject::tr("The schedule decides how fast the signal goes. Linear β<sub>t</sub> spends many steps "
                                  "on images that are already pure noise; the cosine schedule keeps signal longer and "
                                  "spreads the steps evenly in log SNR."),
                      QObject::tr("ᾱ<sub>t</sub> = ∏<sub>s≤t</sub> (1 − β<sub>s</sub>); linear: β from 10<sup>−4</sup> to 0.02; "
                                  "cosine: ᾱ<sub>t</sub> = f(t)/f(0), f(t) = cos²(((t/T + 0.008)/1.008)·π/2); "
                                  "SNR(t) = ᾱ<sub>t</sub> / (1 − ᾱ<sub>t</sub>)"),
                      QObject::tr("The marked t = 500: compare ᾱ and SNR of the two curves there.")),
                 4, [w] {
                     w->setCurrentTab(4);
                     w->scheduleView()->setMarkedT(500);
                 }});

    s.push_back({QObject::tr("The reverse process: denoising, step by step"),
                 page(QObject::tr("Sampling runs the chain backwards: at every step the network predicts the noise ε̂ in "
                                  "x<sub>t</sub>, which gives a guess x̂<sub>0</sub> of the clean image, and the sampler "
                                  "moves a little towards it. DDIM with η = 0 is deterministic."),
                      QObject::tr("x̂<sub>0</sub> = (x<sub>t</sub> − √(1 − ᾱ<sub>t</sub>) ε̂) / √ᾱ<sub>t</sub>, &nbsp; "
                                  "x<sub>t−1</sub> = √ᾱ<sub>t−1</sub> x̂<sub>0</sub> + √(1 − ᾱ<sub>t−1</sub>) ε̂"),
                      QObject::tr("Watch x̂₀ (top middle) settle long before x_t does; scrub back with the slider.")),
                 0, chain(QStringLiteral("fashion-mnist-live"), [rev] {
                     rev->setClassIndex(0);
                     rev->setClassifierGuidance(0, 0);
                     rev->setGuidance(1.0);
                 }),
                 rev, SIGNAL(chainFinished())});

    s.push_back({QObject::tr("The whole distribution at once: 2-D data"),
                 page(QObject::tr("With points in the plane one sees every sample together: a Gaussian cloud flows into "
                                  "the data set's shape. The network estimates the score, the direction in which the "
                                  "noisy density rises."),
                      QObject::tr("∇<sub>x</sub> log p<sub>t</sub>(x<sub>t</sub>) ≈ −ε<sub>θ</sub>(x<sub>t</sub>, t) / √(1 − ᾱ<sub>t</sub>)"),
                      QObject::tr("Scrub the chain: structure appears only in the last part of the steps.")),
                 3,
                 [w] {
                     w->setCurrentTab(3);
                     w->toyView()->run();
                 },
                 w->toyView(), SIGNAL(chainReady())});

    s.push_back({QObject::tr("Training: predict the noise"),
                 page(QObject::tr("Training draws an image, a step t and a noise ε, noises the image in one jump and asks "
                                  "the network for ε back. This simple loss is a reweighted variational bound (VLB) on "
                                  "the likelihood; the hybrid loss adds the VLB terms to learn the variances too."),
                      QObject::tr("L<sub>simple</sub> = E<sub>x₀, ε, t</sub> ‖ε − ε<sub>θ</sub>(√ᾱ<sub>t</sub> x<sub>0</sub> + "
                                  "√(1 − ᾱ<sub>t</sub>) ε, t)‖² &nbsp;·&nbsp; L<sub>vlb</sub> = Σ<sub>t</sub> "
                                  "KL(q(x<sub>t−1</sub> | x<sub>t</sub>, x<sub>0</sub>) ‖ p<sub>θ</sub>(x<sub>t−1</sub> | x<sub>t</sub>))"),
                      QObject::tr("A 300-step run on the two-moons set: the loss falls and the EMA samples take the shape.")),
                 6,
                 [w] {
                     w->setCurrentTab(6);
                     if (w->trainingView()->isRunning()) return;
                     TrainingRequest r;
                     r.dataset = QStringLiteral("toy:moons");
                     r.sizePreset = QStringLiteral("small");
                     r.steps = 300;
                     r.batch = 256;
                     r.lr = 1e-3;
                     r.sampleEvery = 100;
                     r.checkpointEvery = 300;
                     w->trainingView()->setRequest(r);
                     w->trainingView()->start();
                 },
                 w->trainingView(), SIGNAL(finished(dlab::ui::TrainingOutcome))});

    s.push_back({QObject::tr("The bound, term by term"),
                 page(QObject::tr("Training minimises the KL between the true reverse step q(x<sub>t−1</sub> | x<sub>t</sub>, "
                                  "x<sub>0</sub>) and the learned one at every t. Their sum bounds −log p(x): measured here "
                                  "in bits per dimension for the linear and the cosine model, beside the noise loss that "
                                  "training actually minimises. Exact values (all 1000 steps, H200): cosine 3.41, "
                                  "linear 3.54 bits/dim."),
                      QObject::tr("−log p(x<sub>0</sub>) ≤ L<sub>T</sub> + Σ<sub>t≥1</sub> L<sub>t</sub> + L<sub>0</sub>, &nbsp; "
                                  "L<sub>t</sub> = KL(q(x<sub>t−1</sub> | x<sub>t</sub>, x<sub>0</sub>) ‖ p<sub>θ</sub>(x<sub>t−1</sub> | x<sub>t</sub>))"),
                      QObject::tr("Almost the whole bound sits at the first few steps. Under the linear schedule the noise "
                                  "loss is near 0 for the last half of the steps: x_t is already almost pure noise there.")),
                 9,
                 [w] {
                     w->setCurrentTab(9);
                     LikelihoodView* v = w->likelihoodView();
                     if (v->running()) return;
                     v->clearCurves();
                     // Linear first, then cosine beside it (each measurement replaces the lab's running job).
                     auto* once = new QObject(v);
                     QObject::connect(v, &LikelihoodView::finished, once, [v, once] {
                         once->deleteLater();
                         v->configure(QStringLiteral("fashion-mnist-cosine"), 24, 20);
                         v->compute();
                     });
                     v->configure(QStringLiteral("fashion-mnist-linear"), 24, 20);
                     v->compute();
                 },
                 w->likelihoodView(), SIGNAL(finished())});

    s.push_back({QObject::tr("The network: a UNet that sees t and the class"),
                 page(QObject::tr("ε<sub>θ</sub> is a UNet: convolutions down to 7×7 and back up, skip connections at "
                                  "every level, self-attention at 7×7, and the step t (a sinusoidal embedding) and the "
                                  "class y (a learned one) added inside every residual block."),
                      QObject::tr("ε̂ = ε<sub>θ</sub>(x<sub>t</sub>, t, y), &nbsp; emb(t) = [cos(ω<sub>i</sub> t), sin(ω<sub>i</sub> t)], "
                                  "ω<sub>i</sub> = 10000<sup>−2i/d</sup>, plus a learned embedding of y"),
                      QObject::tr("The ε̂ panel is the network's output at the shown step; early on it is almost all "
                                  "of x_t, late it is only the fine grain.")),
                 0, chain(QStringLiteral("fashion-mnist-live"), [rev] { rev->setClassIndex(7); }),
                 rev, SIGNAL(chainFinished())});

    s.push_back({QObject::tr("Classifier guidance"),
                 page(QObject::tr("A classifier trained on noisy images steers the unconditional model: its gradient "
                                  "pushes x<sub>t</sub> towards images it finds more like class y. Scale c trades "
                                  "variety for class fidelity."),
                      QObject::tr("ε<sub>guided</sub> = ε<sub>θ</sub>(x<sub>t</sub>) − c · √(1 − ᾱ<sub>t</sub>) ∇<sub>x<sub>t</sub></sub> "
                                  "log p<sub>φ</sub>(y | x<sub>t</sub>)"),
                      QObject::tr("The bottom-right panel is c·∇log p(y|x_t): red where the classifier wants brighter pixels.")),
                 0, chain(QStringLiteral("fashion-mnist-live"), [rev] {
                     rev->setClassIndex(1);
                     rev->setClassifierGuidance(1, 10.0);
                 }),
                 rev, SIGNAL(chainFinished())});

    s.push_back({QObject::tr("Classifier-free guidance"),
                 page(QObject::tr("One network, trained with the label dropped 10% of the time, gives both a conditional "
                                  "and an unconditional prediction; guidance extrapolates from one to the other. No "
                                  "classifier is needed. Move the s slider while the chain runs."),
                      QObject::tr("ε<sub>guided</sub> = ε<sub>θ</sub>(x<sub>t</sub>, ∅) + s · (ε<sub>θ</sub>(x<sub>t</sub>, y) − ε<sub>θ</sub>(x<sub>t</sub>, ∅))"),
                      QObject::tr("The panel ε̂_c − ε̂_u shows where the class pushes: red brighter, blue darker.")),
                 0, chain(QStringLiteral("fashion-mnist-live"), [rev] {
                     rev->setClassIndex(8);
                     rev->setClassifierGuidance(0, 0);
                     rev->setGuidance(3.0);
                 }),
                 rev, SIGNAL(chainFinished())});

    s.push_back({QObject::tr("Guidance trades variety for fidelity"),
                 page(QObject::tr("The same starting noise at growing s: the samples become more typical of their class "
                                  "and more alike. Measured for the default model (N = 10,000 per scale, DDIM 50, on the "
                                  "GPU machine; docs/eval/sweep-cfg.log): class agreement 0.10 → 0.83 → 0.97 → 0.99 for s = 0, 1, 2, 3, while "
                                  "diversity falls 44.8 → 26.2 and recall 0.77 → 0.29 from s = 0 to 8."),
                      QObject::tr("rows: s = 0, 1, 2, 3, 5, 8 (same seeds in every row)"),
                      QObject::tr("Read down a column: one starting noise, guided harder and harder.")),
                 2,
                 [w] {
                     w->setCurrentTab(2);
                     w->withBundledModel(QStringLiteral("fashion-mnist-live"), [w] { w->batchView()->generateStrip(); });
                 },
                 w->batchView(), SIGNAL(finished())});

    s.push_back({QObject::tr("Measuring it: FID, sFID, precision and recall"),
                 page(QObject::tr("FID compares the mean and covariance of features of generated and real images; sFID "
                                  "does the same on spatial features; precision asks whether samples look real, recall "
                                  "whether the real images are covered. The explorer opens on the measured sweeps of the "
                                  "bundled model; Run sweep measures your own."),
                      QObject::tr("FID = ‖μ<sub>r</sub> − μ<sub>g</sub>‖² + Tr(Σ<sub>r</sub> + Σ<sub>g</sub> − "
                                  "2 (Σ<sub>r</sub> Σ<sub>g</sub>)<sup>½</sup>)"),
                      QObject::tr("FID is lowest near s = 2 and rises again: past it, lost variety costs more than "
                                  "fidelity gains. Compare FIDs only at equal N.")),
                 5, [w] {
                     w->setCurrentTab(5);
                     w->explorerView()->showMeasured();
                 }});

    s.push_back({QObject::tr("Latent diffusion"),
                 page(QObject::tr("An autoencoder compresses each 28×28 image to a 4×8×8 latent (256 numbers instead of "
                                  "784); diffusion runs there and the decoder makes the image at the end. Each step "
                                  "is cheaper, and the autoencoder takes care of fine detail."),
                      QObject::tr("z = 0.396 · E(x), &nbsp; z<sub>t</sub> = √ᾱ<sub>t</sub> z + √(1 − ᾱ<sub>t</sub>) ε, "
                                  "&nbsp; x̂ = D(ẑ<sub>0</sub>)"),
                      QObject::tr("x_t is shown as its 4 latent channels; x̂₀ is decoded at every step.")),
                 0, chain(QStringLiteral("latent-fashion-mnist"), [rev] { rev->setClassIndex(5); }),
                 rev, SIGNAL(chainFinished())});

    s.push_back({QObject::tr("Still to come"),
                 page(QObject::tr("The rest of the lecture is being built: text-to-image with a small self-trained "
                                  "text encoder and cross-attention, video diffusion, and score distillation "
                                  "(DreamFusion). They join this tour as they land, each with a model trained by this "
                                  "project."),
                      QString(), QObject::tr("Back (Alt+←) revisits any stop; each one runs again.")),
                 0, [w] { w->setCurrentTab(0); }});
    return s;
}

LectureTour::LectureTour(MainWindow* window) : QDockWidget(tr("Lecture tour"), window), m_stops(lectureStops(window)) {
    setObjectName(QStringLiteral("lectureTour"));
    auto* body = new QWidget;
    auto* v = new QVBoxLayout(body);
    m_counter = new QLabel;
    m_counter->setStyleSheet(QStringLiteral("color: #666;"));
    m_title = new QLabel;
    m_title->setWordWrap(true);
    m_title->setStyleSheet(QStringLiteral("font-size: 13pt; font-weight: bold;"));
    m_text = new QTextBrowser;
    m_text->setOpenLinks(false);
    m_back = new QPushButton(tr("◂ &Back"));
    m_back->setToolTip(tr("The previous stop (Alt+Left)"));
    m_next = new QPushButton(tr("&Next ▸"));
    m_next->setToolTip(tr("The next stop (Alt+Right)"));
    auto* again = new QPushButton(tr("&Run again"));
    again->setToolTip(tr("Run this stop's job once more"));
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(m_back);
    buttons->addWidget(again);
    buttons->addWidget(m_next);
    v->addWidget(m_counter);
    v->addWidget(m_title);
    v->addWidget(m_text, 1);
    v->addLayout(buttons);
    setWidget(body);
    setMinimumWidth(300);
    connect(m_back, &QPushButton::clicked, this, &LectureTour::back);
    connect(m_next, &QPushButton::clicked, this, &LectureTour::next);
    connect(again, &QPushButton::clicked, this, [this] { go(m_index); });
    auto* nextKey = new QShortcut(QKeySequence(Qt::ALT | Qt::Key_Right), window);
    connect(nextKey, &QShortcut::activated, this, [this] { if (isVisible()) next(); });
    auto* backKey = new QShortcut(QKeySequence(Qt::ALT | Qt::Key_Left), window);
    connect(backKey, &QShortcut::activated, this, [this] { if (isVisible()) back(); });
    auto* close = new QShortcut(QKeySequence(Qt::Key_Escape), this);
    close->setContext(Qt::WidgetWithChildrenShortcut);
    connect(close, &QShortcut::activated, this, &QWidget::hide);
}

void LectureTour::start() {
    show();
    raise();
    go(0);
}

void LectureTour::go(int index) {
    if (index < 0 || index >= m_stops.size()) return;
    m_index = index;
    const TourStop& s = m_stops[index];
    m_counter->setText(tr("Stop %1 of %2").arg(index + 1).arg(m_stops.size()));
    m_title->setText(s.title);
    m_text->setHtml(s.html);
    m_back->setEnabled(index > 0);
    m_next->setEnabled(index + 1 < m_stops.size());
    disconnect(m_doneConnection);
    m_done = false;
    if (s.doneSender && s.doneSignal) {
        m_doneConnection = connect(s.doneSender, s.doneSignal, this, SLOT(markDone()));
        if (!m_doneConnection) qWarning("lecture tour: stop %d cannot follow %s", index + 1, s.doneSignal);
    }
    Q_EMIT stopEntered(index);
    if (s.enter) s.enter();
    if (!s.doneSender) markDone();
}

void LectureTour::next() { go(m_index + 1); }
void LectureTour::back() { go(m_index - 1); }

void LectureTour::markDone() {
    disconnect(m_doneConnection);
    m_done = true;
    Q_EMIT stopProduced(m_index);
}

}  // namespace dlab::ui
