#include "ui/common/run_history.h"

#include <algorithm>

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QObject>
#include <QSaveFile>
#include <QStandardPaths>

namespace dlab::ui {

namespace {
const QString kRunFile = QStringLiteral("run.json");
}

RunHistory::RunHistory(QString root) : m_root(std::move(root)) {}

QString RunHistory::defaultRoot() {
    const QByteArray env = qgetenv("DLAB_DATA_DIR");
    const QString base = env.isEmpty() ? QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)
                                       : QString::fromLocal8Bit(env);
    return base + QStringLiteral("/runs");
}

RunRecord RunHistory::create(const QString& kind, const QString& title, const QJsonObject& parameters,
                             quint64 seed, QString* error) {
    RunRecord r;
    r.kind = kind;
    r.title = title;
    r.created = QDateTime::currentDateTime();
    r.status = QStringLiteral("running");
    r.parameters = parameters;
    r.seed = seed;
    QDir root(m_root);
    if (!root.mkpath(QStringLiteral("."))) {
        if (error) *error = QObject::tr("Cannot create the run history folder %1").arg(m_root);
        return {};
    }
    const QString stem = r.created.toString(QStringLiteral("yyyyMMdd-HHmmss-")) + kind;
    QString id = stem;
    for (int n = 2; root.exists(id); ++n) id = stem + QLatin1Char('-') + QString::number(n);
    if (!root.mkdir(id)) {
        if (error) *error = QObject::tr("Cannot create the run folder %1").arg(root.filePath(id));
        return {};
    }
    r.id = id;
    r.folder = root.absoluteFilePath(id);
    if (!save(r, error)) return {};
    return r;
}

bool RunHistory::save(const RunRecord& r, QString* error) const {
    QJsonObject o{{QStringLiteral("kind"), r.kind},
                  {QStringLiteral("title"), r.title},
                  {QStringLiteral("created"), r.created.toString(Qt::ISODate)},
                  {QStringLiteral("status"), r.status},
                  {QStringLiteral("message"), r.message},
                  {QStringLiteral("parameters"), r.parameters},
                  {QStringLiteral("seed"), QString::number(r.seed)},
                  {QStringLiteral("outputs"), QJsonArray::fromStringList(r.outputs)}};
    QSaveFile f(r.folder + QLatin1Char('/') + kRunFile);
    if (!f.open(QIODevice::WriteOnly)) {
        if (error) *error = QObject::tr("Cannot write %1: %2").arg(f.fileName(), f.errorString());
        return false;
    }
    f.write(QJsonDocument(o).toJson());
    if (!f.commit()) {
        if (error) *error = QObject::tr("Cannot write %1: %2").arg(f.fileName(), f.errorString());
        return false;
    }
    return true;
}

RunRecord RunHistory::load(const QString& id) const {
    RunRecord r;
    r.id = id;
    r.folder = QDir(m_root).absoluteFilePath(id);
    r.status = QStringLiteral("unreadable");
    r.title = id;
    QFile f(r.folder + QLatin1Char('/') + kRunFile);
    if (!f.open(QIODevice::ReadOnly)) {
        r.message = QObject::tr("run.json is missing");
        return r;
    }
    QJsonParseError pe;
    const QJsonDocument doc = QJsonDocument::fromJson(f.readAll(), &pe);
    if (!doc.isObject()) {
        r.message = QObject::tr("run.json is not valid JSON (%1)").arg(pe.errorString());
        return r;
    }
    const QJsonObject o = doc.object();
    r.kind = o.value(QStringLiteral("kind")).toString();
    r.title = o.value(QStringLiteral("title")).toString(id);
    r.created = QDateTime::fromString(o.value(QStringLiteral("created")).toString(), Qt::ISODate);
    r.status = o.value(QStringLiteral("status")).toString(QStringLiteral("unknown"));
    r.message = o.value(QStringLiteral("message")).toString();
    r.parameters = o.value(QStringLiteral("parameters")).toObject();
    r.seed = o.value(QStringLiteral("seed")).toString().toULongLong();
    for (const auto& v : o.value(QStringLiteral("outputs")).toArray()) r.outputs << v.toString();
    return r;
}

QVector<RunRecord> RunHistory::list() const {
    QVector<RunRecord> runs;
    const QStringList ids = QDir(m_root).entryList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name | QDir::Reversed);
    for (const QString& id : ids) runs << load(id);
    std::stable_sort(runs.begin(), runs.end(), [](const RunRecord& a, const RunRecord& b) {
        return a.created.isValid() && b.created.isValid() ? a.created > b.created : a.id > b.id;
    });
    return runs;
}

QString RunHistory::outputPath(const RunRecord& run, const QString& output) {
    return QFileInfo(output).isAbsolute() ? output : run.folder + QLatin1Char('/') + output;
}

QStringList RunHistory::missingOutputs(const RunRecord& run) const {
    QStringList missing;
    for (const QString& o : run.outputs)
        if (!QFileInfo::exists(outputPath(run, o))) missing << o;
    return missing;
}

bool RunHistory::remove(const QString& id, QString* error) const {
    if (id.isEmpty() || id.contains(QLatin1Char('/')) || id.startsWith(QLatin1Char('.'))) {
        if (error) *error = QObject::tr("Not a run: '%1'").arg(id);
        return false;
    }
    QDir dir(QDir(m_root).absoluteFilePath(id));
    if (!dir.exists()) return true;
    if (!dir.removeRecursively()) {
        if (error) *error = QObject::tr("Cannot delete %1").arg(dir.path());
        return false;
    }
    return true;
}

}  // namespace dlab::ui
