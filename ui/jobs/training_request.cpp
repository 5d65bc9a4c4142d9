#include "ui/jobs/training_request.h"

#include <QObject>

#include "ui/common/checked_values.h"

namespace dlab::ui {

QJsonObject TrainingRequest::toJson() const {
    return QJsonObject{{QStringLiteral("family"), family},
                       {QStringLiteral("dataset"), dataset},
                       {QStringLiteral("image_size"), imageSize},
                       {QStringLiteral("channels"), channels},
                       {QStringLiteral("size"), sizePreset},
                       {QStringLiteral("schedule"), schedule},
                       {QStringLiteral("snr_shift"), snrShift},
                       {QStringLiteral("prediction"), prediction},
                       {QStringLiteral("steps"), double(steps)},
                       {QStringLiteral("batch"), double(batch)},
                       {QStringLiteral("lr"), lr},
                       {QStringLiteral("device"), device},
                       {QStringLiteral("seed"), QString::number(seed)},
                       {QStringLiteral("sample_every"), sampleEvery},
                       {QStringLiteral("log_every"), logEvery},
                       {QStringLiteral("checkpoint_every"), checkpointEvery},
                       {QStringLiteral("out"), outDir}};
}

TrainingRequest TrainingRequest::fromJson(const QJsonObject& o, QStringList* problems) {
    TrainingRequest r;
    auto v = [&o](const char* key) { return o.value(QLatin1String(key)); };
    r.family = checkedChoice(v("family"), QStringLiteral("family"), {QStringLiteral("diffusion"), QStringLiteral("gan")}, r.family, problems);
    const QJsonValue dataset = v("dataset");
    const QString d = checkedText(dataset, QStringLiteral("dataset"), 4096, r.dataset, problems);
    if (d == QStringLiteral("fashion-mnist") || d.startsWith(QStringLiteral("images:")) || d.startsWith(QStringLiteral("toy:")))
        r.dataset = d;
    else if (problems && d != r.dataset)
        problems->append(QObject::tr("dataset: \"%1\" is not fashion-mnist, images:FOLDER or toy:NAME").arg(d.left(40)));
    r.imageSize = int(checkedInt(v("image_size"), QStringLiteral("image_size"), 8, 256, r.imageSize, problems));
    const qint64 channels = checkedInt(v("channels"), QStringLiteral("channels"), 1, 3, r.channels, problems);
    if (channels == 2 && problems) problems->append(QObject::tr("channels: 2 is not 1 (grey) or 3 (RGB)"));
    r.channels = channels == 2 ? r.channels : int(channels);
    r.sizePreset = checkedChoice(v("size"), QStringLiteral("size"), {QStringLiteral("tiny"), QStringLiteral("small"), QStringLiteral("large")}, r.sizePreset, problems);
    r.schedule = checkedChoice(v("schedule"), QStringLiteral("schedule"),
                               {QStringLiteral("cosine"), QStringLiteral("linear"), QStringLiteral("scaled-linear"), QStringLiteral("sigmoid")},
                               r.schedule, problems);
    if (!v("snr_shift").isUndefined())  // absent in requests saved before it existed: no shift
        r.snrShift = checkedReal(v("snr_shift"), QStringLiteral("snr_shift"), 0.01, 100.0, r.snrShift, problems);
    r.prediction = checkedChoice(v("prediction"), QStringLiteral("prediction"), {QStringLiteral("eps"), QStringLiteral("v"), QStringLiteral("x0")}, r.prediction, problems);
    r.steps = checkedInt(v("steps"), QStringLiteral("steps"), 10, 10000000, r.steps, problems);
    r.batch = checkedInt(v("batch"), QStringLiteral("batch"), 1, 4096, r.batch, problems);
    r.lr = checkedReal(v("lr"), QStringLiteral("lr"), 1e-5, 0.1, r.lr, problems);
    r.device = checkedChoice(v("device"), QStringLiteral("device"), {QStringLiteral("cpu"), QStringLiteral("cuda")}, r.device, problems);
    r.seed = v("seed").isUndefined() ? 0 : checkedSeed(v("seed"), QStringLiteral("seed"), problems);
    r.sampleEvery = int(checkedInt(v("sample_every"), QStringLiteral("sample_every"), 0, 1000000, r.sampleEvery, problems));
    r.logEvery = int(checkedInt(v("log_every"), QStringLiteral("log_every"), 1, 1000000, r.logEvery, problems));
    r.checkpointEvery = int(checkedInt(v("checkpoint_every"), QStringLiteral("checkpoint_every"), 1, 10000000, r.checkpointEvery, problems));
    r.outDir = checkedText(v("out"), QStringLiteral("out"), 4096, QString(), problems);
    return r;
}

}  // namespace dlab::ui
