#include "ui/views/schedule_view.h"

#include <cmath>

#include <QCheckBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QSlider>
#include <QSpinBox>
#include <QVBoxLayout>

#include "core/forward/schedule.h"
#include "ui/common/explain.h"
#include "ui/common/qcp.h"

namespace dlab::ui {

namespace {

const QColor kColours[] = {QColor(31, 119, 180), QColor(214, 39, 40), QColor(44, 160, 44),
                           QColor(148, 103, 189)};

QVector<double> toVector(const at::Tensor& t) {
    at::Tensor c = t.contiguous();
    const double* p = c.data_ptr<double>();
    return QVector<double>(p, p + c.numel());
}

}  // namespace

ScheduleView::ScheduleView(QWidget* parent) : QWidget(parent) {
    auto* controls = new QGroupBox(tr("Noise schedules"));
    auto* form = new QFormLayout;
    m_timesteps = new QSpinBox;
    m_timesteps->setRange(2, 100000);
    m_timesteps->setValue(1000);
    m_timesteps->setToolTip(tr("Number of diffusion steps T"));
    form->addRow(tr("Timesteps T"), m_timesteps);
    const auto& kinds = all_schedule_kinds();
    for (size_t i = 0; i < kinds.size(); ++i) {
        auto* box = new QCheckBox(QString::fromStdString(to_string(kinds[i])));
        box->setChecked(true);
        box->setStyleSheet(QStringLiteral("QCheckBox { color: %1; font-weight: bold; }")
                               .arg(kColours[i % 4].name()));
        m_shown.push_back(box);
        form->addRow(box);
        connect(box, &QCheckBox::toggled, this, &ScheduleView::recompute);
    }
    m_zeroTerminal = new QCheckBox(tr("Zero terminal SNR"));
    m_zeroTerminal->setToolTip(tr("Lin et al. 2024: rescale so that abar at t = T-1 is exactly 0"));
    form->addRow(m_zeroTerminal);
    m_snrShift = new QDoubleSpinBox;
    m_snrShift->setRange(0.01, 100.0);
    m_snrShift->setDecimals(2);
    m_snrShift->setValue(1.0);
    m_snrShift->setPrefix(QStringLiteral("× "));
    m_snrShift->setToolTip(tr("Multiply SNR(t) at every t (Hoogeboom et al. 2023 shift schedules by resolution): "
                              "above 1 leaves more of the image at every step, for data with less redundancy "
                              "than pixels such as small latents; 1 is the schedule as published"));
    form->addRow(tr("SNR shift"), m_snrShift);
    m_tSlider = new QSlider(Qt::Horizontal);
    m_tSlider->setRange(0, 999);
    m_tSlider->setValue(500);
    form->addRow(tr("t"), m_tSlider);
    m_readout = new QLabel;
    m_readout->setTextFormat(Qt::RichText);
    m_readout->setWordWrap(true);
    m_readout->setMinimumWidth(220);
    form->addRow(m_readout);
    controls->setLayout(form);
    controls->setMaximumWidth(300);

    m_plot = new QCustomPlot;
    m_plot->setMinimumSize(520, 420);
    explain(m_plot, tr("Noise schedules"), tr("top: ᾱ_t = ∏_{s≤t} (1 − β_s); bottom: SNR(t) = ᾱ_t / (1 − ᾱ_t), log scale"),
            tr("Where ᾱ_t is near 0 the image is gone: steps spent there teach the model little."));
    m_plot->plotLayout()->clear();
    m_abarRect = new QCPAxisRect(m_plot);
    m_snrRect = new QCPAxisRect(m_plot);
    m_plot->plotLayout()->addElement(0, 0, m_abarRect);
    m_plot->plotLayout()->addElement(1, 0, m_snrRect);
    auto* margins = new QCPMarginGroup(m_plot);  // align the two plots' left edges
    m_abarRect->setMarginGroup(QCP::msLeft | QCP::msRight, margins);
    m_snrRect->setMarginGroup(QCP::msLeft | QCP::msRight, margins);
    m_abarRect->axis(QCPAxis::atLeft)->setLabel(QStringLiteral("ᾱ_t  (signal kept)"));
    m_abarRect->axis(QCPAxis::atBottom)->setLabel(QStringLiteral("t"));
    m_abarRect->axis(QCPAxis::atLeft)->setRange(0, 1.02);
    m_snrRect->axis(QCPAxis::atLeft)->setLabel(QStringLiteral("SNR(t), log scale"));
    m_snrRect->axis(QCPAxis::atBottom)->setLabel(QStringLiteral("t"));
    m_snrRect->axis(QCPAxis::atLeft)->setScaleType(QCPAxis::stLogarithmic);
    m_snrRect->axis(QCPAxis::atLeft)->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
    m_snrRect->axis(QCPAxis::atLeft)->setNumberFormat(QStringLiteral("eb"));
    m_snrRect->axis(QCPAxis::atLeft)->setNumberPrecision(0);
    auto* legend = new QCPLegend;
    m_abarRect->insetLayout()->addElement(legend, Qt::AlignTop | Qt::AlignRight);
    legend->setLayer(QStringLiteral("legend"));
    m_plot->legend = legend;
    m_plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);

    auto* layout = new QHBoxLayout(this);
    layout->addWidget(controls);
    layout->addWidget(m_plot, 1);

