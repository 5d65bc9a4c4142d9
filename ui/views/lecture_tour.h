#pragma once
// The lecture as a guided tour (Help > Lecture tour, `diffusionlab --tour`): one stop per idea, in
// the lecture's order. Each stop opens the right tab with the right settings, runs what it shows,
// and explains it in a side panel in a few sentences with the formula of what is on screen.
// Back/Next buttons, Alt+Left/Alt+Right (and Alt+B/Alt+N), Escape closes the panel.

#include <functional>

#include <QDockWidget>
#include <QMetaObject>
#include <QString>
#include <QVector>

class QLabel;
class QPushButton;
class QTextBrowser;

namespace dlab::ui {

class MainWindow;

struct TourStop {
    QString title;
    QString html;                        ///< the explanation and the formula (Qt rich text)
    int tab = 0;                         ///< the tab it opens
    std::function<void()> enter;         ///< sets the tab up and starts its job
    /// The signal that says the job has shown its output (sender, SIGNAL(...)); none: at once.
    const QObject* doneSender = nullptr;
    const char* doneSignal = nullptr;
};

/// The stops of the lecture, bound to a window's views.
QVector<TourStop> lectureStops(MainWindow* window);

class LectureTour : public QDockWidget {
    Q_OBJECT
public:
    explicit LectureTour(MainWindow* window);
    int count() const { return m_stops.size(); }
    int current() const { return m_index; }
    const TourStop& stop(int index) const { return m_stops[index]; }
    /// Whether the current stop's job has shown its output.
    bool produced() const { return m_done; }

public Q_SLOTS:
    /// Opens the panel at the first stop.
    void start();
    void go(int index);
    void next();
    void back();

Q_SIGNALS:
    void stopEntered(int index);
    void stopProduced(int index);

private Q_SLOTS:
    void markDone();

private:
    QVector<TourStop> m_stops;
    int m_index = -1;
    bool m_done = false;
    QMetaObject::Connection m_doneConnection;
    QLabel* m_counter = nullptr;
    QLabel* m_title = nullptr;
    QTextBrowser* m_text = nullptr;
    QPushButton* m_back = nullptr;
    QPushButton* m_next = nullptr;
};

}  // namespace dlab::ui
