// Data-parallel training on c10d (Gloo, CPU) with real processes: diffusionlab-cli's own launcher
// (--nproc-per-node) and the torchrun environment contract set by hand, as Slurm or torchrun would.
#include <QtTest/QtTest>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/distributed/distributed.h"
#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "core/sampling/generate.h"

namespace {

struct Run {
    int code = -1;
    QString err;
};

QProcessEnvironment baseEnv() {
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) env.remove(k);
    env.insert("OMP_NUM_THREADS", "1");  // two ranks share this machine's cores
    return env;
}

Run cli(const QStringList& args, const QProcessEnvironment& env = baseEnv()) {
    QProcess p;
    p.setProcessEnvironment(env);
    p.start(qEnvironmentVariable("DLAB_CLI"), args);
    if (!p.waitForFinished(170000)) {
        p.kill();
        p.waitForFinished();
        return {-2, QString::fromUtf8(p.readAllStandardError()) + "\n(timed out)"};
    }
    return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1, QString::fromUtf8(p.readAllStandardError())};
}

int freePort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 29517;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
        port = ntohs(a.sin_port);
    ::close(fd);
    return port;
}

// A small UNet on Fashion-MNIST without dropout (the one thing ranks draw differently).
QStringList trainArgs(const QString& out, int steps, int checkpoint_every = 10) {
    return {"train", "--dataset", "fashion-mnist", "--size", "tiny", "--base-channels", "8", "--dropout", "0",
            "--batch", "8", "--steps", QString::number(steps), "--log-every", "5", "--checkpoint-every",
            QString::number(checkpoint_every), "--warmup", "5", "--device", "cpu", "--out", out};
}

// L2 distance between the trained weights ("model." tensors) of two checkpoints.
double weightDistance(const QString& a, const QString& b) {
    auto fa = dlab::load_safetensors(a.toStdString());
    auto fb = dlab::load_safetensors(b.toStdString());
    if (!fa || !fb) return INFINITY;
    double sq = 0;
    for (const auto& [name, t] : fa->tensors) {
        if (name.rfind("model.", 0) != 0) continue;
        auto it = fb->tensors.find(name);
        if (it == fb->tensors.end()) return INFINITY;
        sq += (t.to(at::kDouble) - it->second.to(at::kDouble)).pow(2).sum().item<double>();
    }
    return std::sqrt(sq);
}

// Largest absolute difference between the tensors of two safetensors files (all names of `a`).
double maxDifference(const QString& a, const QString& b, QString* why) {
    auto fa = dlab::load_safetensors(a.toStdString());
    auto fb = dlab::load_safetensors(b.toStdString());
    if (!fa || !fb) {
        *why = QString::fromStdString(fa ? fb.error() : fa.error());
        return INFINITY;
    }
    double worst = 0;
    for (const auto& [name, t] : fa->tensors) {
        auto it = fb->tensors.find(name);
        if (it == fb->tensors.end() || !it->second.sizes().equals(t.sizes())) {
            *why = QString::fromStdString(name) + " differs in presence or shape";
            return INFINITY;
        }
        worst = std::max(worst, (t.to(at::kDouble) - it->second.to(at::kDouble)).abs().max().item<double>());
    }
    return worst;
}

QStringList lossColumn(const QString& csv) {
    QFile f(csv);
    if (!f.open(QIODevice::ReadOnly)) return {};
    QStringList out;
    const auto lines = QString::fromUtf8(f.readAll()).split('\n', Qt::SkipEmptyParts);
    for (int i = 1; i < lines.size(); ++i) out << lines[i].section(',', 0, 1);
    return out;
}

}  // namespace

class TestDistributed : public QObject {
    Q_OBJECT
    QTemporaryDir dir_;
    QString reference_;  // one rank, batch 8, 20 steps: made once, compared against by two tests

    QString reference() {
        if (!reference_.isEmpty()) return reference_;
        const QString out = dir_.filePath("one-rank");
        const Run r = cli(trainArgs(out, 20));
        if (r.code != 0) qWarning("%s", qPrintable(r.err));
        if (r.code == 0) reference_ = out;
        return reference_;
    }

private Q_SLOTS:
    void initTestCase() {
        QVERIFY(QFileInfo::exists(qEnvironmentVariable("DLAB_CLI")));
        if (!dlab::distributed_available()) QSKIP("this build has no c10d (install libgloo-dev and reconfigure)");
    }

