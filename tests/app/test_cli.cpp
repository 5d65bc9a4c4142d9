// diffusionlab-cli through its public interface: a real process, its output, files and exit codes.
#include <QtTest/QtTest>

#include <cmath>

#include <sys/stat.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/io/manifest.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "core/data/datasets.h"
#include "core/forward/schedule.h"

namespace {

struct Run {
    int code = -1;
    QString out, err;
};

Run cli(const QStringList& args, const QProcessEnvironment& env = QProcessEnvironment::systemEnvironment()) {
    QProcess p;
    p.setProcessEnvironment(env);
    p.start(qEnvironmentVariable("DLAB_CLI"), args);
    if (!p.waitForFinished(120000)) qFatal("diffusionlab-cli did not finish");
    return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1,
            QString::fromUtf8(p.readAllStandardOutput()), QString::fromUtf8(p.readAllStandardError())};
}

// The bundled default model with its config edited by `edit` (and its tensors by `tensors`),
// written to `path`.
bool writeEditedModel(const QString& path, const std::function<void(nlohmann::json&)>& edit,
                      const std::function<void(at::Tensor&)>& tensors = {}) {
    auto file = dlab::load_safetensors(dlab::resolve_model("default").value());
    if (!file) return false;
    dlab::TensorFile out = file.value();
    nlohmann::json j = nlohmann::json::parse(out.metadata.at("dlab"));
    edit(j);
    out.metadata["dlab"] = j.dump();
    if (tensors)
        for (auto& [name, t] : out.tensors) {
            t = t.clone();
            tensors(t);
        }
    return dlab::save_safetensors(path.toStdString(), out).ok();
}

QByteArray readAll(const QString& path) {
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

}  // namespace

