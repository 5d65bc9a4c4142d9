#include "ui/common/save_dialog.h"
#include "ui/views/video_view.h"

#include <algorithm>
#include <cmath>

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPainter>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QTimer>
#include <QVBoxLayout>

#include <ATen/ATen.h>

#include "core/data/datasets.h"
#include "core/video/moving_fashion.h"
#include "imaging/image_io.h"
#include "ui/common/explain.h"
#include "ui/common/image_panel.h"
#include "ui/common/qcp.h"
#include "ui/common/view_layout.h"

namespace dlab::ui {

namespace {
constexpr int kGridRows = 8;  // steps shown in the chain grid (evenly spaced, the last always)
const char* const kArrows[kMotionDirections] = {"→", "↗", "↑", "↖", "←", "↙", "↓", "↘"};
}  // namespace

VideoView::VideoView(SamplingWorker* worker, const QString& device, QWidget* parent)
    : QWidget(parent), m_worker(worker), m_device(device) {
    auto* controls = new QGroupBox(tr("Video diffusion"));
    auto* form = new QFormLayout;
    auto* intro = new QLabel(tr("The same denoising objective on whole clips: the UNet's layers work on each frame, and "
                                "attention along time at every position lets the frames of a clip agree on one item and "
                                "one motion. All 16 frames are denoised together, step by step."));
    intro->setWordWrap(true);
    form->addRow(intro);
    m_class = fashionClassCombo(7);
    form->addRow(tr("Class"), m_class);
    m_direction = new QComboBox;
    for (int d = 0; d < kMotionDirections; ++d)
        m_direction->addItem(QStringLiteral("%1 %2").arg(QString::fromUtf8(kArrows[d]), QString::fromLatin1(motion_direction_names()[size_t(d)])), d);
    m_direction->setCurrentIndex(1);
    form->addRow(tr("Moving"), m_direction);
    m_guidance = new QDoubleSpinBox;
    m_guidance->setRange(0, 50);
    m_guidance->setDecimals(1);
    m_guidance->setSingleStep(0.5);
    m_guidance->setValue(3);
    m_guidance->setToolTip(tr("Classifier-free guidance on class and direction together"));
    form->addRow(tr("Guidance s"), m_guidance);
    m_stepCount = new QSpinBox;
    m_stepCount->setRange(1, 1000);
    m_stepCount->setValue(25);
    m_stepCount->setToolTip(tr("DDIM steps; each one runs the network on all 16 frames (twice with guidance)"));
    form->addRow(tr("Steps"), m_stepCount);
    m_seed = new QSpinBox;
    m_seed->setRange(0, 1000000);
    form->addRow(tr("Seed"), m_seed);
    m_start = new QPushButton(tr("▶ Generate"));
    m_stop = new QPushButton(tr("Stop"));
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(m_start);
    buttons->addWidget(m_stop);
    form->addRow(buttons);
    m_export = new QPushButton(tr("Export MP4…"));
    m_export->setToolTip(tr("The finished clip at 8 frames per second, each pixel drawn 8 x 8"));
    form->addRow(m_export);
    m_progress = new QProgressBar;
    m_progress->setFormat(QStringLiteral("%v / %m"));
    form->addRow(m_progress);
    m_status = noteLabel();
    form->addRow(m_status);
    controls->setLayout(form);
    controls->setFixedWidth(300);

    m_chain = new ImagePanel(tr("the chain: frames → , steps ↓"));
    explain(m_chain, tr("The reverse chain of one clip"), tr("x_{t-1} = √ᾱ_{t-1} x̂_0 + √(1 − ᾱ_{t-1}) ε̂(x_t, t, y)  (DDIM), for all frames at once"),
            tr("Each row is the whole clip after a step, each column one frame. Noise leaves every frame at the same rate; the "
               "item appears in all frames together, already in a different place in each."));
    m_x0 = new ImagePanel(tr("predicted x_0 of the latest step"));
    explain(m_x0, tr("What the network thinks the clip is"), tr("x̂_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v̂  (v-prediction)"),
            tr("Early on a blurred item along the path; it sharpens as t falls."));
    m_player = new ImagePanel(tr("the clip, looping"));
    explain(m_player, tr("The finished clip"), tr("16 frames of 48 x 48 at 8 frames per second"),
            tr("The item should keep its class in every frame and move in the asked direction, bouncing at the borders."));
    auto* left = new QVBoxLayout;
    left->addWidget(m_chain, 3);
    left->addWidget(m_x0, 1);
    auto* panels = new QHBoxLayout;
    panels->addLayout(left, 3);
    panels->addWidget(m_player, 1);

    m_plot = new QCustomPlot;
    m_plot->setMinimumHeight(200);
    m_plot->xAxis->setLabel(tr("column (px)"));
    m_plot->yAxis->setLabel(tr("row (px)"));
    m_plot->yAxis->setRangeReversed(true);  // image rows grow downwards
    m_plot->xAxis->setRange(0, 48);  // the canvas, before a clip exists
    m_plot->yAxis->setRange(0, 48);
    m_plot->legend->setVisible(false);  // shown with the first path
    m_plot->legend->setFont(QFont(font().family(), 8));
    layOutControlsPanelsPlot(this, controls, panels, m_plot);

    m_timer = new QTimer(this);
    m_timer->setInterval(125);
    connect(m_timer, &QTimer::timeout, this, [this] {
        const QVector<QImage>& frames = clip();
        if (frames.isEmpty()) return;
        m_playing = (m_playing + 1) % int(frames.size());
        m_player->setImage(frames[m_playing]);
        m_player->setCaption(tr("the clip, looping · frame %1 of %2").arg(m_playing + 1).arg(frames.size()));
    });
    connect(m_start, &QPushButton::clicked, this, &VideoView::start);
    connect(m_stop, &QPushButton::clicked, this, &VideoView::stop);
    connect(m_export, &QPushButton::clicked, this, &VideoView::exportDialog);
    connect(m_worker, &SamplingWorker::videoStep, this, &VideoView::onStep);
    connect(m_worker, &SamplingWorker::videoStopped, this, &VideoView::onStopped);
    connect(m_worker, &SamplingWorker::failed, this, [this](const QString& m) {
        if (!m_running || !m.startsWith(tr("Video"))) return;
        setRunning(false);
        m_status->setText(QStringLiteral("<span style='color:#b00'>%1</span>").arg(m.toHtmlEscaped()));
        Q_EMIT finished();
    });
    m_stop->setEnabled(false);
    m_export->setEnabled(false);
    m_status->setText(tr("Press Generate: a clip of 16 frames takes about 10 s for 25 steps on a 2-core CPU, "
                         "under a second on a GPU."));
}

const QVector<QImage>& VideoView::clip() const {
    static const QVector<QImage> none;
    return m_steps.isEmpty() ? none : m_steps.last().clip;  // only the last step carries the frames
}

void VideoView::configure(int classIndex, int direction, double guidance, int steps) {
    if (const int i = m_class->findData(classIndex); i >= 0) m_class->setCurrentIndex(i);
    if (const int i = m_direction->findData(direction); i >= 0) m_direction->setCurrentIndex(i);
    m_guidance->setValue(guidance);
    m_stepCount->setValue(steps);
}

void VideoView::setRunning(bool running) {
    m_running = running;
    m_start->setEnabled(!running);
    m_stop->setEnabled(running);
    m_export->setEnabled(!running && !clip().isEmpty());
}

void VideoView::start() {
    VideoRequest r;
    r.classIndex = m_class->currentData().toInt();
    r.direction = m_direction->currentData().toInt();
    r.guidance = m_guidance->value();
    r.steps = m_stepCount->value();
    r.seed = quint64(m_seed->value());
    r.device = m_device;
    m_steps.clear();
    m_grid = QImage();
    m_timer->stop();
    m_chain->setImage(QImage());
    m_x0->setImage(QImage());
    m_player->setImage(QImage());
    m_player->setCaption(tr("the clip, looping"));
    m_plot->clearPlottables();
    m_plot->clearItems();
    m_plot->replot(QCustomPlot::rpQueuedReplot);
    m_request = m_worker->newRequest();
    m_progress->setRange(0, r.steps);
    m_progress->setValue(0);
    m_status->setText(tr("Loading the video model…"));
    setRunning(true);
    QMetaObject::invokeMethod(m_worker, "startVideo", Qt::QueuedConnection, Q_ARG(dlab::ui::VideoRequest, r), Q_ARG(int, m_request));
}

void VideoView::stop() {
    if (!m_running) return;
    m_worker->requestStop();
}

void VideoView::rebuildGrid() {
    const int n = int(m_steps.size());
    if (n == 0) return;
    QVector<int> rows;
    const int total = m_steps.last().total;
    for (int k = 0; k < kGridRows; ++k) {
        // Steps evenly spaced over the whole chain; those not reached yet are left out.
        const int s = std::max(1, int(std::lround(double(total) * (k + 1) / kGridRows)));
        if (s <= n && (rows.isEmpty() || rows.last() != s - 1)) rows.push_back(s - 1);
    }
    if (rows.isEmpty() || rows.last() != n - 1) rows.push_back(n - 1);
    const QImage& first = m_steps[rows.first()].xt;
    const int margin = 58, gap = 2, w = first.width(), h = first.height();
    QImage grid(margin + w, int(rows.size()) * (h + gap) - gap, QImage::Format_RGB32);
    grid.fill(QColor(250, 250, 250));
    QPainter p(&grid);
    QFont f = p.font();
    f.setPixelSize(15);
    p.setFont(f);
    p.setPen(QColor(60, 60, 60));
    for (int i = 0; i < rows.size(); ++i) {
        const VideoStep& s = m_steps[rows[i]];
        const int y = i * (h + gap);
        p.drawImage(margin, y, s.xt);
        p.drawText(QRect(0, y, margin - 4, h), Qt::AlignRight | Qt::AlignVCenter, QStringLiteral("t=%1").arg(s.t));
    }
    p.end();
    m_grid = grid;
    m_chain->setImage(m_grid);
}

void VideoView::plotPath(const VideoStep& s) {
    m_plot->clearPlottables();
    m_plot->clearItems();
    if (s.rows.isEmpty()) return;
    auto* path = new QCPCurve(m_plot->xAxis, m_plot->yAxis);
    path->setData(s.cols, s.rows);
    path->setPen(QPen(QColor(31, 119, 180), 2));
    path->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 5));
    path->setName(tr("the item's centroid, frame by frame"));
    // The asked direction from the first frame's centroid, 8 px long (the real clips move 2 px per frame).
    const int d = m_direction->currentData().toInt();
    const double angle = d * M_PI / 4;
    auto* asked = new QCPItemLine(m_plot);
    asked->start->setCoords(s.cols.first(), s.rows.first());
    asked->end->setCoords(s.cols.first() + 8 * std::cos(angle), s.rows.first() - 8 * std::sin(angle));
    asked->setHead(QCPLineEnding::esSpikeArrow);
    asked->setPen(QPen(QColor(214, 39, 40), 2));
    auto* legendLine = new QCPGraph(m_plot->xAxis, m_plot->yAxis);  // a legend entry for the arrow
    legendLine->setPen(asked->pen());
    legendLine->setName(tr("the asked direction (over 4 frames)"));
    m_plot->xAxis->setRange(0, 48);
    m_plot->yAxis->setRange(0, 48);
    m_plot->legend->setVisible(true);
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void VideoView::onStep(const VideoStep& s, int requestId) {
    if (requestId != m_request) return;
    m_steps.push_back(s);
    rebuildGrid();
    m_x0->setImage(s.x0);
    m_x0->setCaption(tr("predicted x_0 at t = %1").arg(s.t));
    m_progress->setRange(0, s.total);
    m_progress->setValue(s.step);
    m_status->setText(tr("%1 · step %2 of %3 (t = %4)").arg(s.title).arg(s.step).arg(s.total).arg(s.t));
    if (!s.clip.isEmpty()) {
        m_playing = 0;
        m_player->setImage(s.clip.first());
        m_timer->start();
        plotPath(s);
        const int asked = m_direction->currentData().toInt();
        const bool right = s.trackedDirection == asked;
        m_status->setText(tr("%1 · done · the tracker sees it moving %2%3")
                              .arg(s.title, QString::fromLatin1(motion_direction_names()[size_t(std::clamp(s.trackedDirection, 0, 7))]),
                                   right ? tr(" (as asked)") : tr(" — not the asked direction")));
    }
}

