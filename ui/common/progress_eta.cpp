#include "ui/common/progress_eta.h"

#include <cmath>

#include <QElapsedTimer>
#include <QProgressBar>

namespace dlab::ui {

QString formatEta(double s) {
    if (!(s > 0) || !std::isfinite(s)) return QStringLiteral("–");
    const qint64 t = qRound64(s);
    if (t >= 3600) return QStringLiteral("%1 h %2 min").arg(t / 3600).arg((t % 3600) / 60);
    if (t >= 60) return QStringLiteral("%1 min %2 s").arg(t / 60).arg(t % 60);
    return QStringLiteral("%1 s").arg(t);
}

void showProgress(QProgressBar* bar, int done, int total, const QElapsedTimer& clock, const QString& unit) {
    bar->setRange(0, total);
    bar->setValue(done);
    const QString counted = unit.isEmpty() ? QStringLiteral("%v / %m") : QStringLiteral("%v / %m ") + unit;
    if (done > 0 && done < total && clock.isValid()) {
        const double eta = clock.elapsed() / 1000.0 / done * (total - done);
        bar->setFormat(counted + QStringLiteral(" · ETA ") + formatEta(eta));
    } else {
        bar->setFormat(counted);
    }
}

}  // namespace dlab::ui
