#pragma once
// The run history: every run (training, sample batch, guidance sweep) is a folder under the
// user's data folder holding run.json (kind, title, parameters, seed, status, outputs) and the
// outputs themselves. It survives restarts; a run whose files were deleted is listed with those
// files marked missing; an unreadable run.json is listed as such, never an error for the others.

#include <QDateTime>
#include <QJsonObject>
#include <QString>
#include <QStringList>
#include <QVector>

namespace dlab::ui {

struct RunRecord {
    QString id;          ///< the folder name, unique, sortable by time
    QString folder;      ///< absolute path of the run folder
    QString kind;        ///< "training", "samples" or "sweep"
    QString title;       ///< one line for the list
    QDateTime created;
    QString status;      ///< "running", "finished", "stopped", "failed"; "unreadable" for a broken run.json
    QString message;     ///< the last message (an error, or a summary)
    QJsonObject parameters;  ///< what re-running needs
    quint64 seed = 0;
    QStringList outputs;     ///< file names relative to the folder (or absolute paths)
};

class RunHistory {
public:
    /// The history under `root` (created on the first write).
    explicit RunHistory(QString root);
    /// $DLAB_DATA_DIR/runs, else the platform's application data folder + /runs
    /// (~/.local/share/DiffusionLab/DiffusionLab/runs on Linux).
    static QString defaultRoot();
    const QString& root() const { return m_root; }

    /// Creates a run folder and its run.json (status "running"); empty on failure (`error` says why).
    RunRecord create(const QString& kind, const QString& title, const QJsonObject& parameters, quint64 seed,
                     QString* error = nullptr);
    /// Writes run.json atomically (temporary file, then rename). False with `error` on failure.
    bool save(const RunRecord& run, QString* error = nullptr) const;
    /// Every run, newest first.
    QVector<RunRecord> list() const;
    /// The record of one run (status "unreadable" if its run.json is missing or broken).
    RunRecord load(const QString& id) const;
    /// A run record from the bytes of its run.json, every field checked (kind and status among the
    /// known ones, texts bounded, the seed a number, outputs a list of names): "unreadable" with
    /// the reason when the kind or status is unusable, else the problems noted in `message`.
    static RunRecord parseRecord(const QByteArray& bytes, const QString& id, const QString& folder);
    /// The outputs of a run that are no longer on disk.
    QStringList missingOutputs(const RunRecord& run) const;
    /// Absolute path of an output.
    static QString outputPath(const RunRecord& run, const QString& output);
    /// Deletes a run's folder. False with `error` on failure.
    bool remove(const QString& id, QString* error = nullptr) const;

private:
    QString m_root;
};

}  // namespace dlab::ui
