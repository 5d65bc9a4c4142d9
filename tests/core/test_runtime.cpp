// Threads and device selection.
#include <QtTest/QtTest>

#include "core/runtime/runtime.h"

using namespace dlab;

class TestRuntime : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void threadsFollowTheMachine() {
        const int n = configure_threads(0);
        const auto info = runtime_info();
        QCOMPARE(n, info.intra_op_threads);
        QCOMPARE(n, std::max(1, info.hardware_threads));
        QCOMPARE(configure_threads(1), 1);
        QCOMPARE(runtime_info().intra_op_threads, 1);
        configure_threads(0);
    }

    void deviceChoice() {
        const auto info = runtime_info();
        auto cpu = select_device("cpu");
        QVERIFY(cpu.ok());
        QVERIFY(cpu->is_cpu());
        auto autoDev = select_device("auto");
        QVERIFY(autoDev.ok());
        QCOMPARE(autoDev->is_cuda(), info.cuda_available);
        auto cuda = select_device("cuda");
        QCOMPARE(cuda.ok(), info.cuda_available);
        if (!info.cuda_available)
            QVERIFY(QString::fromStdString(cuda.error()).contains("CUDA is not available"));
        auto bogus = select_device("tpu");
        QVERIFY(!bogus.ok());
        QVERIFY(QString::fromStdString(bogus.error()).contains("tpu"));
        QVERIFY(!select_device("cuda:x").ok());
        QVERIFY(!select_device("cuda:99").ok());
    }

    void versionIsSemantic() {
        const QString v = QString::fromStdString(version());
        QVERIFY(QRegularExpression(QStringLiteral("^\\d+\\.\\d+\\.\\d+$")).match(v).hasMatch());
        QVERIFY(!runtime_info().torch_version.empty());
    }
};

QTEST_APPLESS_MAIN(TestRuntime)
#include "test_runtime.moc"