    connect(m_timesteps, qOverload<int>(&QSpinBox::valueChanged), this, &ScheduleView::setTimesteps);
    connect(m_zeroTerminal, &QCheckBox::toggled, this, &ScheduleView::recompute);
    connect(m_snrShift, qOverload<double>(&QDoubleSpinBox::valueChanged), this, &ScheduleView::recompute);
    connect(m_tSlider, &QSlider::valueChanged, this, &ScheduleView::setMarkedT);
    recompute();
}

int ScheduleView::visibleScheduleCount() const { return m_curves.size(); }

QVector<double> ScheduleView::alphaBarCurve(const QString& schedule) const {
    for (const auto& c : m_curves)
        if (c.name == schedule) return c.abar;
    return {};
}

int ScheduleView::markedT() const { return m_tSlider->value(); }

void ScheduleView::setTimesteps(int timesteps) {
    if (m_timesteps->value() != timesteps) m_timesteps->setValue(timesteps);  // re-enters here
    const double frac = m_tSlider->maximum() > 0
                            ? double(m_tSlider->value()) / double(m_tSlider->maximum())
                            : 0.5;
    m_tSlider->setRange(0, timesteps - 1);
    m_tSlider->setValue(int(std::lround(frac * (timesteps - 1))));
    recompute();
}

void ScheduleView::setMarkedT(int t) {
    if (m_tSlider->value() != t) {
        m_tSlider->setValue(t);
        return;
    }
    const double x = t;
    if (m_abarMarker) {
        m_abarMarker->point1->setCoords(x, 0);
        m_abarMarker->point2->setCoords(x, 1);
        m_snrMarker->point1->setCoords(x, 1e-3);
        m_snrMarker->point2->setCoords(x, 1);
    }
    updateReadout();
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void ScheduleView::setSnrShift(double factor) {
    if (m_snrShift->value() != factor) m_snrShift->setValue(factor);  // recomputes through valueChanged
}

void ScheduleView::recompute() {
    const int T = m_timesteps->value();
    m_plot->clearGraphs();
    m_plot->clearItems();
    m_curves.clear();
    QVector<double> ts(T);
    for (int i = 0; i < T; ++i) ts[i] = i;
    double snrMin = 1e300, snrMax = 0;
    const auto& kinds = all_schedule_kinds();
    for (size_t i = 0; i < kinds.size(); ++i) {
        if (!m_shown[int(i)]->isChecked()) continue;
        ScheduleConfig cfg;
        cfg.kind = kinds[i];
        cfg.timesteps = T;
        cfg.zero_terminal_snr = m_zeroTerminal->isChecked();
        cfg.snr_shift = m_snrShift->value();
        auto schedule = NoiseSchedule::create(cfg);
        if (!schedule) continue;
        Curve curve{QString::fromStdString(to_string(kinds[i])), toVector(schedule->alpha_bars()),
                    toVector(schedule->snr())};
        const QPen pen(kColours[i % 4], 2);
        auto* g = m_plot->addGraph(m_abarRect->axis(QCPAxis::atBottom),
                                   m_abarRect->axis(QCPAxis::atLeft));
        g->setData(ts, curve.abar, true);
        g->setPen(pen);
        g->setName(curve.name);
        // A log axis cannot show SNR = 0 (zero terminal SNR): those points are left out.
        QVector<double> st, sv;
        for (int k = 0; k < T; ++k) {
            if (curve.snr[k] > 0 && std::isfinite(curve.snr[k])) {
                st.push_back(k);
                sv.push_back(curve.snr[k]);
                snrMin = std::min(snrMin, curve.snr[k]);
                snrMax = std::max(snrMax, curve.snr[k]);
            }
        }
        auto* gs = m_plot->addGraph(m_snrRect->axis(QCPAxis::atBottom),
                                    m_snrRect->axis(QCPAxis::atLeft));
        gs->setData(st, sv, true);
        gs->setPen(pen);
        gs->removeFromLegend();
        m_curves.push_back(std::move(curve));
    }
    m_abarRect->axis(QCPAxis::atBottom)->setRange(0, T - 1);
    m_snrRect->axis(QCPAxis::atBottom)->setRange(0, T - 1);
    if (snrMax > 0) m_snrRect->axis(QCPAxis::atLeft)->setRange(snrMin * 0.5, snrMax * 2);
    auto makeMarker = [this](QCPAxisRect* rect) {
        auto* line = new QCPItemStraightLine(m_plot);
        line->setClipAxisRect(rect);
        for (auto* p : {line->point1, line->point2}) {
            p->setAxes(rect->axis(QCPAxis::atBottom), rect->axis(QCPAxis::atLeft));
        }
        line->setPen(QPen(Qt::darkGray, 1, Qt::DashLine));
        return line;
    };
    m_abarMarker = makeMarker(m_abarRect);
    m_snrMarker = makeMarker(m_snrRect);
    setMarkedT(m_tSlider->value());
    m_plot->replot();
}

void ScheduleView::updateReadout() {
    const int t = m_tSlider->value();
    QString html = tr("<b>t = %1</b><table>").arg(t);
    html += QStringLiteral("<tr><th></th><th align=right>ᾱ_t</th><th align=right>SNR</th></tr>");
    for (const auto& c : m_curves) {
        if (t >= c.abar.size()) continue;
        html += QStringLiteral("<tr><td>%1&nbsp;</td><td align=right>%2</td><td align=right>%3</td></tr>")
                    .arg(c.name)
                    .arg(c.abar[t], 0, 'f', 4)
                    .arg(c.snr[t], 0, 'g', 3);
    }
    html += QStringLiteral("</table>");
    m_readout->setText(html);
}

}  // namespace dlab::ui