class TestCli : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { QVERIFY(QFileInfo::exists(qEnvironmentVariable("DLAB_CLI"))); }

    void version() {
        const Run r = cli({"--version"});
        QCOMPARE(r.code, 0);
        QVERIFY(r.out.startsWith("diffusionlab-cli "));
        QVERIFY(r.out.contains("LibTorch"));
    }

    void scheduleCsvMatchesCore() {
        QTemporaryDir dir;
        const QString path = dir.filePath("linear.csv");
        const Run r = cli({"schedule", "--schedule", "linear", "--timesteps", "200", "--csv", path});
        QCOMPARE(r.code, 0);
        QFile f(path);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QStringList lines = QString::fromUtf8(f.readAll()).split('\n', Qt::SkipEmptyParts);
        QCOMPARE(lines.size(), 201);
        QCOMPARE(lines.first(), QStringLiteral("t,beta,alpha_bar,snr"));
        dlab::ScheduleConfig c;
        c.kind = dlab::ScheduleKind::Linear;
        c.timesteps = 200;
        const auto s = dlab::NoiseSchedule::create(c).value();
        for (int t : {0, 57, 199}) {
            const QStringList cols = lines[t + 1].split(',');
            QCOMPARE(cols.size(), 4);
            QCOMPARE(cols[0].toInt(), t);
            QCOMPARE(cols[1].toDouble(), s.beta(t));
            QCOMPARE(cols[2].toDouble(), s.alpha_bar(t));
            QVERIFY(qAbs(cols[3].toDouble() / s.snr()[t].item<double>() - 1.0) < 1e-15);
        }
        QVERIFY(!QFileInfo::exists(path + ".part"));
    }

    void scheduleToStdout() {
        const Run r = cli({"schedule", "--schedule", "cosine", "--timesteps", "10", "--csv", "-"});
        QCOMPARE(r.code, 0);
        QCOMPARE(r.out.count('\n'), 11);
    }

    void badInputGetsClearErrors_data() {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<int>("code");
        QTest::addColumn<QString>("message");
        QTest::newRow("unknown schedule") << QStringList{"schedule", "--schedule", "cosin"} << 2 << "unknown schedule 'cosin'";
        QTest::newRow("bad number") << QStringList{"schedule", "--timesteps", "12x"} << 2 << "--timesteps expects an integer, got '12x'";
        QTest::newRow("negative") << QStringList{"schedule", "--timesteps", "-5"} << 2 << "--timesteps must be between 2 and 100000";
        QTest::newRow("unknown option") << QStringList{"schedule", "--frobnicate"} << 2 << "unknown option '--frobnicate'";
        QTest::newRow("missing value") << QStringList{"schedule", "--csv"} << 2 << "--csv needs a value";
        QTest::newRow("unknown command") << QStringList{"fly"} << 2 << "unknown command 'fly'";
        QTest::newRow("unwritable") << QStringList{"schedule", "--csv", "/nonexistent-dir/x.csv"} << 1 << "/nonexistent-dir/x.csv";
        QTest::newRow("bad device") << QStringList{"info", "--device", "tpu"} << 1 << "unknown device 'tpu'";
        QTest::newRow("unknown metric") << QStringList{"eval", "--metrics", "fid,kid"} << 2 << "unknown metric 'kid'";
        QTest::newRow("unknown spacing") << QStringList{"eval", "--spacing", "uniform"} << 2 << "unknown spacing 'uniform'";
        QTest::newRow("bad sweep kind") << QStringList{"sweep", "--kind", "both"} << 2 << "--kind must be cfg or classifier";
#ifdef DLAB_HAVE_IMAGING
        QTest::newRow("missing image folder") << QStringList{"train", "--dataset", "images:/nonexistent-folder", "--out", "/tmp/dlab-x"} << 1 << "/nonexistent-folder: not a folder";
#else
        QTest::newRow("no image folders headless") << QStringList{"train", "--dataset", "images:/nonexistent-folder", "--out", "/tmp/dlab-x"} << 2 << "no OpenCV imaging";
#endif
        QTest::newRow("missing settings file") << QStringList{"train", "--config", "/nonexistent.json", "--out", "/tmp/dlab-x"} << 1 << "cannot read the settings file /nonexistent.json";
        QTest::newRow("bf16 on cpu") << QStringList{"train", "--bf16", "--device", "cpu", "--steps", "1", "--out", "/tmp/dlab-x-bf16"} << 1 << "bf16 autocast needs a CUDA device";
        QTest::newRow("unknown lr decay") << QStringList{"train", "--lr-decay", "step", "--out", "/tmp/dlab-x"} << 2 << "unknown --lr-decay 'step'";
        QTest::newRow("resume with init-from") << QStringList{"train", "--resume", "--init-from", "default", "--out", "/tmp/dlab-x"} << 2 << "--init-from starts a new run";
        QTest::newRow("fused check on cpu") << QStringList{"bench", "--check-fused", "--device", "cpu"} << 1 << "the fused kernel cannot run here";
        QTest::newRow("bf16 sampling on cpu") << QStringList{"sample", "--bf16", "--device", "cpu", "--count", "1", "--steps", "2", "--tensors", "/tmp/dlab-x-bf16.safetensors"} << 1 << "bf16 inference needs a CUDA device";
        QTest::newRow("not a noisy classifier") << QStringList{"sample", "--classifier-scale", "3", "--noisy-classifier", "fashion-mnist-classifier", "--tensors", "/tmp/dlab-x.safetensors"} << 1 << "not a noise-aware classifier";
        QTest::newRow("bad torchscript") << QStringList{"eval", "--features", "/nonexistent.pt"} << 1 << "/nonexistent.pt";
    }
    void badInputGetsClearErrors() {
        QFETCH(QStringList, args);
        QFETCH(int, code);
        QFETCH(QString, message);
        const Run r = cli(args);
        QCOMPARE(r.code, code);
        QVERIFY2(r.err.contains(message), qPrintable(r.err));
    }

    void sampleFromTheDefaultModel() {
        QTemporaryDir dir;
        const QString grid = dir.filePath("grid.png"), tensors = dir.filePath("s.safetensors");
        QStringList args{"sample", "--model", "default", "--class", "7", "--guidance", "3",
                         "--sampler", "ddim", "--steps", "10", "--seed", "5", "--count", "4",
                         "--device", "cpu", "--tensors", tensors};
#ifdef DLAB_HAVE_IMAGING
        args << "-o" << grid;
#endif
        const Run r = cli(args);
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY(r.err.contains("4 samples"));
#ifdef DLAB_HAVE_IMAGING
        QFile png(grid);
        QVERIFY(png.open(QIODevice::ReadOnly));
        const QByteArray bytes = png.readAll();
        QVERIFY(bytes.startsWith("\x89PNG"));
        QVERIFY(bytes.contains("parameters"));
        QVERIFY(bytes.contains("guidance=3"));
#endif
        QFile st(tensors);
        QVERIFY(st.open(QIODevice::ReadOnly));
        const QByteArray first = st.readAll();
        QVERIFY(first.contains("\"images\"") && first.contains("\"labels\""));
        // Same seed and settings on the same device: identical output.
        QVERIFY(cli(args).code == 0);
        QVERIFY(st.seek(0));
        QCOMPARE(st.readAll(), first);
    }

    void sampleErrors_data() {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<int>("code");
        QTest::addColumn<QString>("message");
        QTest::newRow("class out of range") << QStringList{"sample", "--class", "10", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "--class must be between 0 and 9";
        QTest::newRow("negative steps") << QStringList{"sample", "--steps", "-3", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "--steps must be between 1";
        QTest::newRow("unknown sampler") << QStringList{"sample", "--sampler", "euler", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "unknown sampler 'euler'";
        QTest::newRow("unknown precision") << QStringList{"sample", "--precision", "fp8", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "unknown precision 'fp8'";
        QTest::newRow("half precision on the CPU") << QStringList{"sample", "--precision", "fp16", "--device", "cpu", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "--precision fp16 is for CUDA devices; this run is on cpu";
        QTest::newRow("eval half precision on the CPU") << QStringList{"eval", "--precision", "bf16", "--device", "cpu"} << 2 << "--precision bf16 is for CUDA devices";
        QTest::newRow("unknown model") << QStringList{"sample", "--model", "nope", "--tensors", "/tmp/dlab-test-x.safetensors"} << 1 << "unknown model 'nope'";
        QTest::newRow("missing file") << QStringList{"sample", "--model", "/tmp/none.safetensors", "--tensors", "/tmp/dlab-test-x.safetensors"} << 1 << "does not exist";
        QTest::newRow("no output") << QStringList{"sample"} << 2 << "give -o GRID.png";
        QTest::newRow("chain video not an mp4") << QStringList{"sample", "--steps", "100000", "--count", "1000000", "--chain-video", "/tmp/dlab-test-chain.gif", "--tensors", "/tmp/dlab-test-x.safetensors"} << 1 << "give a name ending in .mp4";
        QTest::newRow("grid not a png") << QStringList{"sample", "--steps", "100000", "--count", "1000000", "-o", "/tmp/dlab-test-grid.jpg"} << 1 << "give a name ending in .png";
        QTest::newRow("bad spacing") << QStringList{"sample", "--spacing", "odd", "--tensors", "x"} << 2 << "unknown spacing 'odd'";
        QTest::newRow("latent norm on pixels") << QStringList{"train", "--latent-norm", "channel", "--out", "/tmp/dlab-x"} << 2 << "for --dataset latents:AUTOENCODER only";
        QTest::newRow("latent sample on pixels") << QStringList{"train", "--latent-sample", "--out", "/tmp/dlab-x"} << 2 << "for --dataset latents:AUTOENCODER only";
        QTest::newRow("unknown latent norm") << QStringList{"train", "--dataset", "latents:fashion-mnist-autoencoder", "--latent-norm", "pixel", "--out", "/tmp/dlab-x"} << 2 << "--latent-norm must be global or channel";
        QTest::newRow("through without real") << QStringList{"eval", "--through", "fashion-mnist-autoencoder"} << 2 << "--through goes with --real-as-samples";
        QTest::newRow("through a diffusion model") << QStringList{"eval", "--real-as-samples", "--through", "default"} << 2 << "is not an autoencoder";
        QTest::newRow("from real beyond the schedule") << QStringList{"eval", "--from-real", "1000"} << 2 << "the model's timesteps are 0..999";
        QTest::newRow("from real of training images") << QStringList{"eval", "--real-as-samples", "--from-real", "10"} << 2 << "--from-real needs a diffusion model";
        QTest::newRow("from real of an autoencoder") << QStringList{"eval", "--model", "fashion-mnist-autoencoder", "--from-real", "10"} << 2 << "--from-real needs a diffusion model";
        QTest::newRow("copies against an image folder") << QStringList{"eval", "--metrics", "copies", "--reference", "/tmp"} << 2 << "--metrics copies compares with the Fashion-MNIST training split";
        QTest::newRow("unknown metric") << QStringList{"eval", "--metrics", "fid,copy"} << 2 << "unknown metric 'copy'";
        QTest::newRow("from real, not a number") << QStringList{"eval", "--from-real", "ten"} << 2 << "--from-real";
        QTest::newRow("start image out of range") << QStringList{"sample", "--start-image", "10000", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "--start-image must be between 0 and 9999";
        QTest::newRow("start t beyond the schedule") << QStringList{"sample", "--start-image", "1", "--start-t", "1000", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "--start-t must be between 0 and 999";
        QTest::newRow("start t alone") << QStringList{"sample", "--start-t", "10", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "--start-t goes with --start-image";
        QTest::newRow("start image with an unknown word") << QStringList{"sample", "--model", "fashion-mnist-text", "--prompt", "a purple dress", "--start-image", "1", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "does not know 'purple'";
        QTest::newRow("from real of a text model") << QStringList{"eval", "--model", "fashion-mnist-text", "--from-real", "10"} << 2 << "not text-to-image";
        QTest::newRow("start image of a toy model") << QStringList{"sample", "--model", "toy-moons", "--start-image", "1", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "not a 2-D toy model";
        QTest::newRow("start image of a GAN") << QStringList{"sample", "--model", "fashion-mnist-gan", "--start-image", "1", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "a GAN has no chain";
        QTest::newRow("autoencoder without out") << QStringList{"train-autoencoder"} << 2 << "--out FILE is required";
        QTest::newRow("autoencoder bad kl") << QStringList{"train-autoencoder", "--out", "x", "--kl-weight", "-1"} << 2 << "--kl-weight must be between";
        QTest::newRow("autoencoder bad equivariance") << QStringList{"train-autoencoder", "--out", "x", "--scale-equivariance", "-1"} << 2 << "--scale-equivariance must be between";
        QTest::newRow("fine-tune with another width") << QStringList{"train-autoencoder", "--out", "x", "--init-from", "fashion-mnist-autoencoder", "--base-channels", "32"} << 2 << "--base-channels comes from the --init-from autoencoder";
        QTest::newRow("fine-tune a diffusion model") << QStringList{"train-autoencoder", "--out", "/tmp/dlab-test-ae.safetensors", "--init-from", "default", "--device", "cpu"} << 1 << "not a DiffusionLab autoencoder";
        QTest::newRow("latents of a missing autoencoder") << QStringList{"train", "--dataset", "latents:/tmp/no-ae.safetensors", "--out", "/tmp/dlab-x"} << 1 << "no-ae.safetensors";
        QTest::newRow("latents of a non-autoencoder") << QStringList{"train", "--dataset", "latents:default", "--out", "/tmp/dlab-x"} << 1 << "not a DiffusionLab autoencoder";
        QTest::newRow("prompt for a class model") << QStringList{"sample", "--prompt", "a dark sandal", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "is not a text-to-image model";
        QTest::newRow("text model without a prompt") << QStringList{"sample", "--model", "fashion-mnist-text", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "give --prompt";
        QTest::newRow("unknown word") << QStringList{"sample", "--model", "fashion-mnist-text", "--prompt", "a purple sandal", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "does not know 'purple'";
        QTest::newRow("over-long prompt") << QStringList{"sample", "--model", "fashion-mnist-text", "--prompt", "a a a a a a a a a a a a a a a dress", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "16 words";
        QTest::newRow("class for a text model") << QStringList{"sample", "--model", "fashion-mnist-text", "--class", "3", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "takes --prompt, not --class";
        QTest::newRow("captions without an encoder") << QStringList{"train", "--dataset", "fashion-mnist-captions", "--out", "/tmp/dlab-x"} << 2 << "needs --text-encoder";
        QTest::newRow("empty prompt file") << QStringList{"eval", "--prompts", "/dev/null", "--model", "default"} << 1 << "no prompts";
        QTest::newRow("sds class out of range") << QStringList{"sds", "--class", "12", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "outside 0..9";
        QTest::newRow("sds of a text model") << QStringList{"sds", "--model", "fashion-mnist-text", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "class-conditional pixel-space";
        QTest::newRow("sds video without 3d") << QStringList{"sds", "--video", "/tmp/x.mp4"} << 2 << "turntable of --3d";
        QTest::newRow("sds bad t range") << QStringList{"sds", "--t-range", "0.9,0.1", "--tensors", "x"} << 2 << "LO < HI";
        QTest::newRow("video without a subcommand") << QStringList{"video"} << 2 << "video train|sample|eval";
        QTest::newRow("video of an image model") << QStringList{"video", "sample", "--model", "default", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "is not a video model";
        QTest::newRow("video unknown prediction") << QStringList{"video", "train", "--out", "/tmp/dlab-x", "--prediction", "noise"} << 2 << "unknown prediction 'noise'";
        QTest::newRow("video unknown sampler") << QStringList{"video", "sample", "--sampler", "euler", "--tensors", "/tmp/dlab-test-x.safetensors"} << 2 << "unknown sampler 'euler'";
        QTest::newRow("video canvas too small") << QStringList{"video", "sample", "--canvas", "24", "--tensors", "x"} << 2 << "at least 36 px";
        QTest::newRow("convert nothing") << QStringList{"convert", "--in", "a", "--out", "b"} << 2 << "say what to convert";
        QTest::newRow("convert missing file") << QStringList{"convert", "--in", "/tmp/none.safetensors", "--out", "/tmp/x.safetensors", "--half"} << 1 << "none.safetensors";
    }
    void sampleErrors() {
        QFETCH(QStringList, args);
        QFETCH(int, code);
        QFETCH(QString, message);
        const Run r = cli(args);
        QCOMPARE(r.code, code);
        QVERIFY2(r.err.contains(message), qPrintable(r.err));
    }

    void sampleTakesTheRecommendedSampling() {
        // --recommended: the manifest's sampler, guidance and timesteps for the options not given
        // (here --steps is given and wins); a model without a recommendation is a usage error.
        const auto manifest = dlab::read_manifest(dlab::resolve_model("fashion-mnist-quality").value());
        QVERIFY(manifest && manifest->recommended);
        const dlab::RecommendedSampling& r = *manifest->recommended;
        QTemporaryDir dir;
        const QString out = dir.filePath("q.safetensors");
        Run run = cli({"sample", "--model", "fashion-mnist-quality", "--recommended", "--steps", "2", "--count", "2",
                       "--device", "cpu", "--tensors", out});
        QVERIFY2(run.code == 0, qPrintable(run.err));
        QVERIFY2(run.err.contains("as the manifest recommends"), qPrintable(run.err));
        auto f = dlab::load_safetensors(out.toStdString());
        QVERIFY(f);
        QCOMPARE(f->metadata.at("sampler"), r.sampler);
        QCOMPARE(f->metadata.at("spacing"), r.spacing);
        QCOMPARE(f->metadata.at("steps"), std::string("2"));
        QCOMPARE(std::stod(f->metadata.at("guidance")), r.guidance);
        // Without the flag: the command's own defaults.
        run = cli({"sample", "--model", "fashion-mnist-quality", "--steps", "2", "--count", "2", "--device", "cpu", "--tensors", out, "--quiet"});
        QVERIFY2(run.code == 0, qPrintable(run.err));
        f = dlab::load_safetensors(out.toStdString());
        QCOMPARE(f->metadata.at("sampler"), std::string("ddim"));
        QCOMPARE(f->metadata.at("spacing"), std::string("trailing"));
        run = cli({"sample", "--model", "fashion-mnist-live", "--recommended", "--tensors", out});
        QCOMPARE(run.code, 2);
        QVERIFY2(run.err.contains("recommends no sampling"), qPrintable(run.err));
    }

    void textModelSamplesAndEvaluatesPrompts() {
        // The bundled text-to-image model: prompts cycle over the samples, the file records them;
        // eval --prompts reports agreement, attributes and CLIP score per prompt and per group.
        QTemporaryDir dir;
        const QString out = dir.filePath("t.safetensors");
        const Run r = cli(QStringList{"sample", "--model", "fashion-mnist-text", "--prompt", "a dark sandal | a large bag",
                                      "--negative-prompt", "a small bag", "--count", "4", "--steps", "4", "--tensors", out, "--quiet"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        auto f = dlab::load_safetensors(out.toStdString());
        QVERIFY(f);
        QCOMPARE(f->tensors.at("images").sizes(), (at::IntArrayRef{4, 1, 28, 28}));
        QVERIFY(at::equal(f->tensors.at("labels"), at::tensor({0, 1, 0, 1}, at::kLong)));
        QVERIFY(QString::fromStdString(f->metadata.at("prompts")).contains("a large bag"));
        QCOMPARE(QString::fromStdString(f->metadata.at("negative_prompt")), QStringLiteral("a small bag"));
        const QString prompts = dir.filePath("p.txt");
        QFile pf(prompts);
        QVERIFY(pf.open(QIODevice::WriteOnly));
        pf.write("# held out, then trained\na dark sandal\n\na light sandal\n");
        pf.close();
        const QString js = dir.filePath("e.json");
        const Run e = cli(QStringList{"eval", "--prompts", prompts, "--model", "fashion-mnist-text", "--count", "6", "--steps", "4",
                                      "--scales", "1,3", "--json", js});
        QVERIFY2(e.code == 0, qPrintable(e.err));
        QVERIFY2(e.out.contains("\"a dark sandal\" *") && e.out.contains("held-out pairs") && e.out.contains("FID"), qPrintable(e.out));
        const auto j = nlohmann::json::parse(readAll(js).toStdString());
        QCOMPARE(j.at("rows").size(), size_t(4));  // 2 prompts x 2 scales
        for (const auto& row : j.at("rows")) {
            QCOMPARE(row.at("samples").get<int>(), 6);
            QVERIFY(row.at("agreement").get<double>() >= 0 && row.at("agreement").get<double>() <= 1);
            QVERIFY(row.at("clip_score").get<double>() >= 0);
        }
        QCOMPARE(j.at("rows")[0].at("held_out").get<bool>(), true);
        QCOMPARE(j.at("rows")[1].at("held_out").get<bool>(), false);
    }

    void videoModelTrainsAndSamplesClips() {
        // A tiny video model (4 frames of 28x28) trained for a few steps, then clips sampled from it
        // with the class and direction recorded.
        QTemporaryDir dir;
        const QStringList shape{"--frames", "4", "--canvas", "28", "--item", "12"};
        const Run t = cli(QStringList{"video", "train", "--out", dir.filePath("run"), "--base-channels", "16", "--steps", "3",
                                      "--batch", "2", "--log-every", "1"} + shape);
        QVERIFY2(t.code == 0, qPrintable(t.err));
        const QString out = dir.filePath("v.safetensors");
        const Run r = cli(QStringList{"video", "sample", "--model", dir.filePath("run/model.safetensors"), "--count", "1", "--steps",
                                      "2", "--class", "8", "--direction", "2", "--sampler", "ddpm", "--tensors", out} + shape);
        QVERIFY2(r.code == 0, qPrintable(r.err));
        // A video model predicts v unless told otherwise (eps leaves its first steps' x0 unusable).
        const std::string model = dir.filePath("run/model.safetensors").toStdString();
        const auto file = dlab::load_safetensors(model);
        QVERIFY(file);
        const auto cfg = dlab::stored_model_config(file.value(), model);
        QVERIFY2(cfg, cfg ? "" : cfg.error().c_str());
        QCOMPARE(cfg->prediction, dlab::PredictionType::V);
        auto f = dlab::load_safetensors(out.toStdString());
        QVERIFY(f);
        QCOMPARE(f->tensors.at("clips").sizes(), (at::IntArrayRef{1, 4, 1, 28, 28}));
        QCOMPARE(f->tensors.at("classes")[0].item<int64_t>(), int64_t(8));
        QCOMPARE(f->tensors.at("directions")[0].item<int64_t>(), int64_t(2));
        QVERIFY(at::isfinite(f->tensors.at("clips")).all().item<bool>());
    }

    void sdsWritesImageAndTurntable() {
        QTemporaryDir dir;
        const QString a = dir.filePath("a.safetensors"), b = dir.filePath("b.safetensors"), csv = dir.filePath("l.csv");
        const Run r = cli(QStringList{"sds", "--class", "3", "--steps", "6", "--log-every", "3", "--compare", "0", "--tensors", a,
                                      "--loss-csv", csv});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        auto f = dlab::load_safetensors(a.toStdString());
        QVERIFY(f);
        QCOMPARE(f->tensors.at("image").sizes(), (at::IntArrayRef{1, 1, 28, 28}));
        QCOMPARE(readAll(csv).count('\n'), 3);  // header and steps 3, 6
        const Run t = cli(QStringList{"sds", "--class", "8", "--3d", "--steps", "2", "--views", "1", "--compare", "1", "--tensors", b});
        QVERIFY2(t.code == 0, qPrintable(t.err));
        auto g = dlab::load_safetensors(b.toStdString());
        QVERIFY(g);
        QCOMPARE(g->tensors.at("turntable").sizes(), (at::IntArrayRef{24, 1, 28, 28}));
        QCOMPARE(g->tensors.at("ancestral").sizes(), (at::IntArrayRef{1, 1, 28, 28}));
    }

    void latentModelSamplesImages() {
        // The bundled latent model decodes to 28x28 images; a float16 copy samples the same images.
        const QString out = QDir::tempPath() + QStringLiteral("/dlab-latent.safetensors");
        const QString half = QDir::tempPath() + QStringLiteral("/dlab-latent-half.safetensors");
        const Run r = cli(QStringList{"sample", "--model", "latent-fashion-mnist", "--count", "4", "--steps", "5", "--tensors", out, "--quiet"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        auto f = dlab::load_safetensors(out.toStdString());
        QVERIFY(f);
        QCOMPARE(f->tensors.at("images").sizes(), (at::IntArrayRef{4, 1, 28, 28}));
        auto path = dlab::resolve_model("latent-fashion-mnist");
        const Run c = cli(QStringList{"convert", "--in", QString::fromStdString(path.value()), "--out", half, "--half",
                                      "--autoencoder", "fashion-mnist-autoencoder"});
        QVERIFY2(c.code == 0, qPrintable(c.err));
        const QString out2 = QDir::tempPath() + QStringLiteral("/dlab-latent2.safetensors");
        const Run r2 = cli(QStringList{"sample", "--model", half, "--count", "4", "--steps", "5", "--tensors", out2, "--quiet"});
        QVERIFY2(r2.code == 0, qPrintable(r2.err));
        auto f2 = dlab::load_safetensors(out2.toStdString());
        QVERIFY(at::equal(f->tensors.at("images"), f2->tensors.at("images")));  // already float16: unchanged
        // The reference replaces the training machine's file name in the dataset line.
        auto cfg = nlohmann::json::parse(dlab::load_safetensors(half.toStdString())->metadata.at("dlab"));
        QCOMPARE(QString::fromStdString(cfg["dataset"].get<std::string>()),
                 QStringLiteral("fashion-mnist latents (fashion-mnist-autoencoder)"));
        // The quality tier's latent model decodes through its own bundled autoencoder.
        const Run q = cli(QStringList{"sample", "--model", "latent-fashion-mnist-quality", "--count", "3", "--steps", "3",
                                      "--guidance", "1", "--tensors", out, "--quiet"});
        QVERIFY2(q.code == 0, qPrintable(q.err));
        auto fq = dlab::load_safetensors(out.toStdString());
        QCOMPARE(fq->tensors.at("images").sizes(), (at::IntArrayRef{3, 1, 28, 28}));
        QVERIFY(fq->tensors.at("images").isfinite().all().item<bool>());
    }

    void corruptModelFile() {
        QTemporaryDir dir;
        const QString bad = dir.filePath("bad.safetensors");
        QFile f(bad);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(QByteArray(100, 'x'));
        f.close();
        const Run r = cli({"sample", "--model", bad, "--tensors", dir.filePath("x.safetensors")});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("bad.safetensors") && r.err.contains("corrupt"), qPrintable(r.err));
        QVERIFY(!QFileInfo::exists(dir.filePath("x.safetensors")));
    }

    void evalReportsAgreementAndDistance() {
        QTemporaryDir dir;
        const QString json = dir.filePath("eval.json");
        const Run r = cli({"eval", "--count", "40", "--steps", "4", "--scales", "0,3", "--device", "cpu",
                           "--batch", "40", "--metrics", "fid,sfid,is,precision,recall,agreement", "--json", json});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY(r.out.contains("floor"));
        QVERIFY(r.out.contains("N = 40"));  // every report states N and the feature network
        QVERIFY(r.out.contains("Fashion-MNIST classifier"));
        QFile f(json);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QJsonObject o = QJsonDocument::fromJson(f.readAll()).object();
        QVERIFY(o["floor"].toObject()["fid"].toDouble() > 0);
        QCOMPARE(o["spacing"].toString(), QStringLiteral("trailing"));  // the sampler's timesteps are recorded
        const QJsonArray rows = o["rows"].toArray();
        QCOMPARE(rows.size(), 2);
        for (const auto& row : rows) {
            const QJsonObject m = row.toObject();
            for (const char* key : {"agreement", "precision", "recall"}) {
                const double v = m[key].toDouble(-1);
                QVERIFY2(v >= 0 && v <= 1, key);
            }
            QVERIFY(m["fid"].toDouble() > 0);
            QVERIFY(m["sfid"].toDouble() > 0);
            QVERIFY(m["is"].toDouble() >= 1.0);
            QVERIFY(!m.contains("diversity"));  // not asked for
        }
        // Guidance at s = 3 follows the asked class far more often than unconditional sampling.
        QVERIFY(rows[1].toObject()["agreement"].toDouble() > rows[0].toObject()["agreement"].toDouble() + 0.3);
    }

    // eval --reference fashion-mnist-train scores the samples against training images (a model that
    // copies them scores better there); its floor set is then the test split: the same floor FID,
    // precision and recall trading places (each is the other's coverage of the two splits).
    void evalAgainstTrainingImages() {
        QTemporaryDir dir;
        QJsonObject floor[2];
        const QStringList refs{"fashion-mnist-test", "fashion-mnist-train"};
        for (int i = 0; i < 2; ++i) {
            const QString json = dir.filePath(QString("eval-%1.json").arg(i));
            const Run r = cli({"eval", "--count", "40", "--steps", "2", "--scales", "1", "--device", "cpu", "--batch", "40",
                               "--metrics", "fid,precision,recall", "--reference", refs[i], "--json", json});
            QVERIFY2(r.code == 0, qPrintable(r.err));
            QVERIFY(r.out.contains("reference " + refs[i]));
            QFile f(json);
            QVERIFY(f.open(QIODevice::ReadOnly));
            const QJsonObject o = QJsonDocument::fromJson(f.readAll()).object();
            QCOMPARE(o["reference"].toString(), refs[i]);
            floor[i] = o["floor"].toObject();
        }
        QVERIFY(floor[0]["fid"].toDouble() > 0);
        QVERIFY(std::abs(floor[0]["fid"].toDouble() - floor[1]["fid"].toDouble()) < 1e-6 * floor[0]["fid"].toDouble());
        QCOMPARE(floor[0]["precision"].toDouble(), floor[1]["recall"].toDouble());
        QCOMPARE(floor[0]["recall"].toDouble(), floor[1]["precision"].toDouble());
    }

    // eval --real-as-samples --through AE: the training images also scored after an encode/decode
    // round trip (what a perfect latent model on that autoencoder would score), as a second row.
    void evalRoundTripThroughAnAutoencoder() {
        QTemporaryDir dir;
        const QString json = dir.filePath("rt.json");
        const Run r = cli({"eval", "--real-as-samples", "--through", "fashion-mnist-autoencoder", "--count", "200", "--device", "cpu",
                           "--metrics", "fid,precision,recall", "--json", json});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY(r.out.contains("round trip"));
        QFile f(json);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QJsonArray rows = QJsonDocument::fromJson(f.readAll()).object()["rows"].toArray();
        QCOMPARE(rows.size(), 2);
        const QJsonObject floor = rows[0].toObject(), trip = rows[1].toObject();
        QCOMPARE(trip["generator"].toString(), QStringLiteral("autoencoder-round-trip"));
        const double fid = trip["fid"].toDouble();
        QVERIFY(std::isfinite(fid) && fid > 0);
        QVERIFY2(std::abs(fid - floor["fid"].toDouble()) > 1e-6, "the round trip changed nothing");
        QVERIFY(trip["recall"].toDouble() > 0 && trip["recall"].toDouble() <= 1);
    }

    // eval --from-real: chains from noised training images, a row per timestep; from the last
    // timestep the model restores little, from t = 0 almost everything (nearer the floor).
    void evalFromRealData() {
        QTemporaryDir dir;
        const QString json = dir.filePath("fr.json");
        const Run r = cli({"eval", "--from-real", "0,999", "--count", "200", "--steps", "4", "--spacing", "linspace", "--scales", "1",
                           "--device", "cpu", "--metrics", "fid,recall", "--json", json});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY(r.out.contains("from real"));
        QFile f(json);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QJsonObject o = QJsonDocument::fromJson(f.readAll()).object();
        const QJsonArray rows = o["rows"].toArray();
        QCOMPARE(rows.size(), 2);
        const QJsonObject low = rows[0].toObject(), high = rows[1].toObject();
        QCOMPARE(low["from_t"].toInt(), 0);
        QCOMPARE(high["from_t"].toInt(), 999);
        QCOMPARE(low["chain_steps"].toInt(), 1);
        QCOMPARE(high["chain_steps"].toInt(), 4);
        const double floor = o["floor"].toObject()["fid"].toDouble();
        qInfo("from t = 0: FID %.2f, from t = 999: %.2f (floor %.2f)", low["fid"].toDouble(), high["fid"].toDouble(), floor);
        QVERIFY(low["fid"].toDouble() < high["fid"].toDouble());
        QVERIFY(std::abs(low["fid"].toDouble() - floor) < std::abs(high["fid"].toDouble() - floor));
    }

    // sample --start-image N --start-t T (SDEdit): from a low t the chains end near test image N, from
    // the top they are new items; the classes default to the image's own; the same seed repeats itself.
    void sampleFromATestImage() {
        QTemporaryDir dir;
        auto run = [&](const QString& t, const QString& name, const QStringList& more = {}) -> at::Tensor {
            const QString file = dir.filePath(name);
            QStringList args{"sample", "--model", "fashion-mnist-live", "--start-image", "17", "--start-t", t, "--steps", "20",
                             "--guidance", "1", "--count", "4", "--seed", "3", "--device", "cpu", "--tensors", file};
            const Run r = cli(args + more);
            if (r.code != 0) qWarning("%s", qPrintable(r.err));
            auto f = dlab::load_safetensors(file.toStdString());
            if (!f) return at::Tensor();
            if (!more.contains("--class")) {
                const auto labels = f->tensors.at("labels");
                if (!(labels == labels[0]).all().item<bool>()) return at::Tensor();  // one class: the image's own
            }
            if (f->metadata["start_image"] != "17" || f->metadata.count("start_t") == 0) return at::Tensor();
            return f->tensors.at("images");
        };
        auto test = dlab::load_fashion_mnist(dlab::fashion_mnist_dir(), false);
        QVERIFY2(test, test ? "" : test.error().c_str());
        const at::Tensor image = (test->x[17] + 1) / 2;  // the samples are written in [0, 1]
        const at::Tensor low = run("150", "low.safetensors"), top = run("999", "top.safetensors");
        QVERIFY(low.defined() && top.defined());
        const double dlow = (low - image).abs().mean().item<double>(), dtop = (top - image).abs().mean().item<double>();
        qInfo("mean |sample - test image 17|: from t = 150 %.4f, from t = 999 %.4f", dlow, dtop);
        QVERIFY(dlow < 0.08);
        QVERIFY(dlow < 0.5 * dtop);
        // Each chain its own noise: four different variations, and the same four again from the same seed.
        QVERIFY((low[0] - low[1]).abs().max().item<double>() > 1e-3);
        QVERIFY(at::equal(run("150", "again.safetensors"), low));
        // Another class from the middle of the chain: that class's labels.
        const Run r = cli({"sample", "--model", "fashion-mnist-live", "--start-image", "17", "--start-t", "600", "--class", "5",
                           "--steps", "10", "--count", "2", "--device", "cpu", "--tensors", dir.filePath("c.safetensors")});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY(r.err.contains("starting from test image 17"));
        auto f = dlab::load_safetensors(dir.filePath("c.safetensors").toStdString());
        QVERIFY(f && (f->tensors.at("labels") == 5).all().item<bool>());
        // A text-to-image model: the prompt conditions the rest of the chain.
        const Run text = cli({"sample", "--model", "fashion-mnist-text", "--prompt", "a dark sandal", "--start-image", "17",
                              "--start-t", "600", "--steps", "10", "--count", "2", "--device", "cpu", "--tensors",
                              dir.filePath("t.safetensors")});
        QVERIFY2(text.code == 0, qPrintable(text.err));
        QVERIFY(text.err.contains("starting from test image 17"));
    }

    // eval --metrics copies: training images as samples are all copies, the model's samples are not
    // (nearer 0.01, the test images' rate by construction); other references refuse it.
    void evalMeasuresCopying() {
        QTemporaryDir dir;
        const QString json = dir.filePath("c.json");
        const QString csv = dir.filePath("c.csv");
        const Run r = cli({"eval", "--model", "fashion-mnist-live", "--metrics", "fid,copies", "--count", "120", "--steps", "5",
                           "--scales", "2", "--device", "cpu", "--json", json, "--csv", csv});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY(r.out.contains("copies"));
        const QJsonObject o = QJsonDocument::fromJson(readAll(json)).object();
        const QJsonObject floor = o["floor"].toObject(), row = o["rows"].toArray()[0].toObject();
        QVERIFY(std::abs(floor["nn_ratio"].toDouble() - 1.0) < 1e-9);
        qInfo("copies %.4f, nearest-training distance ratio %.3f", row["copies"].toDouble(), row["nn_ratio"].toDouble());
        QVERIFY(row["copies"].toDouble() < 0.2);
        QVERIFY(row["nn_ratio"].toDouble() > 0.5);
        // The CSV row carries the same two figures in its last columns.
        const QStringList lines = QString::fromUtf8(readAll(csv)).trimmed().split('\n');
        QCOMPARE(lines.size(), 2);
        QVERIFY(lines[0].endsWith(",seconds,copies,nn_ratio"));
        const QStringList cells = lines[1].split(',');
        QCOMPARE(cells.size(), 13);
        QVERIFY(std::abs(cells[11].toDouble() - row["copies"].toDouble()) < 1e-5);
        QVERIFY(std::abs(cells[12].toDouble() - row["nn_ratio"].toDouble()) < 1e-5);
        // Training images in place of samples, through the autoencoder: near-copies of the training set.
        const Run t = cli({"eval", "--real-as-samples", "--through", "fashion-mnist-autoencoder", "--metrics", "fid,copies",
                           "--count", "120", "--device", "cpu", "--json", json});
        QVERIFY2(t.code == 0, qPrintable(t.err));
        const QJsonArray rows = QJsonDocument::fromJson(readAll(json)).object()["rows"].toArray();
        const QJsonObject through = rows.last().toObject();
        qInfo("training images through the autoencoder: copies %.4f, ratio %.3f", through["copies"].toDouble(), through["nn_ratio"].toDouble());
        QVERIFY(through["nn_ratio"].toDouble() < row["nn_ratio"].toDouble());
    }

    // eval --metrics nll: the bound's parts add up to the total in the JSON, one CSV row per grid
    // timestep; a latent model and bad options are messages.
    void evalNllReportsTheBoundAndItsTerms() {
        QTemporaryDir dir;
        const QString json = dir.filePath("nll.json"), csv = dir.filePath("nll.csv");
        Run r = cli({"eval", "--model", "fashion-mnist-live", "--metrics", "nll", "--nll-count", "16", "--nll-strata", "6",
                     "--batch", "16", "--device", "cpu", "--json", json, "--nll-csv", csv});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY2(r.out.contains("bits/dim (variational bound):") && r.out.contains("N = 16 test images"), qPrintable(r.out));
        const QJsonObject o = QJsonDocument::fromJson(readAll(json)).object()["nll"].toObject();
        const double bpd = o["bpd"].toDouble();
        QVERIFY(bpd > 0 && bpd < 8);  // 8 bits/dim is the bound of a uniform 8-bit model
        QVERIFY(o["bpd_se"].toDouble() > 0);
        QVERIFY(std::abs(o["prior"].toDouble() + o["decoder"].toDouble() + o["diffusion"].toDouble() - bpd) < 1e-6 * bpd);
        QCOMPARE(o["timesteps"].toArray().size(), 7);
        QCOMPARE(QString::fromUtf8(readAll(csv)).trimmed().split('\n').size(), 8);  // header + 7 rows
        r = cli({"eval", "--model", "latent-fashion-mnist", "--metrics", "nll", "--nll-count", "4", "--nll-strata", "2"});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("latent model"), qPrintable(r.err));
        r = cli({"eval", "--metrics", "nll", "--nll-variance", "wide"});
        QCOMPARE(r.code, 2);
        QVERIFY2(r.err.contains("--nll-variance"), qPrintable(r.err));
        r = cli({"eval", "--metrics", "nll,bpd"});
        QCOMPARE(r.code, 2);
        QVERIFY2(r.err.contains("unknown metric 'bpd'"), qPrintable(r.err));
    }

    // compare-schedules: runs trained and evaluated one at a time (--only) or all together, finished
    // phases skipped when run again, one CSV row per run and scale, the same timesteps for every run.
    void compareSchedulesRunsItsPhases() {
        QTemporaryDir dir;
        const QString out = dir.filePath("cs"), csv = dir.filePath("r.csv"), curves = dir.filePath("c.csv");
        const QStringList common = {"compare-schedules", "--out", out, "--steps", "12", "--batch", "8", "--warmup", "2",
                                    "--size", "tiny", "--seeds", "1,2", "--count", "20", "--scales", "0,2",
                                    "--sampling-steps", "3", "--loss-images", "8", "--loss-timesteps", "4",
                                    "--eval-batch", "20", "--device", "cpu"};
        Run r = cli(common + QStringList{"--phase", "train", "--only", "cosine:2"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY(QFileInfo::exists(out + "/cosine-seed2/done.json"));
        QVERIFY(!QFileInfo::exists(out + "/linear-seed1"));
        r = cli(common + QStringList{"--csv", csv, "--curves-csv", curves});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY2(r.out.contains("train cosine-seed2: done earlier"), qPrintable(r.out));
        QVERIFY(r.out.contains("4 evaluated runs"));
        const QStringList rows = QString::fromUtf8(readAll(csv)).trimmed().split('\n');
        QCOMPARE(rows.size(), 1 + 4 * 2);
        QVERIFY(rows[0].startsWith("schedule,seed,scale,fid"));
        const QStringList curveRows = QString::fromUtf8(readAll(curves)).trimmed().split('\n');
        QCOMPARE(curveRows.size(), 1 + 4 * 5);  // t = 0 and one timestep from each of 4 ranges, per run
        // The same timesteps for both schedules: column 3 of linear-seed1's rows equals cosine-seed1's.
        QStringList tLinear, tCosine;
        for (const QString& row : curveRows) {
            const QStringList c = row.split(',');
            if (c[0] == "linear" && c[1] == "1") tLinear << c[2];
            if (c[0] == "cosine" && c[1] == "1") tCosine << c[2];
        }
        QCOMPARE(tLinear.size(), 5);
        QCOMPARE(tLinear, tCosine);
        r = cli(common + QStringList{"--phase", "report", "--only", "sigmoid:1"});
        QCOMPARE(r.code, 2);
        QVERIFY2(r.err.contains("names none of the runs"), qPrintable(r.err));
    }

    void sweepWritesCsvForBothKinds() {
        QTemporaryDir dir;
        for (const char* kind : {"cfg", "classifier"}) {
            const QString csv = dir.filePath(QString("%1.csv").arg(kind));
            const Run r = cli({"sweep", "--kind", kind, "--scales", "0,5", "--count", "30", "--steps", "3",
                               "--device", "cpu", "--batch", "30", "--csv", csv});
            QVERIFY2(r.code == 0, qPrintable(r.err));
            QFile f(csv);
            QVERIFY(f.open(QIODevice::ReadOnly));
            const QStringList lines = QString::fromUtf8(f.readAll()).trimmed().split('\n');
            QCOMPARE(lines.size(), 3);  // header + one row per scale
            QCOMPARE(lines[0], QString("kind,scale,fid,sfid,is,precision,recall,agreement,diversity,saturation,seconds,copies,nn_ratio"));
            QVERIFY(lines[1].startsWith(QString("%1,0.0").arg(kind)));
            QCOMPARE(lines[2].split(',').size(), 13);
            QVERIFY(lines[2].endsWith(",,"));  // no copies without --metrics copies
            const double saturated = lines[2].split(',')[9].toDouble();
            QVERIFY(saturated >= 0 && saturated <= 1);
        }
        // Dynamic thresholding at a high scale: an option of its own, and it changes the samples.
        const QString stat = dir.filePath("static.csv"), dyn = dir.filePath("dynamic.csv");
        const QStringList base{"sweep", "--scales", "8", "--count", "30", "--steps", "3", "--device", "cpu", "--batch", "30",
                               "--metrics", "fid"};
        QCOMPARE(cli(QStringList(base) << "--csv" << stat).code, 0);
        const Run d = cli(QStringList(base) << "--csv" << dyn << "--dynamic-threshold" << "0.9");
        QVERIFY2(d.code == 0, qPrintable(d.err));
        QVERIFY(d.out.contains("dynamic thresholding at the 90 percentile"));
        auto row = [](const QString& path) { return QString::fromUtf8(readAll(path)).trimmed().split('\n').value(1).split(','); };
        QVERIFY(row(stat).value(2) != row(dyn).value(2));  // another FID: other samples
        QCOMPARE(cli(QStringList(base) << "--dynamic-threshold" << "1.5").code, 2);
    }

    void trilemmaWritesOneRowPerGeneratorAndStepCount() {
        QTemporaryDir dir;
        const QString csv = dir.filePath("tri.csv");
        const Run r = cli({"trilemma", "--count", "20", "--steps", "4,1,2", "--samplers", "ddim", "--device", "cpu",
                           "--batch", "20", "--csv", csv});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QFile f(csv);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QStringList lines = QString::fromUtf8(f.readAll()).trimmed().split('\n');
        QCOMPARE(lines[0], QString("generator,sampler,steps,nfe,fid,precision,recall,agreement,diversity,seconds,seconds_per_10k"));
        QCOMPARE(lines.size(), 1 + 2 + 3);  // GAN, VAE prior, diffusion at 1, 2, 4 steps
        QVERIFY(lines[1].startsWith("GAN,,1,1,"));
        QVERIFY(lines[2].startsWith("VAE prior,,1,1,"));
        int previous = 0;
        for (int i = 3; i < lines.size(); ++i) {
            const QStringList f = lines[i].split(',');
            QCOMPARE(f.size(), 11);
            QCOMPARE(f[0], QString("diffusion"));
            const int nfe = f[3].toInt();
            QVERIFY2(nfe > previous, qPrintable(lines[i]));  // the NFE axis rises
            previous = nfe;
            QVERIFY(std::isfinite(f[4].toDouble()) && f[4].toDouble() > 0);
        }
        // Bad input: a sampler that does not exist, a model that is not there.
        QCOMPARE(cli({"trilemma", "--samplers", "euler", "--device", "cpu"}).code, 2);
        const Run missing = cli({"trilemma", "--gan", dir.filePath("none.safetensors"), "--device", "cpu"});
        QCOMPARE(missing.code, 1);
        QVERIFY2(missing.err.contains("none.safetensors"), qPrintable(missing.err));
    }

    void ganSamplesAndTrainGanRefusesToLoseARun() {
        QTemporaryDir dir;
        const QString tensors = dir.filePath("gan.safetensors");
        const Run s = cli({"sample", "--model", "fashion-mnist-gan", "--count", "20", "--tensors", tensors, "--device", "cpu"});
        QVERIFY2(s.code == 0, qPrintable(s.err));
        auto file = dlab::load_safetensors(tensors.toStdString());
        QVERIFY(file);
        QCOMPARE(file->tensors.at("images").sizes().vec(), (std::vector<int64_t>{20, 1, 28, 28}));
        QVERIFY(file->tensors.at("images").min().item<double>() >= 0 && file->tensors.at("images").max().item<double>() <= 1);
        const QString out = dir.filePath("run");
        const QStringList quick{"train-gan", "--out", out, "--steps", "4", "--batch", "8", "--base-channels", "8",
                                "--z-dim", "8", "--log-every", "2", "--checkpoint-every", "2", "--device", "cpu"};
        const Run first = cli(quick);
        QVERIFY2(first.code == 0 || first.err.contains("collapsed"), qPrintable(first.err));  // 4 steps: marked, not hidden
        QVERIFY(QFileInfo::exists(out + "/checkpoint.safetensors"));
        const Run again = cli(quick);
        QCOMPARE(again.code, 1);
        QVERIFY2(again.err.contains("--resume") && again.err.contains("--overwrite"), qPrintable(again.err));
    }

    void settingsFileWithUnknownKeyIsRejected() {
        QTemporaryDir dir;
        QFile f(dir.filePath("s.json"));
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(R"({"training": {"batch": 8, "stepz": 3}})");
        f.close();
        const Run r = cli({"train", "--config", dir.filePath("s.json"), "--dataset", "toy:moons", "--out", dir.filePath("run")});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("unknown key \"stepz\" in \"training\""), qPrintable(r.err));
    }

    void hostileModelFilesAreMessages_data() {
        QTest::addColumn<QString>("field");
        QTest::addColumn<QString>("message");
        // Each was a crash (SIGFPE) or a runaway build before the config was checked first.
        QTest::newRow("groups 0") << "groups=0" << "groups is 0";
        QTest::newRow("attention heads 0") << "attention_heads=0" << "attention_heads is 0";
        QTest::newRow("a million blocks") << "num_res_blocks=1000000" << "num_res_blocks is 1000000";
        QTest::newRow("too wide for its weights") << "base_channels=1024" << "do not belong together";
        QTest::newRow("NaN weights") << "nan" << "non-finite values";
    }
    void hostileModelFilesAreMessages() {
        QFETCH(QString, field);
        QFETCH(QString, message);
        QTemporaryDir dir;
        const QString model = dir.filePath("model.safetensors"), out = dir.filePath("x.safetensors");
        if (field == "nan") {
            QVERIFY(writeEditedModel(model, [](nlohmann::json&) {}, [](at::Tensor& t) {
                if (t.is_floating_point()) t.fill_(std::nan(""));
            }));
        } else {
            const QStringList kv = field.split('=');
            QVERIFY(writeEditedModel(model, [&](nlohmann::json& j) {
                j["network"][kv[0].toStdString()] = kv[1].toLongLong();
            }));
        }
        for (const QStringList& args : {QStringList{"sample", "--model", model, "--count", "2", "--steps", "2", "--tensors", out},
                                        QStringList{"eval", "--model", model, "--count", "20", "--steps", "2"}}) {
            const Run r = cli(args);
            QVERIFY2(r.code == 1, qPrintable(QString("%1: exit %2: %3").arg(args.first()).arg(r.code).arg(r.err)));
            QVERIFY2(r.err.contains(message) && !r.err.contains("Exception raised from"), qPrintable(r.err));
        }
        QVERIFY(!QFileInfo::exists(out));
        // bench builds the network from the file too: refused, or (NaN weights) timed, never a signal.
        const Run bench = cli({"bench", "--model", model, "--batches", "1", "--iters", "1", "--device", "cpu"});
        QVERIFY2(field == "nan" ? bench.code >= 0 : bench.code == 1, qPrintable(bench.err));
    }

    void aFolderIsNoModelFile() {
        QTemporaryDir dir;
        const Run r = cli({"sample", "--model", dir.path() + "/", "--tensors", dir.filePath("x.safetensors")});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("not a regular file"), qPrintable(r.err));
    }

    void outputsAreCheckedBeforeTheWork() {
        QTemporaryDir dir;
        const Run video = cli({"sample", "--steps", "50", "--count", "8", "-o", dir.filePath("grid.png"),
                               "--chain-video", "/nonexistent-folder/chain.mp4"});
        QCOMPARE(video.code, 1);
        QVERIFY2(video.err.contains("/nonexistent-folder") && video.err.contains("does not exist"), qPrintable(video.err));
        QVERIFY2(!video.err.contains("samples in"), qPrintable(video.err));  // it failed before sampling
        QVERIFY(!QFileInfo::exists(dir.filePath("grid.png")));
        // A symbolic link, a pipe and a read-only file are never replaced.
        const QString target = dir.filePath("target.csv"), link = dir.filePath("link.csv");
        QFile t(target);
        QVERIFY(t.open(QIODevice::WriteOnly));
        t.write("precious\n");
        t.close();
        QVERIFY(QFile::link(target, link));
        const QString fifo = dir.filePath("pipe.csv");
        QCOMPARE(::mkfifo(fifo.toLocal8Bit().constData(), 0644), 0);
        const QString ro = dir.filePath("readonly.csv");
        QFile r(ro);
        QVERIFY(r.open(QIODevice::WriteOnly));
        r.write("keep\n");
        r.close();
        QVERIFY(QFile::setPermissions(ro, QFileDevice::ReadOwner | QFileDevice::ReadGroup | QFileDevice::ReadOther));
        for (const auto& [path, why] : {std::pair<QString, QString>{link, "symbolic link"}, {fifo, "not a regular file"},
                                        {ro, "read-only"}}) {
            const Run w = cli({"schedule", "--csv", path});
            QCOMPARE(w.code, 1);
            QVERIFY2(w.err.contains(why), qPrintable(w.err));
        }
        QVERIFY(QFileInfo(link).isSymLink());
        QCOMPARE(readAll(target), QByteArray("precious\n"));
        QCOMPARE(readAll(ro), QByteArray("keep\n"));
    }

    void modelsListsPastADamagedModel() {
        QTemporaryDir dir;
        QVERIFY(writeEditedModel(dir.filePath("aaa-damaged.safetensors"), [](nlohmann::json& j) {
            j["training"]["steps_done"] = "many";
        }));
        QFile manifest(dir.filePath("aaa-damaged.json"));
        QVERIFY(manifest.open(QIODevice::WriteOnly));
        manifest.write(R"({"summary": 42})");
        manifest.close();
        QVERIFY(writeEditedModel(dir.filePath("bbb-groups0.safetensors"), [](nlohmann::json& j) { j["network"]["groups"] = 0; }));
        QVERIFY(writeEditedModel(dir.filePath("zzz-fine.safetensors"), [](nlohmann::json&) {}));
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("DLAB_MODELS_DIR", dir.path());
        const Run r = cli({"models"}, env);
        QCOMPARE(r.code, 0);
        QVERIFY2(r.out.contains("aaa-damaged") && r.out.contains("bbb-groups0") && r.out.contains("groups is 0") &&
                     r.out.contains("zzz-fine"), qPrintable(r.out));
        // The listing went on after the damaged ones: the last model has its description line.
        QVERIFY2(r.out.mid(r.out.indexOf("zzz-fine")).contains("unet"), qPrintable(r.out));
    }

    void trainingRunsAreNotLost() {
        QTemporaryDir dir;
        const QString out = dir.filePath("run");
        const QStringList base{"train", "--dataset", "toy:moons", "--steps", "20", "--batch", "32", "--log-every", "5",
                               "--checkpoint-every", "10", "--out", out, "--device", "cpu"};
        const Run first = cli(base);
        QVERIFY2(first.code == 0, qPrintable(first.err));
        const QByteArray log = readAll(out + "/loss.csv");
        const QByteArray ckpt = readAll(out + "/checkpoint.safetensors");
        // Again without --resume: refused, nothing touched.
        const Run again = cli(base);
        QCOMPARE(again.code, 1);
        QVERIFY2(again.err.contains("--resume") && again.err.contains("--overwrite"), qPrintable(again.err));
        QCOMPARE(readAll(out + "/loss.csv"), log);
        QCOMPARE(readAll(out + "/checkpoint.safetensors"), ckpt);
        // --resume with another schedule than the run's: refused, naming it.
        const Run other = cli(base + QStringList{"--resume", "--schedule", "linear", "--steps", "30"});
        QCOMPARE(other.code, 1);
        QVERIFY2(other.err.contains("schedule.kind"), qPrintable(other.err));
        QCOMPARE(readAll(out + "/checkpoint.safetensors"), ckpt);
        // --resume alone takes the run's own settings.
        const Run more = cli({"train", "--dataset", "toy:moons", "--steps", "30", "--out", out, "--resume", "--device", "cpu"});
        QVERIFY2(more.code == 0, qPrintable(more.err));
        QVERIFY(readAll(out + "/loss.csv").startsWith(log));
        // --overwrite replaces the run on request.
        const Run fresh = cli(base + QStringList{"--overwrite"});
        QVERIFY2(fresh.code == 0, qPrintable(fresh.err));
    }

    void modelsListsTheBundledOnes() {
        const Run r = cli({"models"});
        QCOMPARE(r.code, 0);
        QVERIFY(r.out.contains("fashion-mnist-cosine"));
        QVERIFY(r.out.contains("Default model"));
        QVERIFY(r.out.contains("toy-moons"));
    }

    void failedWriteKeepsExistingFile() {
        QTemporaryDir dir;
        const QString path = dir.filePath("keep.csv");
        QFile f(path);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("precious\n");
        f.close();
        // An invalid request must not touch the existing file.
        QCOMPARE(cli({"schedule", "--timesteps", "1", "--csv", path}).code, 2);
        QVERIFY(f.open(QIODevice::ReadOnly));
        QCOMPARE(f.readAll(), QByteArray("precious\n"));
    }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
