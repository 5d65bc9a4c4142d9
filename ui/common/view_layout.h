#pragma once
// The lab's common view layout: the controls on the left, on the right the panels (3/5 of the
// height) over a plot (2/5).

#include <QBoxLayout>
#include <QWidget>

namespace dlab::ui {

inline void layOutControlsPanelsPlot(QWidget* view, QWidget* controls, QLayout* panels, QWidget* plot) {
    auto* right = new QVBoxLayout;
    right->addLayout(panels, 3);
    right->addWidget(plot, 2);
    auto* layout = new QHBoxLayout(view);
    layout->addWidget(controls);
    layout->addLayout(right, 1);
}

}  // namespace dlab::ui
