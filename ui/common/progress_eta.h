#pragma once
// One way for every view to show how far a job is and how long it has left: "12 / 50 steps ·
// ETA 3 s", the time left extrapolated from the time the job has run so far.

#include <QString>

class QElapsedTimer;
class QProgressBar;

namespace dlab::ui {

/// "–" when unknown, else "42 s", "3 min 20 s" or "2 h 5 min".
QString formatEta(double seconds);

/// Sets `bar` to done of total with the format "%v / %m UNIT · ETA ..." while the job runs
/// (plain "%v / %m UNIT" at the end); the ETA extrapolates the elapsed time of `clock`.
void showProgress(QProgressBar* bar, int done, int total, const QElapsedTimer& clock,
                  const QString& unit = QString());

}  // namespace dlab::ui
