#include "ui/views/forward_view.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QMimeData>
#include <QPushButton>
#include <QSlider>
#include <QSpinBox>
#include <QVBoxLayout>

#include "core/data/datasets.h"
#include "core/forward/schedule.h"
#include "ui/common/explain.h"
#include "ui/common/image_panel.h"
#include "ui/common/qcp.h"
#include "ui/jobs/sampling_worker.h"

namespace dlab::ui {

namespace {
constexpr int kStrip = ForwardJob::kStrip;
constexpr int kT = ForwardJob::kT;
const QColor kColourA(31, 119, 180), kColourB(214, 39, 40);
}  // namespace

ForwardView::ForwardView(SamplingWorker* worker, QWidget* parent) : QWidget(parent), m_worker(worker) {
    setAcceptDrops(true);
    auto* controls = new QGroupBox(tr("Forward process q(x_t | x_0)"));
    auto* form = new QFormLayout;
    m_class = new QComboBox;
    for (const std::string& name : fashion_mnist_class_names()) m_class->addItem(QString::fromStdString(name));
    form->addRow(tr("Class"), m_class);
    m_index = new QSpinBox;
    m_index->setRange(0, 999);
    form->addRow(tr("Example"), m_index);
    m_toy = new QComboBox;
    m_toy->addItem(tr("(image)"));
    for (const auto& name : toy_names()) m_toy->addItem(QString::fromStdString(name));
    m_toy->setToolTip(tr("Or noise a 2-D toy point cloud"));
    form->addRow(tr("2-D toy set"), m_toy);
    auto* open = new QPushButton(tr("Open your own image…"));
    open->setToolTip(tr("Or drop an image file on this view"));
    form->addRow(open);
    m_scheduleA = new QComboBox;
    m_scheduleB = new QComboBox;
    for (ScheduleKind k : all_schedule_kinds()) {
        m_scheduleA->addItem(QString::fromStdString(to_string(k)), int(k));
        m_scheduleB->addItem(QString::fromStdString(to_string(k)), int(k));
    }
    m_scheduleA->setCurrentText(QStringLiteral("linear"));
    m_scheduleB->setCurrentText(QStringLiteral("cosine"));
    m_scheduleA->setStyleSheet(QStringLiteral("color: %1").arg(kColourA.name()));
    m_scheduleB->setStyleSheet(QStringLiteral("color: %1").arg(kColourB.name()));
    form->addRow(tr("Schedule A"), m_scheduleA);
    form->addRow(tr("Schedule B"), m_scheduleB);
    m_t = new QSlider(Qt::Horizontal);
    m_t->setRange(0, kT - 1);
    m_t->setValue(300);
    m_tLabel = new QLabel;
    form->addRow(tr("t"), m_t);
    form->addRow(m_tLabel);
    m_latentBox = new QCheckBox(tr("Also noise in latent space"));
    m_latentBox->setToolTip(tr("Encode x₀ with the bundled autoencoder, noise the 4x8x8 latent with schedule B "
                               "and show the decoded result beside pixel-space noise"));
    form->addRow(m_latentBox);
    m_message = new QLabel;
    m_message->setWordWrap(true);
    form->addRow(m_message);
    controls->setLayout(form);
    controls->setFixedWidth(290);

    m_original = new ImagePanel(tr("x₀"));
    m_a = new ImagePanel(tr("x_t, schedule A"));
    m_b = new ImagePanel(tr("x_t, schedule B"));
    auto* top = new QHBoxLayout;
    top->addWidget(m_original);
    top->addWidget(m_a);
    top->addWidget(m_b);
    m_latentPanel = new ImagePanel(tr("decoded latent x_t, schedule B"));
    m_latentPanel->setVisible(false);
    explain(m_original, tr("x₀, the clean image"), tr("a Fashion-MNIST image, a 2-D point set or your own image, scaled to [−1, 1]"),
            tr("Drop an image file here to noise your own."));
    explain(m_a, tr("x_t under schedule A"), tr("x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε, ε ~ N(0, I), one jump from x₀"),
            tr("The same ε for both schedules: only ᾱ_t differs."));
    explain(m_b, tr("x_t under schedule B"), tr("x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε with schedule B's ᾱ_t"),
            tr("Compare with A at the same t: the schedule with the larger ᾱ_t keeps more of the image."));
    explain(m_latentPanel, tr("Noised in latent space, then decoded"), tr("z_t = √ᾱ_t E(x₀) + √(1 − ᾱ_t) ε, shown as D(z_t)"),
            tr("Latent noise decodes to smooth blotches, not pixel grain."));
    top->addWidget(m_latentPanel);
    m_plot = new QCustomPlot;
    m_plot->setMinimumWidth(260);
    m_plot->xAxis->setLabel(QStringLiteral("t"));
    m_plot->yAxis->setLabel(QStringLiteral("ᾱ_t"));
    m_plot->xAxis->setRange(0, kT - 1);
    m_plot->yAxis->setRange(0, 1.02);
    m_plot->legend->setVisible(true);
    m_plot->yAxis2->setVisible(true);
    m_plot->yAxis2->setLabel(QStringLiteral("SNR (dashed, log)"));
    m_plot->yAxis2->setScaleType(QCPAxis::stLogarithmic);
    m_plot->yAxis2->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
    m_plot->yAxis2->setNumberFormat(QStringLiteral("eb"));
    m_plot->yAxis2->setNumberPrecision(0);
    m_plot->yAxis2->setRange(1e-5, 1e4);
    top->addWidget(m_plot, 1);
    explain(m_plot, tr("ᾱ_t and SNR of both schedules"), tr("ᾱ_t = ∏_{s≤t} (1 − β_s), SNR(t) = ᾱ_t / (1 − ᾱ_t)"),
            tr("Solid: ᾱ_t (left axis); dashed: SNR on a log scale (right axis); the line marks the current t."));
    auto* strips = new QGridLayout;
    strips->setSpacing(2);
    for (int i = 0; i < kStrip; ++i) {
        auto* a = new ImagePanel(QString());
        auto* b = new ImagePanel(QString());
        a->setMinimumSize(50, 60);
        b->setMinimumSize(50, 60);
        m_stripA.push_back(a);
        m_stripB.push_back(b);
        strips->addWidget(a, 0, i);
        strips->addWidget(b, 1, i);
        auto* l = new ImagePanel(QString());
        l->setMinimumSize(50, 60);
        l->setVisible(false);
        m_stripL.push_back(l);
        strips->addWidget(l, 2, i);
    }
    auto* right = new QVBoxLayout;
    right->addLayout(top, 3);
    right->addWidget(new QLabel(tr("x_t at evenly spaced t: schedule A (top) destroys the image earlier than B (bottom) when its ᾱ falls faster")));
    right->addLayout(strips, 2);
    auto* layout = new QHBoxLayout(this);
    layout->addWidget(controls);
    layout->addLayout(right, 1);

    auto pick = [this] { loadDatasetSample(m_class->currentIndex(), m_index->value()); };
    connect(m_class, qOverload<int>(&QComboBox::currentIndexChanged), this, pick);
    connect(m_toy, qOverload<int>(&QComboBox::currentIndexChanged), this, [this, pick](int i) {
        if (i == 0) pick();
        else loadToySet(m_toy->itemText(i));
    });
    connect(m_index, qOverload<int>(&QSpinBox::valueChanged), this, pick);
    connect(m_scheduleA, qOverload<int>(&QComboBox::currentIndexChanged), this, &ForwardView::refresh);
    connect(m_scheduleB, qOverload<int>(&QComboBox::currentIndexChanged), this, &ForwardView::refresh);
    connect(m_t, &QSlider::valueChanged, this, &ForwardView::refresh);
    connect(m_latentBox, &QCheckBox::toggled, this, &ForwardView::setLatent);
    connect(open, &QPushButton::clicked, this, [this] {
        const QString path = QFileDialog::getOpenFileName(this, tr("Open image"), QString(),
                                                          tr("Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp)"));
        if (!path.isEmpty()) loadImageFile(path);
    });
    connect(m_worker, &SamplingWorker::forwardReady, this, &ForwardView::showResult);
    // Your own image is resized to the loaded model's size: redo it when the model changes.
    connect(m_worker, &SamplingWorker::modelLoaded, this, [this] {
        if (m_request.source == ForwardRequest::File) refresh();
    });
    m_request.source = ForwardRequest::Dataset;
    m_good = m_request;
    pick();
}

void ForwardView::refresh() {
    m_request.t = m_t->value();
    m_request.scheduleA = m_scheduleA->currentData().toInt();
    m_request.scheduleB = m_scheduleB->currentData().toInt();
    m_request.serial = ++m_serial;
    m_worker->requestForward(m_request);
}

void ForwardView::loadDatasetSample(int classIndex, int index) {
    m_request.source = ForwardRequest::Dataset;
    m_request.classIndex = classIndex;
    m_request.index = index;
    refresh();
}

void ForwardView::loadToySet(const QString& name) {
    m_request.source = ForwardRequest::Toy;
    m_request.toy = name;
    refresh();
}

void ForwardView::loadImageFile(const QString& path) {
    m_request.source = ForwardRequest::File;
    m_request.path = path;
    refresh();
}

void ForwardView::setLatent(bool on) {
    m_request.latent = on;
    {
        const QSignalBlocker block(m_latentBox);
        m_latentBox->setChecked(on);
    }
    m_latentPanel->setVisible(on);
    for (auto* p : m_stripL) p->setVisible(on);
    refresh();
}

QImage ForwardView::latentImage() const { return m_request.latent ? m_latentPanel->image() : QImage(); }

void ForwardView::setT(int t) { m_t->setValue(t); }
int ForwardView::t() const { return m_t->value(); }
QImage ForwardView::noisedImage(int which) const { return (which == 0 ? m_a : m_b)->image(); }
QImage ForwardView::originalImage() const { return m_original->image(); }

void ForwardView::showResult(const ForwardResult& r) {
    auto showError = [this](const QString& text) {
        m_lastMessage = text;
        m_message->setText(QStringLiteral("<span style='color:#b00'>%1</span>").arg(text.toHtmlEscaped()));
    };
    m_error = !r.error.isEmpty();
    if (m_error) {
        // Keep what is on screen and go back to the last x_0 that loaded.
        showError(r.error);
        if (r.request.serial == m_serial) {
            m_request.source = m_good.source;
            m_request.classIndex = m_good.classIndex;
            m_request.index = m_good.index;
            m_request.path = m_good.path;
            m_request.toy = m_good.toy;
        }
        Q_EMIT previewShown();
        return;
    }
    m_good = r.request;
    m_shownT = r.request.t;
    m_lastMessage = r.message;
    m_message->setText(r.message.toHtmlEscaped());
    m_original->setImage(r.original);
    m_a->setImage(r.a);
    m_b->setImage(r.b);
    m_a->setCaption(tr("x_t, %1, ᾱ = %2").arg(r.nameA).arg(r.alphaBarA, 0, 'f', 3));
    m_b->setCaption(tr("x_t, %1, ᾱ = %2").arg(r.nameB).arg(r.alphaBarB, 0, 'f', 3));
    for (int i = 0; i < kStrip && i < r.stripA.size(); ++i) {
        m_stripA[i]->setImage(r.stripA[i]);
        m_stripB[i]->setImage(r.stripB[i]);
        m_stripA[i]->setCaption(QStringLiteral("t=%1").arg(r.stripT[i]));
        m_stripB[i]->setCaption(QStringLiteral("t=%1").arg(r.stripT[i]));
    }
    if (!r.latentError.isEmpty()) {
        // The autoencoder is missing: turn the option off and say why.
        {
            const QSignalBlocker block(m_latentBox);
            m_latentBox->setChecked(false);
        }
        m_request.latent = false;
        m_latentPanel->setVisible(false);
        for (auto* p : m_stripL) p->setVisible(false);
        showError(r.latentError);
    } else if (r.request.latent && !r.latent.isNull()) {
        m_latentPanel->setImage(r.latent);
        m_latentPanel->setCaption(tr("latent x_t, decoded"));
        for (int i = 0; i < kStrip && i < r.stripL.size(); ++i) {
            m_stripL[i]->setImage(r.stripL[i]);
            m_stripL[i]->setCaption(i == 0 ? tr("latent, decoded") : QString());
        }
    }
    // The curves change only with the schedules; t moves the marker.
    const QString curves = r.nameA + QLatin1Char('|') + r.nameB;
    if (curves != m_curvesShown) {
        m_curvesShown = curves;
        QVector<double> xs(kT);
        for (int k = 0; k < kT; ++k) xs[k] = k;
        m_plot->clearGraphs();
        for (int which = 0; which < 2; ++which) {
            const QColor colour = which == 0 ? kColourA : kColourB;
            auto* g = m_plot->addGraph();
            g->setData(xs, which == 0 ? r.curveA : r.curveB, true);
            g->setPen(QPen(colour, 2));
            g->setName(which == 0 ? r.nameA : r.nameB);
            auto* gs = m_plot->addGraph(m_plot->xAxis, m_plot->yAxis2);
            gs->setData(xs, which == 0 ? r.snrCurveA : r.snrCurveB, true);
            gs->setPen(QPen(colour, 1, Qt::DashLine));
            gs->removeFromLegend();
        }
    }
    if (!m_marker) {
        m_marker = new QCPItemStraightLine(m_plot);
        m_marker->setPen(QPen(Qt::darkGray, 1, Qt::DashLine));
    }
    m_marker->point1->setCoords(r.request.t, 0);
    m_marker->point2->setCoords(r.request.t, 1);
    m_tLabel->setText(tr("<b>t = %1</b><br>%2: ᾱ_t = %3, SNR = %4<br>%5: ᾱ_t = %6, SNR = %7<br>")
                          .arg(r.request.t)
                          .arg(r.nameA).arg(r.alphaBarA, 0, 'f', 4).arg(r.snrA, 0, 'g', 3)
                          .arg(r.nameB).arg(r.alphaBarB, 0, 'f', 4).arg(r.snrB, 0, 'g', 3));
    if (m_plot->isVisible()) m_plot->replot(QCustomPlot::rpQueuedReplot);
    Q_EMIT previewShown();
}

void ForwardView::showEvent(QShowEvent* event) {
    QWidget::showEvent(event);
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void ForwardView::dragEnterEvent(QDragEnterEvent* event) {
    if (event->mimeData()->hasUrls()) event->acceptProposedAction();
}

void ForwardView::dropEvent(QDropEvent* event) {
    const auto urls = event->mimeData()->urls();
    if (!urls.isEmpty() && urls.first().isLocalFile()) loadImageFile(urls.first().toLocalFile());
}

}  // namespace dlab::ui
