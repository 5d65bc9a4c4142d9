#include "ui/common/checked_values.h"

#include <cmath>

#include <QObject>

namespace dlab::ui {

namespace {

QString shown(const QJsonValue& v) {
    switch (v.type()) {
    case QJsonValue::Double: return QString::number(v.toDouble(), 'g', 15);
    case QJsonValue::String: return QLatin1Char('"') + v.toString().left(40) + QLatin1Char('"');
    case QJsonValue::Bool: return v.toBool() ? QStringLiteral("true") : QStringLiteral("false");
    case QJsonValue::Null: return QStringLiteral("null");
    case QJsonValue::Array: return QObject::tr("a list");
    case QJsonValue::Object: return QObject::tr("an object");
    default: return QObject::tr("nothing");
    }
}

void note(QStringList* problems, const QJsonValue& v, const QString& field, const QString& allowed) {
    if (problems && !v.isUndefined())
        problems->append(QObject::tr("%1: %2 is not %3").arg(field, shown(v), allowed));
}

}  // namespace

qint64 checkedInt(const QJsonValue& v, const QString& field, qint64 lo, qint64 hi, qint64 fallback,
                  QStringList* problems) {
    const QString allowed = QObject::tr("an integer in %1..%2").arg(lo).arg(hi);
    if (v.isString()) {
        bool ok = false;
        const qint64 n = v.toString().toLongLong(&ok);
        if (ok && n >= lo && n <= hi) return n;
    } else if (v.isDouble()) {
        const double d = v.toDouble();
        // The range check comes before the conversion: a double beyond qint64 must never be cast.
        if (std::isfinite(d) && d == std::floor(d) && d >= double(lo) && d <= double(hi)) return qint64(d);
    }
    note(problems, v, field, allowed);
    return fallback;
}

double checkedReal(const QJsonValue& v, const QString& field, double lo, double hi, double fallback,
                   QStringList* problems) {
    double d = std::nan("");
    if (v.isDouble()) d = v.toDouble();
    else if (v.isString()) {
        bool ok = false;
        d = v.toString().toDouble(&ok);
        if (!ok) d = std::nan("");
    }
    if (std::isfinite(d) && d >= lo && d <= hi) return d;
    note(problems, v, field, QObject::tr("a number in %1..%2").arg(lo).arg(hi));
    return fallback;
}

QString checkedChoice(const QJsonValue& v, const QString& field, const QStringList& allowed,
                      const QString& fallback, QStringList* problems) {
    if (v.isString() && allowed.contains(v.toString())) return v.toString();
    note(problems, v, field, QObject::tr("one of %1").arg(allowed.join(QStringLiteral(", "))));
    return fallback;
}

QString checkedText(const QJsonValue& v, const QString& field, int maxLength, const QString& fallback,
                    QStringList* problems) {
    if (v.isString()) {
        const QString s = v.toString();
        bool clean = s.size() <= maxLength;
        for (const QChar c : s) clean = clean && !c.isNull() && c.category() != QChar::Other_Control;
        if (clean) return s;
    }
    note(problems, v, field, QObject::tr("a text of at most %1 characters").arg(maxLength));
    return fallback;
}

quint64 checkedSeed(const QJsonValue& v, const QString& field, QStringList* problems) {
    if (v.isString()) {
        bool ok = false;
        const quint64 s = v.toString().toULongLong(&ok);
        if (ok && !v.toString().startsWith(QLatin1Char('-'))) return s;
    } else if (v.isDouble()) {
        const double d = v.toDouble();
        if (std::isfinite(d) && d == std::floor(d) && d >= 0 && d < 18446744073709551616.0) return quint64(d);
    }
    note(problems, v, field, QObject::tr("a seed (0..18446744073709551615)"));
    return 0;
}

QJsonValue settingValue(const QSettings& settings, const QString& key) {
    if (!settings.contains(key)) return QJsonValue(QJsonValue::Undefined);
    const QVariant value = settings.value(key);
    if (value.typeId() == QMetaType::Bool) return value.toBool();
    const QString text = value.toString();
    bool ok = false;
    const double d = text.toDouble(&ok);
    if (ok) return d;
    if (value.typeId() == QMetaType::Int || value.typeId() == QMetaType::Double || value.typeId() == QMetaType::LongLong)
        return value.toDouble();
    return text;
}

}  // namespace dlab::ui
