#pragma once

#include <QWidget>
#include <QVector>

class QCheckBox;
class QCustomPlot;
class QDoubleSpinBox;
class QCPAxisRect;
class QCPItemStraightLine;
class QLabel;
class QSlider;
class QSpinBox;

namespace dlab::ui {

/// Plots abar_t and SNR(t) (log scale) of every noise schedule, computed by core, with a t marker.
class ScheduleView : public QWidget {
    Q_OBJECT
public:
    explicit ScheduleView(QWidget* parent = nullptr);

    /// Number of schedules currently drawn.
    int visibleScheduleCount() const;
    /// Data of the abar curve of a schedule by name ("cosine", ...), empty when hidden.
    QVector<double> alphaBarCurve(const QString& schedule) const;
    /// The t marked on the plots.
    int markedT() const;

public Q_SLOTS:
    void setTimesteps(int timesteps);
    void setMarkedT(int t);
    /// Multiplies every schedule's SNR(t) by `factor` (ScheduleConfig::snr_shift; 1: none).
    void setSnrShift(double factor);
    void recompute();

private:
    void updateReadout();

    QSpinBox* m_timesteps = nullptr;
    QCheckBox* m_zeroTerminal = nullptr;
    QDoubleSpinBox* m_snrShift = nullptr;
    QVector<QCheckBox*> m_shown;
    QSlider* m_tSlider = nullptr;
    QLabel* m_readout = nullptr;
    QCustomPlot* m_plot = nullptr;
    QCPAxisRect* m_abarRect = nullptr;
    QCPAxisRect* m_snrRect = nullptr;
    QCPItemStraightLine* m_abarMarker = nullptr;
    QCPItemStraightLine* m_snrMarker = nullptr;
    struct Curve {
        QString name;
        QVector<double> abar, snr;
    };
    QVector<Curve> m_curves;
};

}  // namespace dlab::ui