void VideoView::onStopped(int done, int total, bool completed, int requestId) {
    if (requestId != m_request) return;
    setRunning(false);
    Q_EMIT statusMessage(completed ? tr("Video: a clip of %1 frames in %2 steps").arg(clip().size()).arg(done)
                                   : tr("Video stopped at step %1 of %2").arg(done).arg(total));
    Q_EMIT finished();
}

QString VideoView::exportClip(const QString& path) const {
    if (clip().isEmpty()) return tr("there is no finished clip to export");
    std::vector<at::Tensor> frames;
    for (const QImage& im : clip()) {
        const QImage g = im.convertToFormat(QImage::Format_Grayscale8);
        at::Tensor f = at::empty({1, g.height(), g.width()}, at::kFloat);
        float* out = f.data_ptr<float>();
        for (int y = 0; y < g.height(); ++y) {
            const uchar* line = g.constScanLine(y);
            for (int x = 0; x < g.width(); ++x) out[y * g.width() + x] = line[x] / 255.0f;
        }
        frames.push_back(f);
    }
    if (auto st = imaging::write_video(path.toStdString(), frames, 8.0, 8); !st) return QString::fromStdString(st.error());
    return {};
}

void VideoView::exportDialog() {
    const QString path = askExportPath(this, tr("Export the clip"), QStringLiteral("clip.mp4"), tr("MP4 video (*.mp4)"));
    if (path.isEmpty()) return;
    const QString error = exportClip(path);
    if (error.isEmpty()) Q_EMIT statusMessage(tr("Saved %1").arg(path));
    else m_status->setText(QStringLiteral("<span style='color:#b00'>%1</span>").arg(tr("Could not export: %1").arg(error).toHtmlEscaped()));
}

}  // namespace dlab::ui
