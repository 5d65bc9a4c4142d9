#pragma once
// "What is this?" for a panel or a plot: the quantity, its formula and how to read it, shown as the
// tooltip and in What's This mode (Help > What is this?, Shift+F1).

#include <QLabel>
#include <QString>
#include <QWidget>

namespace dlab::ui {

inline void explain(QWidget* widget, const QString& what, const QString& formula, const QString& read) {
    const QString html = QStringLiteral("<b>%1</b><br>%2<br><i>%3</i>").arg(what, formula, read);
    widget->setToolTip(html);
    widget->setWhatsThis(html);
}

/// A note under a view's controls: grey, 9 pt, wrapped.
inline QLabel* noteLabel() {
    auto* label = new QLabel;
    label->setWordWrap(true);
    label->setStyleSheet(QStringLiteral("color: #555; font-size: 9pt;"));
    return label;
}

}  // namespace dlab::ui
