#pragma once
// "What is this?" for a panel or a plot: the quantity, its formula and how to read it, shown as the
// tooltip and in What's This mode (Help > What is this?, Shift+F1).

#include <QComboBox>
#include <QLabel>
#include <QString>
#include <QWidget>

#include "core/data/datasets.h"

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

/// A Fashion-MNIST class chooser ("7 · Sneaker"; the item data is the class), `current` selected.
inline QComboBox* fashionClassCombo(int current) {
    auto* combo = new QComboBox;
    const auto& names = fashion_mnist_class_names();
    for (int i = 0; i < int(names.size()); ++i)
        combo->addItem(QStringLiteral("%1 · %2").arg(i).arg(QString::fromStdString(names[size_t(i)])), i);
    combo->setCurrentIndex(current);
    return combo;
}

}  // namespace dlab::ui
