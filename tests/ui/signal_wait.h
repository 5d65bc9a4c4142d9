#pragma once
// Waits until `spy` holds at least n signals. A worker emits on its own thread and the spy records
// at once, so a signal may arrive before a plain wait() starts (which then waits for another).
#include <QElapsedTimer>
#include <QSignalSpy>

inline bool waitCount(QSignalSpy& spy, int n, int ms) {
    QElapsedTimer clock;
    clock.start();
    while (spy.size() < n && clock.elapsed() < ms) spy.wait(20);
    return spy.size() >= n;
}
