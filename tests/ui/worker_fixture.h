#pragma once
// The lab's worker on its own thread, as the views use it, for tests.
#include <QSignalSpy>
#include <QThread>

#include "core/io/model_catalog.h"
#include "ui/jobs/sampling_worker.h"
#include "ui/signal_wait.h"

struct WorkerFixture {
    QThread thread;
    dlab::ui::SamplingWorker* worker = new dlab::ui::SamplingWorker;
    WorkerFixture() {
        worker->moveToThread(&thread);
        QObject::connect(&thread, &QThread::finished, worker, &QObject::deleteLater);
        thread.start();
    }
    ~WorkerFixture() {
        worker->newRequest();
        worker->newToyRequest();
        worker->requestStop();
        thread.quit();
        thread.wait();
    }
    bool load(const char* name = "default") {
        ThreadSpy loaded(worker, &dlab::ui::SamplingWorker::modelLoaded);
        auto path = dlab::resolve_model(name);
        QMetaObject::invokeMethod(worker, "loadModel", Qt::QueuedConnection,
                                  Q_ARG(QString, QString::fromStdString(path.value())), Q_ARG(QString, QStringLiteral("cpu")));
        return waitCount(loaded, 1, 30000);
    }
    /// A long chain (DDPM, `steps` steps) that other jobs can interleave with.
    void startLong(int steps = 400) {
        dlab::ui::ChainSettings s;
        s.sampler = dlab::SamplerKind::Ddpm;
        s.steps = steps;
        start(s, -1);
    }
    void start(const dlab::ui::ChainSettings& s, int steps) {
        const int id = worker->newRequest();
        QMetaObject::invokeMethod(worker, "startChain", Qt::QueuedConnection, Q_ARG(dlab::ui::ChainSettings, s),
                                  Q_ARG(int, steps), Q_ARG(int, id));
    }
};
