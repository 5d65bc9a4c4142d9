#pragma once
// Values read from outside the program (run.json records, request.json, QSettings) checked before
// use: the type, the range and the allowed names. A value that fails keeps the fallback and adds
// one line to `problems` naming the field, what was found and what is allowed, so that a damaged
// or hand-edited file never reaches a conversion that is undefined (a double beyond qint64) or a
// combo box index of -1. Qt Core only (the run-record fuzz target links it without widgets).

#include <QJsonValue>
#include <QSettings>
#include <QString>
#include <QStringList>
#include <QVariant>

namespace dlab::ui {

/// An integer in [lo, hi]: a JSON number with no fraction (or a string of digits, as QSettings and
/// the seeds store them). Anything else: `fallback`, and a line in `problems` when the value was there.
qint64 checkedInt(const QJsonValue& v, const QString& field, qint64 lo, qint64 hi, qint64 fallback,
                  QStringList* problems);
/// A finite number in [lo, hi].
double checkedReal(const QJsonValue& v, const QString& field, double lo, double hi, double fallback,
                   QStringList* problems);
/// One of `allowed` (exactly).
QString checkedChoice(const QJsonValue& v, const QString& field, const QStringList& allowed,
                      const QString& fallback, QStringList* problems);
/// A string of at most `maxLength` characters with no control characters.
QString checkedText(const QJsonValue& v, const QString& field, int maxLength, const QString& fallback,
                    QStringList* problems);
/// A seed: a decimal string (or an integral number) of 0..2^64-1.
quint64 checkedSeed(const QJsonValue& v, const QString& field, QStringList* problems);

/// QSettings values (stored as strings in the ini file) seen as JSON values for the checks above:
/// numbers when the text is a number, else the text; undefined when the key is absent.
QJsonValue settingValue(const QSettings& settings, const QString& key);

}  // namespace dlab::ui
