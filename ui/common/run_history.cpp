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

#include "ui/common/checked_values.h"

namespace dlab::ui {

namespace {
const QString kRunFile = QStringLiteral("run.json");
constexpr qint64 kMaxRecordBytes = qint64(4) << 20;
constexpr int kMaxOutputs = 100000;
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
    const QString folder = QDir(m_root).absoluteFilePath(id);
    QFile f(folder + QLatin1Char('/') + kRunFile);
    if (!f.open(QIODevice::ReadOnly)) {
        RunRecord r = parseRecord(QByteArray(), id, folder);
        r.message = QObject::tr("run.json is missing");
        return r;
    }
    // The size before the read: a run.json is a few KB; a huge file is not read into memory.
    if (f.size() > kMaxRecordBytes) {
        RunRecord r = parseRecord(QByteArray(), id, folder);
        r.message = QObject::tr("run.json is %1 MB; a run record is at most %2 MB").arg(f.size() >> 20).arg(kMaxRecordBytes >> 20);
        return r;
    }
    return parseRecord(f.readAll(), id, folder);
}

RunRecord RunHistory::parseRecord(const QByteArray& bytes, const QString& id, const QString& folder) {
    RunRecord r;
    r.id = id;
    r.folder = folder;
    r.status = QStringLiteral("unreadable");
    r.title = id;
    if (bytes.size() > kMaxRecordBytes) {
        r.message = QObject::tr("run.json is larger than %1 MB").arg(kMaxRecordBytes >> 20);
        return r;
    }
    QJsonParseError pe;
    const QJsonDocument doc = QJsonDocument::fromJson(bytes, &pe);
    if (!doc.isObject()) {
        r.message = QObject::tr("run.json is not valid JSON (%1)").arg(pe.errorString());
        return r;
    }
    const QJsonObject o = doc.object();
    QStringList problems;
    // Kind and status decide what the history offers (resume, re-run): unknown ones make the run
    // unreadable; the other fields fall back to defaults with a note in the message.
    const QString kind = checkedChoice(o.value(QStringLiteral("kind")), QStringLiteral("kind"),
                                       {QStringLiteral("training"), QStringLiteral("samples"), QStringLiteral("sweep")}, QString(), &problems);
    const QString status = checkedChoice(o.value(QStringLiteral("status")), QStringLiteral("status"),
                                         {QStringLiteral("running"), QStringLiteral("finished"), QStringLiteral("stopped"), QStringLiteral("failed")},
                                         QString(), &problems);
    if (kind.isEmpty() || status.isEmpty()) {
        r.message = QObject::tr("run.json: %1").arg(problems.isEmpty() ? QObject::tr("no kind or status") : problems.join(QStringLiteral("; ")));
        return r;
    }
    r.kind = kind;
    r.status = status;
    r.title = checkedText(o.value(QStringLiteral("title")), QStringLiteral("title"), 1000, id, &problems);
    r.created = QDateTime::fromString(checkedText(o.value(QStringLiteral("created")), QStringLiteral("created"), 64, QString(), &problems), Qt::ISODate);
    r.message = checkedText(o.value(QStringLiteral("message")), QStringLiteral("message"), 100000, QString(), &problems);
    const QJsonValue parameters = o.value(QStringLiteral("parameters"));
    if (parameters.isObject()) r.parameters = parameters.toObject();
    else if (!parameters.isUndefined()) problems << QObject::tr("parameters: not an object");
    r.seed = o.contains(QStringLiteral("seed")) ? checkedSeed(o.value(QStringLiteral("seed")), QStringLiteral("seed"), &problems) : 0;
    const QJsonValue outputs = o.value(QStringLiteral("outputs"));
    if (outputs.isArray()) {
        for (const QJsonValue& v : outputs.toArray()) {
            const QString name = checkedText(v, QStringLiteral("outputs"), 4096, QString(), &problems);
            if (!name.isEmpty() && r.outputs.size() < kMaxOutputs) r.outputs << name;
        }
        if (outputs.toArray().size() > kMaxOutputs) problems << QObject::tr("outputs: only the first %1 are listed").arg(kMaxOutputs);
    } else if (!outputs.isUndefined()) {
        problems << QObject::tr("outputs: not a list");
    }
    if (!problems.isEmpty()) {
        problems.removeDuplicates();
        r.message = QObject::tr("run.json: %1").arg(problems.join(QStringLiteral("; "))) +
                    (r.message.isEmpty() ? QString() : QStringLiteral(" · ") + r.message);
    }
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
