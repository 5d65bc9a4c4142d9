#include "ui/forward_view.h"

#include "core/model_catalog.h"

#include <torch/torch.h>

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
#include <QPainter>
#include <QPushButton>
#include <QSlider>
#include <QSpinBox>
#include <QVBoxLayout>

#include <ATen/ATen.h>

#include "core/datasets.h"
#include "core/sampler.h"
#include "core/schedule.h"
#include "imaging/image_io.h"
#include "ui/image_panel.h"
#include "ui/qcp.h"
#include "ui/tensor_image.h"

namespace dlab::ui {

namespace {
constexpr int kStrip = 8;
constexpr int kT = 1000;

// A 2-D point cloud drawn into an image (x and y in [-4, 4]).
QImage renderPoints(const at::Tensor& pts) {
    QImage img(220, 220, QImage::Format_RGB32);
    img.fill(QColor(250, 250, 250));
    QPainter p(&img);
    p.setRenderHint(QPainter::Antialiasing);
    p.setPen(QPen(QColor(200, 200, 200), 1));
    p.drawLine(110, 0, 110, 220);
    p.drawLine(0, 110, 220, 110);
    p.setPen(Qt::NoPen);
    p.setBrush(QColor(31, 119, 180, 110));
    const at::Tensor c = pts.to(at::kFloat).contiguous();
    const float* d = c.data_ptr<float>();
    for (int64_t i = 0; i < c.size(0); ++i)
        p.drawEllipse(QPointF(110 + d[2 * i] * 26.0, 110 - d[2 * i + 1] * 26.0), 1.6, 1.6);
    return img;
}
const QColor kColourA(31, 119, 180), kColourB(214, 39, 40);
}  // namespace

ForwardView::ForwardView(QWidget* parent) : QWidget(parent) {
    setAcceptDrops(true);
    auto* controls = new QGroupBox(tr("Forward process q(x_t | x_0)"));
    auto* form = new QFormLayout;
    m_class = new QComboBox;
    const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
    for (size_t i = 0; i < names.size(); ++i) m_class->addItem(QString::fromStdString(names[i]));
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
    connect(m_scheduleA, qOverload<int>(&QComboBox::currentIndexChanged), this, &ForwardView::recompute);
    connect(m_scheduleB, qOverload<int>(&QComboBox::currentIndexChanged), this, &ForwardView::recompute);
    connect(m_t, &QSlider::valueChanged, this, &ForwardView::recompute);
    connect(m_latentBox, &QCheckBox::toggled, this, [this](bool on) {
        if (!setLatent(on)) {
            const QSignalBlocker block(m_latentBox);
            m_latentBox->setChecked(false);
        }
    });
    connect(open, &QPushButton::clicked, this, [this] {
        const QString path = QFileDialog::getOpenFileName(this, tr("Open image"), QString(),
                                                          tr("Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp)"));
        if (!path.isEmpty()) loadImageFile(path);
    });
    m_eps = at::randn({1, 28, 28}, make_generator(0), at::TensorOptions().dtype(at::kFloat));
    pick();
}

bool ForwardView::loadDatasetSample(int classIndex, int index) {
    if (!m_testImages.defined()) {
        auto data = load_fashion_mnist(fashion_mnist_dir(), false);
        if (!data) {
            m_message->setText(QStringLiteral("<span style='color:#b00'>%1</span>").arg(QString::fromStdString(data.error()).toHtmlEscaped()));
            return false;
        }
        m_testImages = data->x;
        m_testLabels = data->labels;
    }
    const at::Tensor idx = at::nonzero(m_testLabels == classIndex).flatten();
    if (idx.numel() == 0) return false;
    m_x0 = m_testImages[idx[index % idx.numel()].item<int64_t>()];
    m_points = false;
    m_z0 = at::Tensor();
    m_eps = at::randn(m_x0.sizes(), make_generator(quint64(classIndex * 1000 + index)), at::TensorOptions().dtype(at::kFloat));
    m_message->setText(tr("Fashion-MNIST test image %1 (%2)").arg(idx[index % idx.numel()].item<int64_t>()).arg(m_class->itemText(classIndex)));
    recompute();
    return true;
}

bool ForwardView::loadToySet(const QString& name) {
    auto data = make_toy(name.toStdString(), 2000, 3);
    if (!data) {
        m_message->setText(QStringLiteral("<span style='color:#b00'>%1</span>").arg(QString::fromStdString(data.error()).toHtmlEscaped()));
        return false;
    }
    m_x0 = data->x;
    m_points = true;
    m_eps = at::randn(m_x0.sizes(), make_generator(5), at::TensorOptions().dtype(at::kFloat));
    m_message->setText(tr("2-D toy set '%1' (2000 points)").arg(name));
    recompute();
    return true;
}

bool ForwardView::loadImageFile(const QString& path) {
    auto img = imaging::read_image(path.toStdString(), 3);
    if (!img) {
        m_message->setText(QStringLiteral("<span style='color:#b00'>%1</span>").arg(QString::fromStdString(img.error()).toHtmlEscaped()));
        return false;
    }
    at::Tensor x = img.value() * 2 - 1;
    // Resize so the longer side is at most 128 pixels (keeps scrubbing instant).
    const int64_t h = x.size(1), w = x.size(2), m = std::max(h, w);
    if (m > 128) x = at::upsample_bilinear2d(x.unsqueeze(0), {h * 128 / m, w * 128 / m}, false).squeeze(0);
    m_x0 = x.contiguous();
    m_points = false;
    m_z0 = at::Tensor();
    m_eps = at::randn(m_x0.sizes(), make_generator(7), at::TensorOptions().dtype(at::kFloat));
    m_message->setText(tr("Your image: %1").arg(path));
    recompute();
    return true;
}

bool ForwardView::setLatent(bool on) {
    if (on && !m_autoencoder) {
        auto path = resolve_model("fashion-mnist-autoencoder");
        auto ae = path ? load_autoencoder(path.value(), at::kCPU) : Result<Autoencoder>(Error{path.error()});
        if (!ae) {
            m_message->setText(QStringLiteral("<span style='color:#b00'>%1</span>").arg(QString::fromStdString(ae.error()).toHtmlEscaped()));
            return false;
        }
        m_autoencoder = ae.value();
    }
    m_latent = on;
    {
        const QSignalBlocker block(m_latentBox);
        m_latentBox->setChecked(on);
    }
    m_latentPanel->setVisible(on);
    for (auto* p : m_stripL) p->setVisible(on);
    m_z0 = at::Tensor();
    recompute();
    return true;
}

QImage ForwardView::latentImage() const { return m_latent ? m_latentPanel->image() : QImage(); }

void ForwardView::setT(int t) { m_t->setValue(t); }
int ForwardView::t() const { return m_t->value(); }
QImage ForwardView::noisedImage(int which) const { return (which == 0 ? m_a : m_b)->image(); }

void ForwardView::recompute() {
    if (!m_x0.defined()) return;
    const int t = m_t->value();
    m_original->setImage(m_points ? renderPoints(m_x0) : tensorToImage(m_x0));
    m_plot->clearGraphs();
    QString label;
    for (int which = 0; which < 2; ++which) {
        ScheduleConfig c;
        c.kind = ScheduleKind((which == 0 ? m_scheduleA : m_scheduleB)->currentData().toInt());
        c.timesteps = kT;
        const auto s = NoiseSchedule::create(c).value();
        auto noised = [&](int tt) {
            if (m_points) return renderPoints(s.add_noise(m_x0, m_eps, at::full({m_x0.size(0)}, tt, at::kLong)));
            const at::Tensor xt = s.add_noise(m_x0.unsqueeze(0), m_eps.unsqueeze(0), at::full({1}, tt, at::kLong));
            return tensorToImage(xt[0].clamp(-1, 1));
        };
        (which == 0 ? m_a : m_b)->setImage(noised(t));
        (which == 0 ? m_a : m_b)->setCaption(tr("x_t, %1, ᾱ = %2").arg(QString::fromStdString(to_string(c.kind))).arg(s.alpha_bar(t), 0, 'f', 3));
        auto& strip = which == 0 ? m_stripA : m_stripB;
        for (int i = 0; i < kStrip; ++i) {
            const int tt = (kT - 1) * i / (kStrip - 1);
            strip[i]->setImage(noised(tt));
            strip[i]->setCaption(QStringLiteral("t=%1").arg(tt));
        }
        QVector<double> xs(kT), ys(kT);
        const at::Tensor ab = s.alpha_bars();
        for (int k = 0; k < kT; ++k) {
            xs[k] = k;
            ys[k] = ab[k].item<double>();
        }
        auto* g = m_plot->addGraph();
        g->setData(xs, ys, true);
        g->setPen(QPen(which == 0 ? kColourA : kColourB, 2));
        g->setName(QString::fromStdString(to_string(c.kind)));
        QVector<double> snr(kT);
        const at::Tensor sn = s.snr();
        for (int k = 0; k < kT; ++k) snr[k] = std::max(1e-8, sn[k].item<double>());
        auto* gs = m_plot->addGraph(m_plot->xAxis, m_plot->yAxis2);
        gs->setData(xs, snr, true);
        gs->setPen(QPen(which == 0 ? kColourA : kColourB, 1, Qt::DashLine));
        gs->removeFromLegend();
        label += tr("%1: ᾱ_t = %2, SNR = %3<br>").arg(QString::fromStdString(to_string(c.kind))).arg(s.alpha_bar(t), 0, 'f', 4).arg(s.snr()[t].item<double>(), 0, 'g', 3);
    }
    if (m_latent && !m_points) {
        // Latent space: encode x0 (grey, 28x28 for the Fashion-MNIST autoencoder), noise the latent
        // with schedule B and decode. Images of another size are resized for the encoder.
        torch::NoGradGuard ng;
        const auto& ac = m_autoencoder->config();
        if (!m_z0.defined()) {
            at::Tensor x = m_x0.unsqueeze(0);
            if (x.size(1) != ac.in_channels) x = x.mean(1, true);
            if (x.size(2) != ac.image_size || x.size(3) != ac.image_size)
                x = at::upsample_bilinear2d(x, {ac.image_size, ac.image_size}, false);
            m_z0 = m_autoencoder->encode(x);
            m_zeps = at::randn(m_z0.sizes(), make_generator(11), at::TensorOptions().dtype(at::kFloat));
        }
        ScheduleConfig c;
        c.kind = ScheduleKind(m_scheduleB->currentData().toInt());
        c.timesteps = kT;
        const auto s = NoiseSchedule::create(c).value();
        std::vector<int64_t> ts{t};
        for (int i = 0; i < kStrip; ++i) ts.push_back((kT - 1) * i / (kStrip - 1));
        const int64_t n = int64_t(ts.size());
        const at::Tensor zt = s.add_noise(m_z0.expand({n, -1, -1, -1}), m_zeps.expand({n, -1, -1, -1}),
                                          at::tensor(ts, at::TensorOptions().dtype(at::kLong)));
        const at::Tensor dec = m_autoencoder->decode(zt);
        m_latentPanel->setImage(tensorToImage(dec[0]));
        m_latentPanel->setCaption(tr("latent x_t, decoded"));
        for (int i = 0; i < kStrip; ++i) {
            m_stripL[i]->setImage(tensorToImage(dec[i + 1]));
            m_stripL[i]->setCaption(i == 0 ? tr("latent, decoded") : QString());
        }
    }
    if (!m_marker) {
        m_marker = new QCPItemStraightLine(m_plot);
        m_marker->setPen(QPen(Qt::darkGray, 1, Qt::DashLine));
    }
    m_marker->point1->setCoords(t, 0);
    m_marker->point2->setCoords(t, 1);
    m_tLabel->setText(tr("<b>t = %1</b><br>").arg(t) + label);
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
