// libFuzzer target: a run record (run.json of the run history) and the training request inside it,
// as the history view, resume and re-run read them. Every field is checked before use: no
// undefined conversion, and nothing unchecked comes out (kind and status among the known ones,
// request values inside the ranges the training view offers).
#include <cstdint>
#include <cstdlib>

#include <QByteArray>
#include <QString>

#include "ui/common/run_history.h"
#include "ui/jobs/training_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const QByteArray bytes(reinterpret_cast<const char*>(data), qsizetype(size));
    const dlab::ui::RunRecord r = dlab::ui::RunHistory::parseRecord(bytes, QStringLiteral("id"), QStringLiteral("/runs/id"));
    const QStringList statuses{QStringLiteral("unreadable"), QStringLiteral("running"), QStringLiteral("finished"),
                               QStringLiteral("stopped"), QStringLiteral("failed")};
    if (!statuses.contains(r.status)) std::abort();
    QStringList problems;
    const auto q = dlab::ui::TrainingRequest::fromJson(r.parameters, &problems);
    if (q.steps < 10 || q.steps > 10000000 || q.batch < 1 || q.batch > 4096 || !(q.lr >= 1e-5 && q.lr <= 0.1) ||
        (q.channels != 1 && q.channels != 3) || q.imageSize < 8 || q.imageSize > 256 || q.logEvery < 1)
        std::abort();
    // What comes out goes back in unchanged and without a note.
    problems.clear();
    const auto again = dlab::ui::TrainingRequest::fromJson(q.toJson(), &problems);
    if (!problems.isEmpty() || again.toJson() != q.toJson()) std::abort();
    return 0;
}