    void theEnvironmentContractIsChecked() {
        auto with = [](std::initializer_list<std::pair<const char*, const char*>> vars) {
            for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) qunsetenv(k);
            for (const auto& [k, v] : vars) qputenv(k, v);
            auto r = dlab::rank_info_from_environment();
            for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) qunsetenv(k);
            return r;
        };
        auto single = with({});
        QVERIFY(single.ok());
        QCOMPARE(single->world_size, 1);
        QVERIFY(!single->distributed());
        auto four = with({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_WORLD_SIZE", "4"}, {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29601"}});
        QVERIFY2(four.ok(), four.error().c_str());
        QCOMPARE(four->rank, 5);
        QCOMPARE(four->local_rank, 1);  // LOCAL_RANK absent: RANK modulo the ranks per machine
        QCOMPARE(four->master_addr, std::string("node0"));
        QCOMPARE(four->master_port, 29601);
        auto bad_rank = with({{"RANK", "2"}, {"WORLD_SIZE", "2"}});
        QVERIFY(!bad_rank.ok());
        QVERIFY2(QString::fromStdString(bad_rank.error()).contains("RANK='2'"), bad_rank.error().c_str());
        auto half = with({{"RANK", "0"}});
        QVERIFY(!half.ok());
        QVERIFY(QString::fromStdString(half.error()).contains("WORLD_SIZE is not"));
        auto port = with({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "http"}});
        QVERIFY(!port.ok());
        QVERIFY(QString::fromStdString(port.error()).contains("MASTER_PORT"));
        auto remote = with({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_WORLD_SIZE", "2"}});
        QVERIFY(!remote.ok());  // a rank on another machine must be told where rank 0 is
        QVERIFY(QString::fromStdString(remote.error()).contains("MASTER_ADDR"));
    }

    // Batches dealt round-robin to shards come back in the order of one process.
    void shardsAssembleInOrder() {
        for (int64_t shards : {1, 2, 3, 7}) {
            const int64_t count = 23, batch = 4;
            const at::Tensor all = at::arange(count, at::kFloat).view({count, 1});
            std::vector<at::Tensor> padded;
            int64_t rows0 = 0;
            for (int64_t n : dlab::shard_batch_sizes(count, batch, 0, shards)) rows0 += n;
            int64_t total = 0;
            for (int64_t r = 0; r < shards; ++r) {
                std::vector<at::Tensor> mine;
                const auto sizes = dlab::shard_batch_sizes(count, batch, r, shards);
                int64_t start = r * batch;
                for (int64_t n : sizes) {
                    mine.push_back(all.narrow(0, start, n));
                    start += shards * batch;
                    total += n;
                }
                mine.push_back(at::full({rows0 - (mine.empty() ? 0 : at::cat(mine).size(0)), 1}, -1.0f));
                padded.push_back(at::cat(mine));
            }
            QCOMPARE(total, count);  // every sample in exactly one shard
            QVERIFY(dlab::assemble_shards(padded, count, batch).equal(all));
        }
    }

    // eval/sweep over 3 ranks: the same samples as one process (to thread round-off), gathered in
    // the same order (class agreement depends on it: sample i asks for class i mod 10).
    void aShardedSweepMatchesOneProcess() {
        const QStringList base{"sweep", "--count", "40", "--scales", "0,2", "--steps", "4", "--batch", "8", "--device", "cpu",
                               "--metrics", "fid,precision,recall,agreement"};
        const QString one = dir_.filePath("sweep1.json"), three = dir_.filePath("sweep3.json");
        Run r = cli(QStringList(base) << "--json" << one);
        QVERIFY2(r.code == 0, qPrintable(r.err));
        r = cli(QStringList(base) << "--json" << three << "--nproc-per-node" << "3");
        QVERIFY2(r.code == 0, qPrintable(r.err));
        auto read = [](const QString& path) {
            QFile f(path);
            return f.open(QIODevice::ReadOnly) ? nlohmann::json::parse(f.readAll().toStdString(), nullptr, false) : nlohmann::json();
        };
        const auto a = read(one), b = read(three);
        QVERIFY(a.contains("rows") && b.contains("rows"));
        QCOMPARE(b.value("ranks", 0), 3);
        QCOMPARE(a["rows"].size(), size_t(2));
        QCOMPARE(b["rows"].size(), size_t(2));
        for (size_t i = 0; i < 2; ++i) {
            const double fa = a["rows"][i]["fid"].get<double>(), fb = b["rows"][i]["fid"].get<double>();
            qInfo("scale %g: FID one process %.4f, three ranks %.4f", a["rows"][i]["scale"].get<double>(), fa, fb);
            QVERIFY(std::abs(fa - fb) < 1e-3 * fa);
            QCOMPARE(b["rows"][i]["agreement"].get<double>(), a["rows"][i]["agreement"].get<double>());
            QCOMPARE(b["rows"][i]["precision"].get<double>(), a["rows"][i]["precision"].get<double>());
        }
    }

    void launcherOptionsAreChecked() {
        const QString out = dir_.filePath("refused");
        Run r = cli(QStringList{"train", "--dataset", "toy:moons", "--batch", "15", "--nproc-per-node", "2", "--steps", "2",
                                "--out", out});
        QCOMPARE(r.code, 2);  // the batch is split evenly or not at all
        QVERIFY2(r.err.contains("multiple of the 2 ranks"), qPrintable(r.err));
        QVERIFY(!QFileInfo::exists(out));
        r = cli({"train", "--dataset", "toy:moons", "--nproc-per-node", "0", "--out", out});
        QCOMPARE(r.code, 2);
        r = cli({"train", "--dataset", "toy:moons", "--nproc-per-node", "2", "--backend", "mpi", "--out", out});
        QCOMPARE(r.code, 2);
        QVERIFY2(r.err.contains("unknown backend 'mpi'"), qPrintable(r.err));
        QProcessEnvironment env = baseEnv();
        env.insert("RANK", "0");
        env.insert("WORLD_SIZE", "2");
        r = cli({"train", "--dataset", "toy:moons", "--nproc-per-node", "2", "--out", out}, env);
        QCOMPARE(r.code, 2);  // under torchrun the launcher options would start ranks twice
        QVERIFY2(r.err.contains("torchrun"), qPrintable(r.err));
        QVERIFY(!QFileInfo::exists(out));
    }

    // The equivalence: 2 ranks with global batch 8 against 1 rank with batch 8, 20 steps.
    void twoRanksTrainLikeOne() {
        const QString one = reference();
        QVERIFY(!one.isEmpty());
        const QString two = dir_.filePath("two-ranks");
        // Small buckets: several of them, started in order while backward still runs.
        const Run r = cli(trainArgs(two, 20) << "--nproc-per-node" << "2" << "--bucket-mb" << "0.01");
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY2(r.err.contains("data-parallel over 2 ranks (gloo)"), qPrintable(r.err));
        const QRegularExpression buckets("summed in (\\d+) bucket\\(s\\), (\\d+) of them started while");
        const auto m = buckets.match(r.err);
        QVERIFY2(m.hasMatch(), qPrintable(r.err));
        QVERIFY(m.captured(1).toInt() > 3);
        QVERIFY2(m.captured(2).toInt() > 0, qPrintable(r.err));  // overlap with the backward pass
        // Round-off, not another run: the 2-rank weights sit far closer to the 1-rank ones than a
        // run whose learning rate is 10% lower does (a trajectory really different, but close).
        const QString control = dir_.filePath("lower-lr");
        QCOMPARE(cli(trainArgs(control, 20) << "--lr" << "1.8e-4").code, 0);
        QString why;
        const double worst = maxDifference(one + "/checkpoint.safetensors", two + "/checkpoint.safetensors", &why);
        const double d2 = weightDistance(one + "/checkpoint.safetensors", two + "/checkpoint.safetensors");
        const double dc = weightDistance(one + "/checkpoint.safetensors", control + "/checkpoint.safetensors");
        qInfo("after 20 steps: weights' L2 distance 2 ranks vs 1 rank %.3g, lr 10%% lower vs 1 rank %.3g (ratio %.4f); "
              "largest element difference in weights, EMA and Adam moments %.3g", d2, dc, d2 / dc, worst);
        QVERIFY2(worst < 1e-3, qPrintable(QString("%1 %2").arg(worst).arg(why)));
        QVERIFY2(d2 < 0.02 * dc, qPrintable(QString("%1 against %2").arg(d2).arg(dc)));
        // The logged loss is the global batch's: the same numbers to round-off.
        const QStringList a = lossColumn(one + "/loss.csv"), b = lossColumn(two + "/loss.csv");
        QCOMPARE(a.size(), 4);
        QCOMPARE(b.size(), a.size());
        for (int i = 0; i < a.size(); ++i) {
            QCOMPARE(b[i].section(',', 0, 0), a[i].section(',', 0, 0));
            QVERIFY(std::abs(b[i].section(',', 1).toDouble() - a[i].section(',', 1).toDouble()) < 1e-5);
        }
        // And it differs from a run that really is different (another seed): the check can fail.
        const QString other = dir_.filePath("other-seed");
        QCOMPARE(cli(trainArgs(other, 20) << "--seed" << "1").code, 0);
        QVERIFY(maxDifference(one + "/checkpoint.safetensors", other + "/checkpoint.safetensors", &why) > 1e-3);
    }

    // A run started on 2 ranks resumes on 1 and ends where the 1-rank run ends.
    void aTwoRankRunResumesOnOneRank() {
        const QString one = reference();
        QVERIFY(!one.isEmpty());
        const QString run = dir_.filePath("two-then-one");
        Run r = cli(trainArgs(run, 10) << "--nproc-per-node" << "2");
        QVERIFY2(r.code == 0, qPrintable(r.err));
        r = cli({"train", "--out", run, "--resume", "--steps", "20", "--device", "cpu"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QString why;
        const double worst = maxDifference(one + "/checkpoint.safetensors", run + "/checkpoint.safetensors", &why);
        const double d = weightDistance(one + "/checkpoint.safetensors", run + "/checkpoint.safetensors");
        const double other = weightDistance(one + "/checkpoint.safetensors", dir_.filePath("lower-lr") + "/checkpoint.safetensors");
        qInfo("2 ranks for 10 steps, then 1 rank for 10, against 1 rank for 20: L2 distance %.3g (lr 10%% lower: %.3g), "
              "largest element difference %.3g", d, other, worst);
        QVERIFY2(worst < 1e-3, qPrintable(QString("%1 %2").arg(worst).arg(why)));
        if (std::isfinite(other)) QVERIFY2(d < 0.02 * other, qPrintable(QString("%1 against %2").arg(d).arg(other)));
        QCOMPARE(lossColumn(run + "/loss.csv").size(), 4);  // the log continues, no rows lost or doubled
    }

    // Ranks started by hand with the torchrun contract; one is killed: the other stops with a
    // message naming itself and the cause, and the last checkpoint still loads and resumes.
    void aKilledRankStopsTheOther() {
        const QString run = dir_.filePath("killed");
        const int port = freePort();
        QProcess ranks[2];
        auto cleanup = qScopeGuard([&] {
            for (auto& p : ranks)
                if (p.state() != QProcess::NotRunning) {
                    p.kill();
                    p.waitForFinished();
                }
        });
        for (int r = 0; r < 2; ++r) {
            QProcessEnvironment env = baseEnv();
            env.insert("RANK", QString::number(r));
            env.insert("WORLD_SIZE", "2");
            env.insert("MASTER_ADDR", "127.0.0.1");
            env.insert("MASTER_PORT", QString::number(port));
            ranks[r].setProcessEnvironment(env);
            ranks[r].start(qEnvironmentVariable("DLAB_CLI"), trainArgs(run, 100000, 5));
            QVERIFY(ranks[r].waitForStarted());
        }
        const QString ckpt = run + "/checkpoint.safetensors";
        QElapsedTimer clock;
        clock.start();
        while (!QFileInfo::exists(ckpt) && clock.elapsed() < 120000 && ranks[0].state() != QProcess::NotRunning) QTest::qWait(100);
        QVERIFY2(QFileInfo::exists(ckpt), qPrintable(QString::fromUtf8(ranks[0].readAllStandardError())));
        ::kill(static_cast<pid_t>(ranks[1].processId()), SIGKILL);
        QVERIFY(ranks[1].waitForFinished(10000));
        QVERIFY2(ranks[0].waitForFinished(60000), "rank 0 did not notice that rank 1 was gone");
        const QString err = QString::fromUtf8(ranks[0].readAllStandardError());
        QCOMPARE(ranks[0].exitCode(), 1);
        QVERIFY2(err.contains("rank 0 of 2") && err.contains("another rank has stopped"), qPrintable(err));
        QVERIFY2(err.contains("the last checkpoint (step"), qPrintable(err));
        auto file = dlab::load_safetensors(ckpt.toStdString());
        QVERIFY2(file.ok(), file.error().c_str());
        QVERIFY(dlab::stored_model_config(file.value(), ckpt.toStdString()).ok());
        const Run more = cli({"train", "--out", run, "--resume", "--steps", "12", "--device", "cpu", "--checkpoint-every", "100"});
        QVERIFY2(more.code == 0, qPrintable(more.err));
    }
};

QTEST_GUILESS_MAIN(TestDistributed)
#include "test_distributed.moc"
