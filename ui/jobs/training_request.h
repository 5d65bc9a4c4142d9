#pragma once
// The parameters of a training run as a value type (Qt Core only): saved with the run (request.json,
// the run history, the settings) and read back through the checks of ui/common/checked_values.h.

#include <QJsonObject>
#include <QMetaType>
#include <QString>
#include <QStringList>

namespace dlab::ui {

/// What a training run is made of. Saved with the run (request.json, the run history) so that a
/// run can be resumed or run again.
struct TrainingRequest {
    QString family = QStringLiteral("diffusion");  ///< diffusion or gan (one big step: images only)
    QString dataset = QStringLiteral("fashion-mnist");  ///< fashion-mnist, images:DIR or toy:NAME
    int imageSize = 32;        ///< images:DIR: side of the square
    int channels = 1;          ///< images:DIR: 1 or 3
    QString sizePreset = QStringLiteral("small");      ///< tiny, small or large
    QString schedule = QStringLiteral("cosine");
    double snrShift = 1.0;     ///< the schedule's SNR(t) multiplied by this at every t (0.01..100; 1: none)
    QString prediction = QStringLiteral("eps");
    qint64 steps = 2000;
    qint64 batch = 64;
    double lr = 2e-4;
    QString device = QStringLiteral("cpu");
    quint64 seed = 0;
    int sampleEvery = 200;     ///< steps between EMA sample grids (0: none)
    int logEvery = 10;         ///< steps between progress reports
    int checkpointEvery = 500;
    QString outDir;            ///< the run folder
    bool resume = false;       ///< continue from outDir/checkpoint.safetensors

    QJsonObject toJson() const;
    /// Every field checked (type, range, allowed names) before use: a field that fails keeps its
    /// default and adds a line to `problems` (a hand-edited or damaged run.json, request.json or
    /// settings entry never reaches the trainer unchecked).
    static TrainingRequest fromJson(const QJsonObject& o, QStringList* problems = nullptr);
};

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::TrainingRequest)
