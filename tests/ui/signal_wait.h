#pragma once
// Recording the signals of an object that lives on another thread, for tests.
//
// QSignalSpy (Qt 6.4) records on the emitting thread with no lock: the test thread reads the list
// while the worker appends to it, and a spy destroyed right after its signal arrived can still be
// inside the worker's call (it wakes the spy's event loop after appending: a use after free, seen
// under the sanitizer in CI). ThreadSpy connects queued instead, so every recording happens on the
// test's thread while it processes events, and a destroyed spy simply drops what was still queued.
#include <QCoreApplication>
#include <QElapsedTimer>
#include <QList>
#include <QMetaMethod>
#include <QObject>
#include <QSignalSpy>
#include <QTest>
#include <QVariant>

class ThreadSpy : public QObject, public QList<QList<QVariant>> {
public:
    template <typename Func>
    ThreadSpy(const typename QtPrivate::FunctionPointer<Func>::Object* sender, Func signal) {
        const QMetaMethod method = QMetaMethod::fromSignal(signal);
        for (int i = 0; i < method.parameterCount(); ++i) types_.append(method.parameterMetaType(i));
        static const int member = QObject::staticMetaObject.methodCount();  // our one "slot"
        QMetaObject::connect(sender, method.methodIndex(), this, member, Qt::QueuedConnection, nullptr);
    }
    /// Processes events until a signal newer than the call arrives or `ms` pass.
    bool wait(int ms = 5000) {
        const qsizetype before = size();
        QElapsedTimer clock;
        clock.start();
        while (size() == before && clock.elapsed() < ms) QTest::qWait(5);
        return size() > before;
    }
    int qt_metacall(QMetaObject::Call call, int id, void** args) override {
        id = QObject::qt_metacall(call, id, args);
        if (id < 0) return id;
        if (call == QMetaObject::InvokeMetaMethod) {
            if (id == 0) record(args);
            --id;
        }
        return id;
    }

private:
    void record(void** args) {
        QList<QVariant> row;
        for (int i = 0; i < types_.size(); ++i) row.append(QVariant(types_[i], args[i + 1]));
        append(row);
    }
    QList<QMetaType> types_;
};

/// Waits until `spy` holds at least n signals (a signal may already have arrived before the call).
template <typename Spy>
bool waitCount(Spy& spy, int n, int ms) {
    QElapsedTimer clock;
    clock.start();
    while (spy.size() < n && clock.elapsed() < ms) spy.wait(20);
    return spy.size() >= n;
}

/// After a stop or pause: a report already in flight may still land, later than any fixed grace on
/// a busy machine. Waits until `spy` has received nothing for `quietMs` (at most `maxMs`) and
/// returns its size then.
template <typename Spy>
int waitUntilQuiet(Spy& spy, int quietMs, int maxMs) {
    QElapsedTimer clock;
    clock.start();
    int seen = -1;
    while (spy.size() != seen && clock.elapsed() < maxMs) {
        seen = spy.size();
        QTest::qWait(quietMs);
    }
    return spy.size();
}
