#include "ui/views/batch_view.h"

#include <algorithm>

#include <QComboBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QJsonArray>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include "ui/common/explain.h"
#include "ui/common/image_panel.h"
#include "ui/common/progress_eta.h"
#include "ui/common/sampler_choice.h"
#include "ui/jobs/sampling_worker.h"

namespace dlab::ui {

BatchView::BatchView(SamplingWorker* worker, QWidget* parent) : QWidget(parent), m_worker(worker) {
    auto* controls = new QGroupBox(tr("Batch"));
    auto* form = new QFormLayout;
    auto* note = new QLabel(tr("Uses the model chosen in the Reverse chain tab, with the sampling its manifest recommends "
                               "when it has one."));
    note->setWordWrap(true);
    form->addRow(note);
    m_class = new QComboBox;
    form->addRow(tr("Class"), m_class);
    m_scales = new QLineEdit(QStringLiteral("0, 1, 2, 3, 5, 8"));
    m_scales->setToolTip(tr("Guidance scales: the first is used for a grid, all of them for a strip"));
    form->addRow(tr("Guidance s"), m_scales);
    m_count = new QSpinBox;
    m_count->setRange(1, 256);
    m_count->setValue(64);
    m_count->setToolTip(tr("Samples in a grid; a strip uses 8 per scale"));
    form->addRow(tr("Grid size"), m_count);
    m_steps = new QSpinBox;
    m_steps->setRange(1, 1000);
    m_steps->setValue(30);
    form->addRow(tr("Steps"), m_steps);
    m_sampler = makeSamplerBox(QStringLiteral("batchSampler"));
    form->addRow(tr("Sampler"), m_sampler);
    m_spacing = makeSpacingBox(QStringLiteral("batchSpacing"));
    form->addRow(tr("Timesteps"), m_spacing);
    m_seed = new QSpinBox;
    m_seed->setRange(0, 1000000);
    form->addRow(tr("Seed"), m_seed);
    m_startImage = new QSpinBox;
    m_startImage->setRange(-1, 9999);
    m_startImage->setValue(-1);
    m_startImage->setSpecialValueText(tr("pure noise"));
    m_startImage->setToolTip(tr("SDEdit: start every sample from this Fashion-MNIST test image noised to t, each with its own noise: "
                                "variations of it, or with another class that item turned into it"));
    m_startT = new QSpinBox;
    m_startT->setRange(0, 999);
    m_startT->setValue(500);
    m_startT->setPrefix(tr("t = "));
    m_startT->setToolTip(tr("The noise level the test image starts from: low keeps it, high keeps only its rough shape"));
    m_startT->setEnabled(false);
    auto* startRow = new QHBoxLayout;
    startRow->addWidget(m_startImage, 1);
    startRow->addWidget(m_startT, 1);
    form->addRow(tr("Start from"), startRow);
    connect(m_startImage, qOverload<int>(&QSpinBox::valueChanged), this, [this](int v) { m_startT->setEnabled(v >= 0); });
    m_gridButton = new QPushButton(tr("Grid (first scale)"));
    m_stripButton = new QPushButton(tr("Strip across scales"));
    auto* cancelButton = new QPushButton(tr("Cancel"));
    form->addRow(m_gridButton);
    form->addRow(m_stripButton);
    m_vaeButton = new QPushButton(tr("VAE samples (one step)"));
    m_vaeButton->setToolTip(tr("Latent models: decode latents drawn from N(0, I) without diffusion, to see what diffusion adds"));
    m_vaeButton->setEnabled(false);
    form->addRow(m_vaeButton);
    form->addRow(cancelButton);
    m_progress = new QProgressBar;
    form->addRow(m_progress);
    controls->setLayout(form);
    controls->setFixedWidth(290);
    m_title = new QLabel(tr("Press a button to generate"));
    m_image = new ImagePanel(QString());
    explain(m_image, tr("A batch of samples"), tr("a grid of one class and scale, or a strip: a row per guidance scale, the same starting noise in every column"),
            tr("In a strip read down a column: one noise, guided harder and harder; variety shrinks along the rows."));
    auto* right = new QVBoxLayout;
    right->addWidget(m_title);
    right->addWidget(m_image, 1);
    auto* layout = new QHBoxLayout(this);
    layout->addWidget(controls);
    layout->addLayout(right, 1);

    connect(m_gridButton, &QPushButton::clicked, this, &BatchView::generateGrid);
    connect(m_stripButton, &QPushButton::clicked, this, &BatchView::generateStrip);
    connect(m_vaeButton, &QPushButton::clicked, this, &BatchView::generateVae);
    connect(cancelButton, &QPushButton::clicked, this, &BatchView::cancel);
    connect(m_worker, &SamplingWorker::batchProgress, this, [this](int done, int total) {
        showProgress(m_progress, done, total, m_clock, tr("steps"));
    });
    connect(m_worker, &SamplingWorker::gridReady, this, [this](const QImage& grid, const QString& title) {
        m_image->setImage(grid);
        m_title->setText(title);
        m_gridButton->setEnabled(true);
        m_stripButton->setEnabled(true);
        if (m_pending && m_history) {
            // The run history keeps the grid and what made it.
            m_pending = false;
            const QString runTitle = tr("%1, %2").arg(QFileInfo(m_modelPath).baseName(), title);
            QString error;
            RunRecord run = m_history->create(QStringLiteral("samples"), runTitle, m_request,
                                              quint64(m_request.value(QStringLiteral("seed")).toInt()), &error);
            if (!run.id.isEmpty()) {
                run.status = QStringLiteral("finished");
                run.message = m_parameters;
                if (grid.save(run.folder + QStringLiteral("/grid.png"))) run.outputs << QStringLiteral("grid.png");
                m_history->save(run, &error);
            }
            if (!error.isEmpty()) m_title->setText(title + QStringLiteral(" · ") + error);
            Q_EMIT historyChanged();
        }
        Q_EMIT finished();
    });
    connect(m_worker, &SamplingWorker::failed, this, [this](const QString&) {
        m_pending = false;
        m_gridButton->setEnabled(true);
        m_stripButton->setEnabled(true);
    });
}

void BatchView::setModelInfo(const ModelInfo& info) {
    m_modelPath = info.path;
    m_vaeButton->setEnabled(info.latent);
    m_class->clear();
    for (int i = 0; i < info.classNames.size(); ++i) m_class->addItem(QStringLiteral("%1 · %2").arg(i).arg(info.classNames[i]), i);
    m_class->addItem(tr("unconditional"), -1);
    m_class->addItem(tr("the start image's class"), -2);
    if (m_startImage->value() >= 0) m_class->setCurrentIndex(m_class->findData(-2));
    m_startT->setMaximum(std::max(0, info.timesteps - 1));
    // A model that recommends a sampling (the quality tier) draws its grids with it.
    selectSampling(m_sampler, m_steps, m_spacing, info.recommendedSampler, info.recommendedSteps, info.recommendedSpacing);
}

QImage BatchView::grid() const { return m_image->image(); }

void BatchView::setStartFrom(int image, int t) {
    m_startImage->setValue(image);
    m_startT->setValue(t);
    const int own = m_class->findData(-2);
    if (image >= 0 && own >= 0) m_class->setCurrentIndex(own);
}

namespace {

// The comma-separated guidance scales; empty with `bad` set to the first item that is no number.
QVector<double> parseScales(const QString& text, QString* bad) {
    QVector<double> scales;
    for (const QString& part : text.split(',', Qt::SkipEmptyParts)) {
        bool ok = false;
        const double v = part.trimmed().toDouble(&ok);
        if (!ok) {
            *bad = part.trimmed();
            return {};
        }
        scales.push_back(v);
    }
    return scales;
}

}  // namespace

void BatchView::generateGrid() {
    QString bad;
    const QVector<double> scales = parseScales(m_scales->text(), &bad);
    if (scales.isEmpty()) {
        m_title->setText(tr("Guidance s: give a number or a comma-separated list ('%1' is not one)").arg(bad));
        return;
    }
    start({scales.front()}, m_count->value());
}

void BatchView::generateStrip() {
    QString bad;
    const QVector<double> scales = parseScales(m_scales->text(), &bad);
    if (scales.isEmpty()) {
        m_title->setText(tr("Guidance s: give a number or a comma-separated list ('%1' is not one)").arg(bad));
        return;
    }
    start(scales, 8);
}

void BatchView::start(const QVector<double>& scales, int perScale) {
    const int classIndex = m_class->currentData().isValid() ? m_class->currentData().toInt() : 0;
    QStringList sc;
    for (double s : scales) sc << QString::number(s);
    const int startImage = m_startImage->value(), startT = m_startT->value();
    if (classIndex == -2 && startImage < 0) {
        m_title->setText(tr("\"The start image's class\" needs a start image (Start from)"));
        return;
    }
    m_parameters = QStringLiteral("class=%1 guidance=%2 per_scale=%3 sampler=%6 steps=%4 spacing=%7 seed=%5")
                       .arg(classIndex == -2 ? QStringLiteral("start-image") : QString::number(classIndex))
                       .arg(sc.join(QLatin1Char(',')))
                       .arg(perScale)
                       .arg(m_steps->value())
                       .arg(m_seed->value())
                       .arg(m_sampler->currentText(), m_spacing->currentText());
    if (startImage >= 0) m_parameters += QStringLiteral(" start_image=%1 start_t=%2").arg(startImage).arg(startT);
    QJsonArray sa;
    for (double s : scales) sa.append(s);
    m_request = QJsonObject{{QStringLiteral("model"), m_modelPath}, {QStringLiteral("class"), classIndex},
                            {QStringLiteral("scales"), sa}, {QStringLiteral("per_scale"), perScale},
                            {QStringLiteral("steps"), m_steps->value()}, {QStringLiteral("seed"), m_seed->value()},
                            {QStringLiteral("sampler"), m_sampler->currentText()},
                            {QStringLiteral("spacing"), m_spacing->currentText()}};
    if (startImage >= 0) {
        m_request.insert(QStringLiteral("start_image"), startImage);
        m_request.insert(QStringLiteral("start_t"), startT);
    }
    m_pending = true;
    m_title->setText(tr("generating…"));
    m_gridButton->setEnabled(false);
    m_stripButton->setEnabled(false);
    m_clock.start();
    const int id = m_worker->newRequest();
    BatchGridRequest request;
    request.classIndex = classIndex;
    request.scales = scales;
    request.perScale = perScale;
    request.steps = m_steps->value();
    request.seed = quint64(m_seed->value());
    request.sampler = SamplerKind(m_sampler->currentData().toInt());
    request.spacing = TimestepSpacing(m_spacing->currentData().toInt());
    request.startImage = startImage;
    request.startT = startT;
    QMetaObject::invokeMethod(m_worker, "generateGrid", Qt::QueuedConnection, Q_ARG(dlab::ui::BatchGridRequest, request),
                              Q_ARG(int, id));
}

void BatchView::runWith(const QJsonObject& p) {
    QVector<double> scales;
    QStringList text;
    for (const auto& v : p.value(QStringLiteral("scales")).toArray()) {
        scales << v.toDouble();
        text << QString::number(v.toDouble());
    }
    if (scales.isEmpty()) {
        m_title->setText(tr("This record has no guidance scales"));
        return;
    }
    const int cls = m_class->findData(p.value(QStringLiteral("class")).toInt());
    if (cls >= 0) m_class->setCurrentIndex(cls);
    m_scales->setText(text.join(QStringLiteral(", ")));
    m_steps->setValue(p.value(QStringLiteral("steps")).toInt(m_steps->value()));
    selectRecordedSampling(m_sampler, m_spacing, p);
    m_seed->setValue(p.value(QStringLiteral("seed")).toInt());
    m_startImage->setValue(p.value(QStringLiteral("start_image")).toInt(-1));
    if (p.contains(QStringLiteral("start_t"))) m_startT->setValue(p.value(QStringLiteral("start_t")).toInt());
    const int perScale = p.value(QStringLiteral("per_scale")).toInt(8);
    if (scales.size() == 1) m_count->setValue(perScale);
    start(scales, perScale);
}

void BatchView::generateVae() {
    m_parameters = QStringLiteral("vae-prior count=%1 seed=%2").arg(m_count->value()).arg(m_seed->value());
    m_title->setText(tr("decoding…"));
    m_pending = false;
    const int id = m_worker->newRequest();
    QMetaObject::invokeMethod(m_worker, "generateVaeGrid", Qt::QueuedConnection, Q_ARG(int, m_count->value()),
                              Q_ARG(quint64, quint64(m_seed->value())), Q_ARG(int, id));
}

void BatchView::showResult(const QImage& grid, const QString& title) {
    m_image->setImage(grid);
    m_title->setText(title);
}

void BatchView::cancel() {
    m_pending = false;
    m_worker->requestStop();
    m_gridButton->setEnabled(true);
    m_stripButton->setEnabled(true);
    m_title->setText(tr("cancelled"));
}

}  // namespace dlab::ui
