// Threads and device selection.
#include <QtTest/QtTest>

#include <ATen/ATen.h>

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

    void torchErrorsBecomeOneReadableLine() {
        // LibTorch's c10::Error carries a C++ backtrace; users see only the message.
        try {
            (void)at::ones({2}).view({3});
            QFAIL("no exception");
        } catch (const std::exception& e) {
            const QString m = QString::fromStdString(dlab::error_message(e));
            QVERIFY2(!m.isEmpty() && !m.contains("Exception raised from") && !m.contains("frame #"), qPrintable(m));
            QVERIFY2(m.contains("shape"), qPrintable(m));
            QVERIFY(!dlab::is_out_of_memory(e));
        }
        // An allocation no machine has: reported as out of memory.
        try {
            (void)at::empty({int64_t(1) << 55}, at::kByte);
            QFAIL("no exception");
        } catch (const std::exception& e) {
            QVERIFY2(dlab::is_out_of_memory(e), dlab::error_message(e).c_str());
        }
    }

    void memoryBudgetNamesWhatFits() {
        const int64_t free = dlab::available_memory_bytes(c10::Device(c10::kCPU));
        QVERIFY(free > 0);
        QVERIFY(dlab::check_memory_budget("a batch", 4, 1024, c10::Device(c10::kCPU)).ok());
        const auto st = dlab::check_memory_budget("a batch", 1000000, free / 1000, c10::Device(c10::kCPU));
        QVERIFY(!st.ok());
        // Half the free memory over 1/1000 of it per item: at most 500 fit, and the largest power
        // of two below is proposed.
        QVERIFY2(QString::fromStdString(st.error()).contains("use 256 or fewer"), st.error().c_str());
    }

    void versionIsSemantic() {
        const QString v = QString::fromStdString(version());
        QVERIFY(QRegularExpression(QStringLiteral("^\\d+\\.\\d+\\.\\d+$")).match(v).hasMatch());
        QVERIFY(!runtime_info().torch_version.empty());
    }
};

QTEST_APPLESS_MAIN(TestRuntime)
#include "test_runtime.moc"
