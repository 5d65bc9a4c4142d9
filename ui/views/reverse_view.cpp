#include "ui/views/reverse_view.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QCompleter>
#include <QLabel>
#include <QLineEdit>
#include <QStringListModel>
#include <QProgressBar>
#include <QPushButton>
#include <QRandomGenerator>
#include <QSettings>
#include <QShortcut>
#include <QSlider>
#include <QSpinBox>
#include <QTimer>
#include <QVBoxLayout>

#include <ATen/ATen.h>

#include "core/io/model_catalog.h"
#include "core/runtime/runtime.h"
#include "core/text/captions.h"
#include "core/text/tokenizer.h"
#include "imaging/image_io.h"
#include "ui/common/checked_values.h"
#include "ui/common/explain.h"
#include "ui/common/image_panel.h"
#include "ui/common/progress_eta.h"
#include "ui/common/sampler_choice.h"

namespace dlab::ui {

namespace {
constexpr int kStripLength = 10;

// A sampler's name as the lecture writes it (ddim -> DDIM, dpmpp2m -> DPM++ or, in full, DPM-Solver++(2M)).
QString samplerTitle(const QString& name, bool full = false) {
    if (name == QLatin1String("dpmpp2m")) return full ? QStringLiteral("DPM-Solver++(2M)") : QStringLiteral("DPM++");
    return name.toUpper();
}
}  // namespace

ReverseView::ReverseView(const QString& device, QWidget* parent) : QWidget(parent), m_device(device) {
    m_worker = new SamplingWorker;
    m_worker->moveToThread(&m_thread);
    connect(&m_thread, &QThread::finished, m_worker, &QObject::deleteLater);
    connect(m_worker, &SamplingWorker::frameReady, this, &ReverseView::onFrame);
    connect(m_worker, &SamplingWorker::chainStopped, this, &ReverseView::onStopped);
    connect(m_worker, &SamplingWorker::modelLoaded, this, &ReverseView::onModelLoaded);
    connect(m_worker, &SamplingWorker::failed, this, [this](const QString& m) {
        setRunning(false);
        m_modelInfo->setText(QStringLiteral("<span style='color:#b00'>%1</span>").arg(m.toHtmlEscaped()));
        Q_EMIT statusMessage(m);
    });
    m_thread.setObjectName(QStringLiteral("sampling-worker"));
    m_thread.start();

    // Controls.
    auto* controls = new QGroupBox(tr("Reverse process"));
    auto* form = new QFormLayout;
    m_model = new QComboBox;
    for (const auto& [name, path] : bundled_models()) {
        if (name.rfind("toy-", 0) == 0) continue;  // the 2-D models have their own view
        if (name.size() > 11 && name.compare(name.size() - 11, 11, "-classifier") == 0) continue;
        if (name.size() > 12 && name.compare(name.size() - 12, 12, "-autoencoder") == 0) continue;  // not a diffusion model
        if (name.size() > 4 && name.compare(name.size() - 4, 4, "-gan") == 0) continue;  // one step: no chain to show
        if (name.size() > 5 && name.compare(name.size() - 5, 5, "-clip") == 0) continue;  // text and image encoders
        if (name.size() > 6 && name.compare(name.size() - 6, 6, "-video") == 0) continue;  // clips: diffusionlab-cli video
        m_model->addItem(QString::fromStdString(name), QString::fromStdString(path));
    }
    m_model->addItem(tr("Open model file…"), QString());
    form->addRow(tr("Model"), m_model);
    m_modelInfo = new QLabel(tr("loading…"));
    m_modelInfo->setWordWrap(true);
    m_modelInfo->setStyleSheet(QStringLiteral("color: #555; font-size: 9pt;"));
    form->addRow(m_modelInfo);
    m_class = new QComboBox;
    m_class->setObjectName(QStringLiteral("class"));
    form->addRow(tr("Class"), m_class);
    // Text-to-image models: a prompt (with the history as completions), a negative prompt, and
    // what is wrong with them, said as the user types.
    m_prompt = new QLineEdit;
    m_prompt->setPlaceholderText(tr("e.g. a dark long sleeved pullover"));
    m_prompt->setToolTip(tr("What to draw, in the words of the captions the text encoder was trained on; "
                            "Enter starts a chain. Empty: the null prompt (unconditional)."));
    auto* completer = new QCompleter(new QStringListModel(this), this);
    completer->setCaseSensitivity(Qt::CaseInsensitive);
    completer->setFilterMode(Qt::MatchContains);
    m_prompt->setCompleter(completer);
    form->addRow(tr("Prompt"), m_prompt);
    m_negative = new QLineEdit;
    m_negative->setPlaceholderText(tr("none (the empty prompt)"));
    m_negative->setToolTip(tr("Guidance pushes away from this prompt instead of the empty one: "
                              "ε̂ = ε̂_neg + s (ε̂_prompt − ε̂_neg)"));
    form->addRow(tr("Negative"), m_negative);
    m_promptNote = new QLabel;
    m_promptNote->setWordWrap(true);
    m_promptNote->setStyleSheet(QStringLiteral("font-size: 9pt;"));
    form->addRow(m_promptNote);
    m_form = form;
    auto* g = new QHBoxLayout;
    m_guidance = new QSlider(Qt::Horizontal);
    m_guidance->setObjectName(QStringLiteral("guidance"));
    m_guidance->setRange(0, 100);
    m_guidance->setValue(30);
    m_guidance->setToolTip(tr("Classifier-free guidance scale s: 0 unconditional, 1 conditional, >1 guided. "
                              "Takes effect at the next step of a running chain."));
    m_guidanceLabel = new QLabel(QStringLiteral("3.0"));
    m_guidanceLabel->setMinimumWidth(30);
    g->addWidget(m_guidance);
    g->addWidget(m_guidanceLabel);
    form->addRow(tr("Guidance s"), g);
    m_kind = new QComboBox;
    m_kind->setObjectName(QStringLiteral("guidanceKind"));
    m_kind->addItem(tr("classifier-free"), 0);
    m_kind->addItem(tr("classifier"), 1);
    m_kind->addItem(tr("both"), 2);
    m_kind->setToolTip(tr("Classifier-free: the model's conditional and unconditional outputs (scale s). "
                          "Classifier: the unconditional path steered by the gradient of a noise-aware "
                          "classifier (scale c). Both: the two at once. Live."));
    form->addRow(tr("Guidance kind"), m_kind);
    auto* cg = new QHBoxLayout;
    m_classifier = new QSlider(Qt::Horizontal);
    m_classifier->setRange(0, 200);
    m_classifier->setValue(100);
    m_classifier->setToolTip(tr("Classifier guidance scale c (the gradient of log p(y | x_t) is scaled by c)"));
    m_classifierLabel = new QLabel(QStringLiteral("10.0"));
    m_classifierLabel->setMinimumWidth(30);
    cg->addWidget(m_classifier);
    cg->addWidget(m_classifierLabel);
    form->addRow(tr("Classifier c"), cg);
    m_classifierRow = form->rowCount() - 1;
    m_sampler = makeSamplerBox(QStringLiteral("sampler"));
    form->addRow(tr("Sampler"), m_sampler);
    m_steps = new QSpinBox;
    m_steps->setObjectName(QStringLiteral("steps"));
    m_steps->setRange(1, 1000);
    m_steps->setValue(50);
    form->addRow(tr("Steps"), m_steps);
    m_spacing = makeSpacingBox(QStringLiteral("spacing"));
    form->addRow(tr("Timesteps"), m_spacing);
    m_eta = new QDoubleSpinBox;
    m_eta->setObjectName(QStringLiteral("eta"));
    m_eta->setRange(0, 1);
    m_eta->setSingleStep(0.1);
    m_eta->setToolTip(tr("DDIM eta: 0 deterministic, 1 like DDPM"));
    form->addRow(tr("Eta"), m_eta);
    auto* seedRow = new QHBoxLayout;
    m_seed = new QSpinBox;
    m_seed->setRange(0, 1000000);
    m_randomSeed = new QCheckBox(tr("random"));
    seedRow->addWidget(m_seed);
    seedRow->addWidget(m_randomSeed);
    form->addRow(tr("Seed"), seedRow);
    // SDEdit-style: a real test image noised to t, then the rest of the chain (what the model
    // restores from that noise level; with another class, what it turns the item into).
    auto* startRow = new QHBoxLayout;
    m_startFrom = new QComboBox;
    m_startFrom->setObjectName(QStringLiteral("startFrom"));
    m_startFrom->addItem(tr("pure noise x_T"));
    m_startFrom->addItem(tr("a test image noised to t"));
    m_startFrom->setToolTip(tr("Start the chain from pure noise x_T, or from a Fashion-MNIST test image noised to t: "
                               "from a low t the model restores the image, from a high t it draws a new one"));
    m_realImage = new QSpinBox;
    m_realImage->setObjectName(QStringLiteral("realImage"));
    m_realImage->setRange(0, 9999);
    m_realImage->setPrefix(QStringLiteral("#"));
    m_realImage->setToolTip(tr("Which test image (0-9999)"));
    m_realT = new QSpinBox;
    m_realT->setObjectName(QStringLiteral("realT"));
    m_realT->setRange(0, 999);
    m_realT->setValue(500);
    m_realT->setPrefix(QStringLiteral("t = "));
    m_realT->setToolTip(tr("The noise level it starts from (the sampler's first timestep at or below t)"));
    form->addRow(tr("Start from"), m_startFrom);
    startRow->addWidget(m_realImage, 1);
    startRow->addWidget(m_realT, 1);
    form->addRow(tr("Test image"), startRow);
    auto startEnabled = [this] {
        m_realImage->setEnabled(m_startFrom->currentIndex() == 1);
        m_realT->setEnabled(m_startFrom->currentIndex() == 1);
    };
    connect(m_startFrom, &QComboBox::currentIndexChanged, this, startEnabled);
    startEnabled();
    m_recommended = new QPushButton;
    m_recommended->setObjectName(QStringLiteral("useRecommended"));
    form->addRow(m_recommended);
    form->setRowVisible(m_recommended, false);
    connect(m_recommended, &QPushButton::clicked, this, [this] { useRecommendedSampling(); });
    auto* buttons = new QGridLayout;
    m_play = new QPushButton(tr("▶ Play"));
    m_play->setToolTip(tr("Play / pause (Space)"));
    m_step = new QPushButton(tr("Step ▸"));
    m_step->setToolTip(tr("One denoising step (Right arrow)"));
    auto* fresh = new QPushButton(tr("New chain"));
    fresh->setToolTip(tr("Start again from fresh noise with the current settings"));
    m_fork = new QPushButton(tr("Fork from here"));
    m_fork->setToolTip(tr("Re-run the chain from the shown step with the current settings"));
    buttons->addWidget(m_play, 0, 0);
    buttons->addWidget(m_step, 0, 1);
    buttons->addWidget(fresh, 1, 0);
    buttons->addWidget(m_fork, 1, 1);
    form->addRow(buttons);
    m_progress = new QProgressBar;
    m_progress->setFormat(QStringLiteral("%v / %m"));
    form->addRow(m_progress);
    controls->setLayout(form);
    controls->setFixedWidth(290);

    // Panels.
    m_xt = new ImagePanel(tr("x_t (current sample)"));
    m_x0 = new ImagePanel(tr("predicted x̂₀"));
    m_eps = new ImagePanel(tr("predicted noise ε̂"));
    m_x0c = new ImagePanel(tr("x̂₀ conditional"));
    m_x0u = new ImagePanel(tr("x̂₀ unconditional"));
    m_map = new ImagePanel(tr("guidance ε̂_c − ε̂_u"));
    m_cmap = new ImagePanel(tr("classifier c·∇log p(y|x_t)"));
    m_x0Latent = new ImagePanel(tr("predicted x̂₀ latent (4 channels)"));
    m_x0Latent->setVisible(false);
    explain(m_xt, tr("x_t, the sample at the current step"), tr("x_T ~ N(0, I); x_{t−1} = √ᾱ_{t−1} x̂₀ + √(1 − ᾱ_{t−1}) ε̂ (DDIM, η = 0)"),
            tr("Pure noise at the first step, the final sample at the last; grey is 0, white +1, black −1."));
    explain(m_x0, tr("x̂₀, the network's guess of the clean image"), tr("x̂₀ = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t"),
            tr("Blurry early (the mean of all images that could lie under this noise), sharp late; at the last step the final sample."));
    explain(m_eps, tr("ε̂, the noise the network sees in x_t"), tr("ε̂ = ε_θ(x_t, t, y), guided: ε̂_u + s (ε̂_c − ε̂_u)"),
            tr("Early it is almost all of x_t; late only the grain that is still to be removed."));
    explain(m_x0c, tr("x̂₀ from the conditional prediction"), tr("x̂₀ computed with ε_θ(x_t, t, y)"),
            tr("What the model expects for the chosen class at this step, without guidance."));
    explain(m_x0u, tr("x̂₀ from the unconditional prediction"), tr("x̂₀ computed with ε_θ(x_t, t, ∅)"),
            tr("What the model expects for any class; the difference to the conditional one is what guidance amplifies."));
    explain(m_map, tr("The classifier-free guidance direction"), tr("ε̂_c − ε̂_u = ε_θ(x_t, t, y) − ε_θ(x_t, t, ∅), scaled by s"),
            tr("Red where the class pushes pixels brighter, blue darker; white: no difference."));
    explain(m_cmap, tr("The classifier guidance direction"), tr("c · ∇_{x_t} log p_φ(y | x_t), from a classifier trained on noisy images"),
            tr("Red where the classifier wants brighter pixels for class y, blue darker."));
    explain(m_x0Latent, tr("x̂₀ in latent space"), tr("the 4 channels of ẑ₀ = (z_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t, before the decoder"),
            tr("Each channel a grey 8×8 tile; the decoded image is the x̂₀ panel."));
    auto* panels = new QGridLayout;
    panels->addWidget(m_xt, 0, 0);
    panels->addWidget(m_x0, 0, 1);
    panels->addWidget(m_eps, 0, 2);
    panels->addWidget(m_x0c, 1, 0);
    panels->addWidget(m_x0u, 1, 1);
    panels->addWidget(m_map, 1, 2);
    panels->addWidget(m_cmap, 1, 3);
    panels->addWidget(m_x0Latent, 0, 3);
    auto* scrubRow = new QHBoxLayout;
    m_scrub = new QSlider(Qt::Horizontal);
    m_scrub->setRange(0, 0);
    m_scrub->setToolTip(tr("Scrub through the recorded chain"));
    m_stepLabel = new QLabel(tr("no chain yet"));
    m_stepLabel->setMinimumWidth(230);
    scrubRow->addWidget(m_scrub, 1);
    scrubRow->addWidget(m_stepLabel);
    auto* strip = new QHBoxLayout;
    strip->setSpacing(2);
    for (int i = 0; i < kStripLength; ++i) {
        auto* p = new ImagePanel(QString());
        p->setMinimumSize(48, 60);
        m_strip.push_back(p);
        strip->addWidget(p);
    }
    // Text models: where the image attends to each word of the prompt.
    m_tokenRow = new QWidget;
    auto* tokenLayout = new QHBoxLayout(m_tokenRow);
    tokenLayout->setContentsMargins(0, 0, 0, 0);
    tokenLayout->setSpacing(2);
    auto* tokenTitle = new QLabel(tr("Cross-attention\nper word\n(all layers,\nconditional\npass):"));
    tokenTitle->setStyleSheet(QStringLiteral("font-size: 9pt; color: #555;"));
    tokenLayout->addWidget(tokenTitle);
    for (int i = 0; i < 8; ++i) {
        auto* p = new ImagePanel(QString());
        p->setMinimumSize(56, 70);
        explain(p, tr("Cross-attention to one word"), tr("softmax_j(q_i · k_j / √d) for the word j, averaged over heads and layers"),
                tr("Bright where the image positions attend to this word: the word's share of what each position reads from the prompt."));
        m_tokenPanels.push_back(p);
        tokenLayout->addWidget(p);
    }
    m_tokenRow->setVisible(false);
    auto* right = new QVBoxLayout;
    right->addLayout(panels, 5);
    right->addWidget(m_tokenRow, 1);
    right->addLayout(scrubRow);
    m_stripCaption = new QLabel(tr("The chain, from noise (left) to image (right):"));
    right->addWidget(m_stripCaption);
    right->addLayout(strip, 1);

    auto* layout = new QHBoxLayout(this);
    layout->addWidget(controls);
    layout->addLayout(right, 1);

    connect(m_guidance, &QSlider::valueChanged, this, [this](int v) { setGuidance(v / 10.0); });
    connect(m_classifier, &QSlider::valueChanged, this, [this](int v) {
        m_classifierLabel->setText(QString::number(v / 10.0, 'f', 1));
        applyGuidance();
    });
    connect(m_kind, qOverload<int>(&QComboBox::currentIndexChanged), this, [this](int) { applyGuidance(); });
    connect(m_prompt, &QLineEdit::textChanged, this, &ReverseView::checkPrompt);
    connect(m_negative, &QLineEdit::textChanged, this, &ReverseView::checkPrompt);
    connect(m_prompt, &QLineEdit::returnPressed, this, &ReverseView::newChain);
    connect(m_negative, &QLineEdit::returnPressed, this, &ReverseView::newChain);
    connect(m_play, &QPushButton::clicked, this, &ReverseView::playPause);
    connect(m_step, &QPushButton::clicked, this, &ReverseView::stepOnce);
    connect(fresh, &QPushButton::clicked, this, &ReverseView::newChain);
    connect(m_fork, &QPushButton::clicked, this, &ReverseView::forkHere);
    connect(m_scrub, &QSlider::valueChanged, this, [this](int v) {
        m_follow = v == m_frames.size() - 1;
        showFrame(v);
    });
    connect(m_model, qOverload<int>(&QComboBox::activated), this, [this](int i) {
        QString path = m_model->itemData(i).toString();
        if (path.isEmpty()) {
            path = QFileDialog::getOpenFileName(this, tr("Open model"), QString(), tr("Models (*.safetensors)"));
            if (path.isEmpty()) return;
            m_model->insertItem(i, QFileInfo(path).baseName(), path);
            m_model->setCurrentIndex(i);
        }
        loadModel(path);
    });
    auto* space = new QShortcut(QKeySequence(Qt::Key_Space), this);
    connect(space, &QShortcut::activated, this, &ReverseView::playPause);
    auto* right_key = new QShortcut(QKeySequence(Qt::Key_Right), this);
    connect(right_key, &QShortcut::activated, this, &ReverseView::stepOnce);
    auto* left_key = new QShortcut(QKeySequence(Qt::Key_Left), this);
    connect(left_key, &QShortcut::activated, this, [this] { m_scrub->setValue(m_scrub->value() - 1); });

    // The last choices (QSettings) come back at the next start, each checked against its control's
    // range first (a hand-edited or damaged settings file keeps the defaults, never an index of -1).
    QSettings settings;
    settings.beginGroup(QStringLiteral("reverse"));
    auto intSetting = [&settings](const char* key, qint64 lo, qint64 hi, qint64 fallback) {
        return int(checkedInt(settingValue(settings, QLatin1String(key)), QLatin1String(key), lo, hi, fallback, nullptr));
    };
    m_guidance->setValue(intSetting("guidance10", m_guidance->minimum(), m_guidance->maximum(), m_guidance->value()));
    m_classifier->setValue(intSetting("classifier10", m_classifier->minimum(), m_classifier->maximum(), m_classifier->value()));
    m_kind->setCurrentIndex(intSetting("guidanceKind", 0, m_kind->count() - 1, 0));
    m_sampler->setCurrentIndex(std::max(0, m_sampler->findText(settings.value(QStringLiteral("sampler")).toString())));
    m_steps->setValue(intSetting("steps", m_steps->minimum(), m_steps->maximum(), m_steps->value()));
    m_spacing->setCurrentIndex(std::max(0, m_spacing->findText(settings.value(QStringLiteral("spacing")).toString())));
    m_eta->setValue(checkedReal(settingValue(settings, QStringLiteral("eta")), QStringLiteral("eta"), m_eta->minimum(),
                                m_eta->maximum(), m_eta->value(), nullptr));
    m_seed->setValue(intSetting("seed", m_seed->minimum(), m_seed->maximum(), m_seed->value()));
    m_startFrom->setCurrentIndex(intSetting("startFrom", 0, 1, 0));
    m_realImage->setValue(intSetting("realImage", m_realImage->minimum(), m_realImage->maximum(), m_realImage->value()));
    m_realT->setValue(intSetting("realT", m_realT->minimum(), m_realT->maximum(), m_realT->value()));
    m_randomSeed->setChecked(settings.value(QStringLiteral("randomSeed"), false).toBool());
    m_savedClass = intSetting("class", 0, 1000, 0);
    m_history = settings.value(QStringLiteral("prompts")).toStringList().mid(0, 30);
    qobject_cast<QStringListModel*>(m_prompt->completer()->model())->setStringList(m_history);
    m_prompt->setText(settings.value(QStringLiteral("prompt"), QStringLiteral("a dark sandal")).toString().left(300));
    m_negative->setText(settings.value(QStringLiteral("negativePrompt")).toString().left(300));
    const int savedModel = m_model->findText(settings.value(QStringLiteral("model")).toString());
    settings.endGroup();
    if (savedModel >= 0 && m_model->itemData(savedModel).toString().size() > 0) {
        m_model->setCurrentIndex(savedModel);
    } else {
        // First start: on a CUDA device the quality tier; on a CPU the live model (a third of the
        // default's compute, so chains animate); else the CLI's default.
        const auto dev = select_device(m_device.toStdString());
        std::vector<std::string> names;
        for (int i = 0; i < m_model->count(); ++i) names.push_back(m_model->itemText(i).toStdString());
        const std::string first = first_start_model(names, dev && dev->is_cuda());
        if (const int i = m_model->findText(QString::fromStdString(first)); i >= 0) {
            m_model->setCurrentIndex(i);
            // The first chain uses the sampling the model's manifest recommends (the quality tier:
            // DPM-Solver++(2M) 50, linspace, s = 1), set when the model has loaded.
            m_recommendOnLoad = true;
        }
    }
    if (m_model->count() > 1) loadModel(m_model->currentData().toString());
}

bool ReverseView::useRecommendedSampling() {
    if (!selectSampling(m_sampler, m_steps, m_spacing, m_recommendation.sampler, m_recommendation.steps,
                        m_recommendation.spacing))
        return false;
    m_guidance->setValue(int(std::lround(m_recommendation.guidance * 10)));
    return true;
}

void ReverseView::saveSettings() const {
    QSettings settings;
    settings.beginGroup(QStringLiteral("reverse"));
    // The model that last loaded, not merely the one chosen: a file that fails to load is never
    // opened again at the next start.
    if (!m_loadedModel.isEmpty()) settings.setValue(QStringLiteral("model"), m_loadedModel);
    settings.setValue(QStringLiteral("class"), m_class->currentIndex());
    settings.setValue(QStringLiteral("guidance10"), m_guidance->value());
    settings.setValue(QStringLiteral("classifier10"), m_classifier->value());
    settings.setValue(QStringLiteral("guidanceKind"), m_kind->currentIndex());
    settings.setValue(QStringLiteral("sampler"), m_sampler->currentText());
    settings.setValue(QStringLiteral("steps"), m_steps->value());
    settings.setValue(QStringLiteral("spacing"), m_spacing->currentText());
    settings.setValue(QStringLiteral("eta"), m_eta->value());
    settings.setValue(QStringLiteral("seed"), m_seed->value());
    settings.setValue(QStringLiteral("startFrom"), m_startFrom->currentIndex());
    settings.setValue(QStringLiteral("realImage"), m_realImage->value());
    settings.setValue(QStringLiteral("realT"), m_realT->value());
    settings.setValue(QStringLiteral("randomSeed"), m_randomSeed->isChecked());
    settings.setValue(QStringLiteral("prompts"), m_history);
    settings.setValue(QStringLiteral("prompt"), m_prompt->text());
    settings.setValue(QStringLiteral("negativePrompt"), m_negative->text());
    settings.endGroup();
}

ReverseView::~ReverseView() {
    saveSettings();
    // Shut down without waiting on a long job: stop at the next step, then join the thread.
    m_worker->newRequest();
    m_worker->requestStop();
    m_thread.quit();
    m_thread.wait();
}

void ReverseView::addModel(const QString& name, const QString& path) {
    if (m_model->findData(path) >= 0) return;
    m_model->insertItem(m_model->count() - 1, name, path);
}

void ReverseView::useModel(const QString& name, const QString& path) {
    addModel(name, path);
    m_model->setCurrentIndex(m_model->findData(path));
    loadModel(path);
}

void ReverseView::loadModel(const QString& path) {
    m_modelInfo->setText(tr("loading %1…").arg(QFileInfo(path).fileName()));
    const int id = m_worker->newRequest();
    Q_UNUSED(id);
    m_worker->requestStop();
    QMetaObject::invokeMethod(m_worker, "loadModel", Qt::QueuedConnection, Q_ARG(QString, path),
                              Q_ARG(QString, m_device));
}

void ReverseView::onModelLoaded(const ModelInfo& info) {
    m_modelInfo->setText(info.description);
    if (const int i = m_model->findData(info.path); i >= 0) m_loadedModel = m_model->itemText(i);
    // A model whose manifest recommends a sampling (the quality tier: DPM-Solver++(2M) 50 linspace,
    // s = 1) offers it.
    m_recommendation = {info.recommendedSampler, info.recommendedSteps, info.recommendedGuidance, info.recommendedSpacing};
    const bool recommends = m_sampler->findText(info.recommendedSampler) >= 0 && !info.recommendedSampler.isEmpty();
    m_form->setRowVisible(m_recommended, recommends);
    if (recommends) {
        // The button stays as narrow as the form; the timesteps are in its tooltip and on their own row.
        m_recommended->setText(tr("Use its sampling (%1 %2, s = %3)")
                                   .arg(samplerTitle(info.recommendedSampler))
                                   .arg(info.recommendedSteps)
                                   .arg(info.recommendedGuidance, 0, 'g', 3));
        m_recommended->setToolTip(tr("Sets what this model's manifest recommends: %1, %2 steps, %3 timesteps, s = %4")
                                      .arg(samplerTitle(info.recommendedSampler, true))
                                      .arg(info.recommendedSteps)
                                      .arg(info.recommendedSpacing.isEmpty() ? QStringLiteral("trailing") : info.recommendedSpacing)
                                      .arg(info.recommendedGuidance, 0, 'g', 3));
        if (m_recommendOnLoad) useRecommendedSampling();
    }
    m_recommendOnLoad = false;
    const int previous = m_savedClass >= 0 ? m_savedClass : m_class->currentIndex();
    m_savedClass = -1;
    m_class->clear();
    for (int i = 0; i < info.classNames.size(); ++i) m_class->addItem(QStringLiteral("%1 · %2").arg(i).arg(info.classNames[i]), i);
    m_class->addItem(tr("unconditional (null class)"), -1);
    m_class->setCurrentIndex(previous >= 0 && previous < m_class->count() ? previous : 0);
    m_haveChain = false;
    // Latent models: x_t and the noise are latents (their channels shown), x0 is decoded.
    m_x0Latent->setVisible(info.latent);
    m_xt->setCaption(info.latent ? tr("x_t latent (4 channels)") : tr("x_t (current sample)"));
    m_eps->setCaption(info.latent ? tr("predicted noise ε̂ (latent)") : tr("predicted noise ε̂"));
    m_cmap->setVisible(!info.latent && !info.text);
    m_text = info.text;
    m_vocabulary = info.vocabulary;
    m_promptWords = info.promptWords;
    m_form->setRowVisible(m_class, !info.text);
    m_form->setRowVisible(m_prompt, info.text);
    m_form->setRowVisible(m_negative, info.text);
    m_form->setRowVisible(m_promptNote, info.text);
    m_form->setRowVisible(m_kind, !info.text);
    m_form->setRowVisible(m_classifierRow, !info.text);
    m_tokenRow->setVisible(info.text);
    m_x0c->setCaption(info.text ? tr("x̂₀ with the prompt") : tr("x̂₀ conditional"));
    m_x0u->setCaption(info.text ? (m_negative->text().trimmed().isEmpty() ? tr("x̂₀ with the empty prompt") : tr("x̂₀ with the negative prompt"))
                                : tr("x̂₀ unconditional"));
    checkPrompt();
    if (!info.classifierGuidance) m_kind->setCurrentIndex(0);
    m_kind->setEnabled(info.classifierGuidance);
    m_kind->setToolTip(info.classifierGuidance ? m_kind->toolTip()
                                               : tr("Classifier guidance needs a noise-aware classifier for this model's images"));
    applyGuidance();
    Q_EMIT statusMessage(tr("Loaded %1").arg(info.path));
    Q_EMIT modelReady(info);
}

void ReverseView::setStartFrom(int image, int t) {
    m_startFrom->setCurrentIndex(image >= 0 ? 1 : 0);
    if (image >= 0) m_realImage->setValue(image);
    m_realT->setValue(t);
}

ChainSettings ReverseView::settings() const {
    ChainSettings s;
    s.classIndex = m_class->currentData().isValid() ? m_class->currentData().toInt() : 0;
    const int kind = m_kind->currentData().toInt();
    s.guidance = kind == 1 ? 0.0 : m_guidance->value() / 10.0;  // classifier only: the unconditional path
    s.classifierScale = kind == 0 ? 0.0 : m_classifier->value() / 10.0;
    s.sampler = SamplerKind(m_sampler->currentData().toInt());
    s.steps = m_steps->value();
    s.eta = m_eta->value();
    s.spacing = TimestepSpacing(m_spacing->currentData().toInt());
    s.seed = quint64(m_seed->value());
    if (m_startFrom->currentIndex() == 1) {
        s.realImage = m_realImage->value();
        s.realT = m_realT->value();
    }
    if (m_text) {
        s.prompt = m_prompt->text().trimmed();
        s.negativePrompt = m_negative->text().trimmed();
    }
    return s;
}

void ReverseView::setPrompt(const QString& prompt, const QString& negative) {
    m_prompt->setText(prompt);
    m_negative->setText(negative);
}

QString ReverseView::promptProblem() const {
    if (!m_text) return QString();
    for (QLineEdit* field : {m_prompt, m_negative}) {
        const QString which = field == m_prompt ? tr("The prompt") : tr("The negative prompt");
        const std::vector<std::string> words = split_words(field->text().toStdString());
        QStringList unknown;
        for (const auto& w : words)
            if (!m_vocabulary.contains(QString::fromStdString(w))) unknown << QStringLiteral("“%1”").arg(QString::fromStdString(w));
        if (!unknown.isEmpty())
            return tr("%1 has words the text encoder does not know: %2. It knows: %3.")
                .arg(which, unknown.join(QStringLiteral(", ")), m_vocabulary.join(QStringLiteral(" ")));
        if (int(words.size()) > m_promptWords)
            return tr("%1 has %2 words; at most %3 fit.").arg(which).arg(words.size()).arg(m_promptWords);
    }
    return QString();
}

void ReverseView::checkPrompt() {
    if (!m_text) return;
    const QString problem = promptProblem();
    if (!problem.isEmpty()) {
        m_promptNote->setText(QStringLiteral("<span style='color:#b00'>%1</span>").arg(problem.toHtmlEscaped()));
    } else {
        const PromptMeaning meaning = read_prompt(m_prompt->text().toStdString());
        m_promptNote->setText(m_prompt->text().trimmed().isEmpty()
                                  ? tr("Empty: the null prompt, sampled without guidance.")
                                  : meaning.cls < 0 ? tr("No garment named: the model picks one.")
                                                    : tr("Enter starts a chain."));
    }
    m_x0u->setCaption(m_negative->text().trimmed().isEmpty() ? tr("x̂₀ with the empty prompt") : tr("x̂₀ with the negative prompt"));
}

void ReverseView::rememberPrompt(const QString& prompt) {
    if (prompt.isEmpty()) return;
    m_history.removeAll(prompt);
    m_history.prepend(prompt);
    while (m_history.size() > 30) m_history.removeLast();
    qobject_cast<QStringListModel*>(m_prompt->completer()->model())->setStringList(m_history);
}

void ReverseView::setRunning(bool running) {
    m_running = running;
    m_play->setText(running ? tr("❚❚ Pause") : tr("▶ Play"));
}

void ReverseView::newChain() {
    endDemo();
    startChain();
}

void ReverseView::setClassIndex(int classIndex) {
    if (const int i = m_class->findData(classIndex); i >= 0) m_class->setCurrentIndex(i);
}

void ReverseView::startDemo(const QVector<int>& classes) {
    m_demo = classes;
    nextDemoChain();
}

void ReverseView::nextDemoChain() {
    if (m_demo.isEmpty()) {
        if (m_inDemo) {
            m_inDemo = false;
            Q_EMIT demoFinished();
        }
        return;
    }
    m_inDemo = true;
    setClassIndex(m_demo.takeFirst());
    startChain();
}

void ReverseView::endDemo() {
    m_demo.clear();
    m_inDemo = false;
}

void ReverseView::startChain() {
    if (const QString problem = promptProblem(); !problem.isEmpty()) {
        // Never sent to the worker: the window says what to change.
        setRunning(false);
        checkPrompt();
        Q_EMIT statusMessage(problem);
        return;
    }
    if (m_text) rememberPrompt(m_prompt->text().trimmed());
    if (m_randomSeed->isChecked()) m_seed->setValue(int(QRandomGenerator::global()->bounded(1000000)));
    m_frames.clear();
    m_follow = true;
    m_haveChain = true;
    const int id = m_worker->newRequest();
    m_chainRequest = id;
    setRunning(true);
    m_chainTimer.start();
    m_progress->setRange(0, m_steps->value());
    m_progress->setValue(0);
    QMetaObject::invokeMethod(m_worker, "startChain", Qt::QueuedConnection, Q_ARG(dlab::ui::ChainSettings, settings()),
                              Q_ARG(int, -1), Q_ARG(int, id));
}

void ReverseView::playPause() {
    endDemo();
    if (m_running) {
        m_worker->requestStop();  // pauses at the next step; the chain is kept
        setRunning(false);
        return;
    }
    if (!m_haveChain || (!m_frames.isEmpty() && m_frames.size() == m_frames.last().total)) {
        newChain();
        return;
    }
    const int id = m_worker->newRequest();
    m_chainRequest = id;
    setRunning(true);
    QMetaObject::invokeMethod(m_worker, "runSteps", Qt::QueuedConnection, Q_ARG(int, -1), Q_ARG(int, id));
}

void ReverseView::stepOnce() {
    endDemo();
    if (m_running) return;
    const int id = m_worker->newRequest();
    m_chainRequest = id;
    if (!m_haveChain || (!m_frames.isEmpty() && m_frames.size() == m_frames.last().total)) {
        m_frames.clear();
        m_haveChain = true;
        m_progress->setRange(0, m_steps->value());
        QMetaObject::invokeMethod(m_worker, "startChain", Qt::QueuedConnection,
                                  Q_ARG(dlab::ui::ChainSettings, settings()), Q_ARG(int, 1), Q_ARG(int, id));
        return;
    }
    QMetaObject::invokeMethod(m_worker, "runSteps", Qt::QueuedConnection, Q_ARG(int, 1), Q_ARG(int, id));
}

void ReverseView::forkHere() {
    if (m_frames.isEmpty() || m_shown < 0) return;
    endDemo();
    const int index = m_shown;
    m_frames.resize(index);
    m_follow = true;
    const int id = m_worker->newRequest();
    m_chainRequest = id;
    setRunning(true);
    QMetaObject::invokeMethod(m_worker, "forkFrom", Qt::QueuedConnection, Q_ARG(int, index),
                              Q_ARG(dlab::ui::ChainSettings, settings()), Q_ARG(int, -1), Q_ARG(int, id));
    Q_EMIT statusMessage(tr("Forked at step %1 with the current settings").arg(index + 1));
}

void ReverseView::setGuidance(double scale) {
    m_guidanceLabel->setText(QString::number(scale, 'f', 1));
    if (m_guidance->value() != qRound(scale * 10)) m_guidance->setValue(qRound(scale * 10));
    applyGuidance();
}

void ReverseView::setClassifierGuidance(int kind, double c) {
    m_kind->setCurrentIndex(std::clamp(kind, 0, 2));
    m_classifier->setValue(qRound(c * 10));
    applyGuidance();
}

void ReverseView::applyGuidance() {
    const ChainSettings s = settings();
    m_guidance->setEnabled(m_kind->currentData().toInt() != 1);
    m_classifier->setEnabled(m_kind->currentData().toInt() != 0 && m_kind->isEnabled());
    // Live: the next step of a running chain uses them.
    m_worker->guidanceControl()->set_scale(s.guidance);
    m_worker->guidanceControl()->set_classifier_scale(s.classifierScale);
}

void ReverseView::onFrame(const ChainFrame& f) {
    // A forked chain may restart at a later index of a new schedule.
    if (f.index < m_frames.size()) m_frames.resize(f.index);
    while (m_frames.size() < f.index) m_frames.push_back(ChainFrame{});
    m_frames.push_back(f);
    // Coalesce repaints: at most one refresh per 40 ms however fast steps arrive.
    if (!m_refreshPending) {
        m_refreshPending = true;
        QTimer::singleShot(40, this, [this] {
            m_refreshPending = false;
            refresh();
        });
    }
}

void ReverseView::refresh() {
    if (m_frames.isEmpty()) return;
    const ChainFrame& last = m_frames.last();
    showProgress(m_progress, last.index + 1, last.total, m_chainTimer);
    if (!m_running) m_progress->setFormat(QStringLiteral("%v / %m"));  // stopped: no ETA
    const QSignalBlocker block(m_scrub);
    m_scrub->setRange(0, m_frames.size() - 1);
    if (m_follow) {
        m_scrub->setValue(m_frames.size() - 1);
        showFrame(m_frames.size() - 1);
    }
    // The strip: evenly spaced recorded steps, the last one showing the final image.
    // A chain started from a test image has no frames before its first step: the strip spans its own.
    const int n = m_frames.size();
    int first = 0;
    while (first < n - 1 && m_frames[first].xt.isNull()) ++first;
    m_stripCaption->setText(first > 0 ? tr("The chain, from the noised test image at t = %1 (left) to image (right):").arg(m_frames[first].t)
                                      : tr("The chain, from noise (left) to image (right):"));
    for (int i = 0; i < kStripLength; ++i) {
        const int k = first + (last.total - 1 - first) * i / (kStripLength - 1);
        if (k < n && !m_frames[k].xt.isNull()) {
            m_strip[i]->setImage(k == last.total - 1 ? m_frames[k].next : m_frames[k].xt);
            m_strip[i]->setCaption(k == last.total - 1 ? tr("x₀") : QStringLiteral("t=%1").arg(m_frames[k].t));
        } else {
            m_strip[i]->setImage(QImage());
            m_strip[i]->setCaption(QString());
        }
    }
}

void ReverseView::showFrame(int index) {
    if (index < 0 || index >= m_frames.size()) return;
    const ChainFrame& f = m_frames[index];
    if (f.xt.isNull()) return;
    m_shown = index;
    m_xt->setImage(f.xt);
    m_x0->setImage(f.index == f.total - 1 ? f.next : f.x0);
    m_x0->setCaption(f.index == f.total - 1 ? tr("final sample x₀") : f.latent ? tr("predicted x̂₀, decoded") : tr("predicted x̂₀"));
    m_eps->setImage(f.eps);
    m_x0c->setImage(f.x0Cond);
    m_x0u->setImage(f.x0Uncond);
    m_map->setImage(f.guidanceMap);
    m_cmap->setImage(f.classifierMap);
    m_x0Latent->setImage(f.x0Latent);
    for (int i = 0; i < m_tokenPanels.size(); ++i) {
        m_tokenPanels[i]->setImage(i < f.tokenMaps.size() ? f.tokenMaps[i] : QImage());
        m_tokenPanels[i]->setCaption(i < f.tokens.size() ? f.tokens[i] : QString());
    }
    QString text = tr("step %1 / %2 · t = %3 · s = %4").arg(f.index + 1).arg(f.total).arg(f.t).arg(f.guidance, 0, 'f', 1);
    if (f.classifierScale != 0.0) text += tr(" · c = %1").arg(f.classifierScale, 0, 'f', 1);
    m_stepLabel->setText(text);
}

void ReverseView::onStopped(int done, int total, int requestId) {
    if (requestId != m_chainRequest) return;  // a chain this view has since replaced
    setRunning(false);
    refresh();
    if (done == total && total > 0) {
        Q_EMIT statusMessage(tr("Chain finished: %1 steps in %2 s").arg(total).arg(m_chainTimer.elapsed() / 1000.0, 0, 'f', 2));
        Q_EMIT chainFinished();
        // The demonstration: the finished garment stays a moment, then the next class.
        if (m_inDemo) QTimer::singleShot(m_demo.isEmpty() ? 0 : 900, this, [this] { if (m_inDemo) nextDemoChain(); });
    } else if (m_inDemo) {
        endDemo();  // stopped or failed: the demonstration ends there
    }
}

QImage ReverseView::currentImage() const { return m_x0->image(); }

QString ReverseView::currentParameters() const {
    const ChainSettings s = settings();
    return QStringLiteral("model=%1 class=%2 guidance=%3 classifier_scale=%9 sampler=%4 steps=%5 spacing=%10 eta=%6 seed=%7 step=%8")
        .arg(m_model->currentText())
        .arg(s.classIndex)
        .arg(s.guidance)
        .arg(QString::fromStdString(to_string(s.sampler)))
        .arg(s.steps)
        .arg(s.eta)
        .arg(s.seed)
        .arg(m_shown + 1)
        .arg(s.classifierScale)
        .arg(QString::fromStdString(to_string(s.spacing)));
}

}  // namespace dlab::ui

namespace dlab::ui {

QString ReverseView::exportChainVideo(const QString& path) const {
    std::vector<at::Tensor> frames;
    auto toTensor = [](const QImage& img) {
        const QImage g = img.convertToFormat(QImage::Format_Grayscale8);
        at::Tensor t = at::empty({1, g.height(), g.width()}, at::kFloat);
        for (int y = 0; y < g.height(); ++y)
            for (int x = 0; x < g.width(); ++x) t[0][y][x] = g.constScanLine(y)[x] / 255.0f;
        return t;
    };
    for (const ChainFrame& f : m_frames)
        if (!f.xt.isNull()) frames.push_back(toTensor(f.xt));
    if (frames.empty()) return tr("Nothing to export yet: run a chain first");
    if (!m_frames.last().next.isNull())
        for (int i = 0; i < 12; ++i) frames.push_back(toTensor(m_frames.last().next));  // hold the result
    auto st = imaging::write_video(path.toStdString(), frames, 12.0, 8);
    return st ? QString() : QString::fromStdString(st.error());
}

}  // namespace dlab::ui
