// safetensors files and model checkpoints: round trips, and clear errors for truncated, corrupt or
// mismatched files; an interrupted write never damages the previous file.
#include <csignal>
#include <fstream>

#include <sys/wait.h>
#include <unistd.h>

#include <QtTest/QtTest>

#include <torch/torch.h>

#include "core/io/manifest.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "core/runtime/version.h"
#include "core/sampling/sampler.h"

using namespace dlab;

namespace {

QByteArray readAll(const QString& p) {
    QFile f(p);
    f.open(QIODevice::ReadOnly);
    return f.readAll();
}
void writeAll(const QString& p, const QByteArray& b) {
    QFile f(p);
    f.open(QIODevice::WriteOnly | QIODevice::Truncate);
    f.write(b);
}

ModelConfig smallConfig() {
    ModelConfig c;
    c.network.base_channels = 16;
    c.network.dropout = 0;
    c.schedule.kind = ScheduleKind::Linear;
    c.prediction = PredictionType::V;
    c.dataset = "test";
    c.class_names = {"a", "b"};
    c.network.num_classes = 2;
    return c;
}

}  // namespace

class TestCheckpoint : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void safetensorsRoundTrip() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("t.safetensors").toStdString();
        TensorFile f;
        f.tensors["f32"] = at::randn({3, 4});
        f.tensors["f64"] = at::randn({2}, at::kDouble);
        f.tensors["i64"] = at::arange(5);
        f.tensors["u8"] = at::randint(255, {7}, at::kByte);
        f.tensors["bf16"] = at::randn({4}).to(at::kBFloat16);
        f.tensors["scalar"] = at::tensor(3.5);
        f.tensors["empty"] = at::zeros({0, 3});
        f.metadata["hello"] = "world";
        QVERIFY(save_safetensors(path, f).ok());
        auto back = load_safetensors(path);
        QVERIFY2(back.ok(), back.error().c_str());
        QCOMPARE(back->metadata.at("hello"), std::string("world"));
        QCOMPARE(back->tensors.size(), f.tensors.size());
        for (const auto& [k, v] : f.tensors) {
            QCOMPARE(back->tensors.at(k).scalar_type(), v.scalar_type());
            QVERIFY(at::equal(back->tensors.at(k), v));
        }
        // The layout is the published one: u64 little-endian header length, JSON, then data.
        const QByteArray raw = readAll(QString::fromStdString(path));
        quint64 n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | quint8(raw[i]);
        const QJsonDocument header = QJsonDocument::fromJson(raw.mid(8, int(n)));
        QVERIFY(header.isObject());
        QCOMPARE(header["f32"]["dtype"].toString(), QStringLiteral("F32"));
        QCOMPARE(header["f32"]["shape"].toArray().size(), 2);
        QCOMPARE(header["__metadata__"]["hello"].toString(), QStringLiteral("world"));
    }

    void badFilesGetClearErrors() {
        QTemporaryDir dir;
        const QString good = dir.filePath("good.safetensors");
        TensorFile f;
        f.tensors["w"] = at::randn({64, 64});
        QVERIFY(save_safetensors(good.toStdString(), f).ok());
        const QByteArray bytes = readAll(good);
        auto errorOf = [&](const QByteArray& content) {
            const QString p = dir.filePath("bad.safetensors");
            writeAll(p, content);
            auto r = load_safetensors(p.toStdString());
            return r.ok() ? QString() : QString::fromStdString(r.error());
        };
        QVERIFY(errorOf(bytes.left(bytes.size() - 100)).contains("truncated"));
        QVERIFY(errorOf(bytes.left(5)).contains("not a safetensors file"));
        QVERIFY(errorOf(QByteArray(8, '\xff') + "xx").contains("corrupt"));
        QByteArray garbled = bytes;
        garbled[8] = '[';  // the JSON object no longer parses
        QVERIFY(errorOf(garbled).contains("corrupt"));
        QByteArray wrongDtype = bytes;
        wrongDtype.replace("\"F32\"", "\"Q32\"");
        QVERIFY(errorOf(wrongDtype).contains("unknown dtype"));
        auto missing = load_safetensors(dir.filePath("nope.safetensors").toStdString());
        QVERIFY(QString::fromStdString(missing.error()).contains("nope.safetensors"));
    }

    void modelRoundTripGivesSameOutputs() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("m.safetensors").toStdString();
        ModelConfig cfg = smallConfig();
        cfg.schedule.snr_shift = 4;
        auto net = make_network(cfg.network).value();
        torch::NoGradGuard g;
        for (auto& p : net->parameters()) p.add_(at::randn_like(p) * 0.05);
        net->eval();
        QVERIFY(save_model(path, cfg, *net).ok());
        auto loaded = load_model(path, c10::Device(c10::kCPU));
        QVERIFY2(loaded.ok(), loaded.error().c_str());
        QVERIFY(!loaded->used_ema);
        QCOMPARE(int(loaded->config.prediction), int(PredictionType::V));
        QCOMPARE(int(loaded->config.schedule.kind), int(ScheduleKind::Linear));
        QCOMPARE(loaded->config.schedule.snr_shift, 4.0);
        // A file whose schedule shift is out of range is refused on load, naming the field.
        ModelConfig bad = cfg;
        bad.schedule.snr_shift = 0;
        const std::string bad_path = dir.filePath("bad.safetensors").toStdString();
        QVERIFY(save_model(bad_path, bad, *net).ok());
        auto refused = load_model(bad_path, c10::Device(c10::kCPU));
        QVERIFY(!refused.ok());
        QVERIFY2(QString::fromStdString(refused.error()).contains("snr_shift"), refused.error().c_str());
        QCOMPARE(loaded->config.class_names.size(), size_t(2));
        const at::Tensor x = at::randn({2, 1, 28, 28});
        const at::Tensor t = at::tensor({3, 700});
        const at::Tensor y = at::tensor({0, 2});
        QVERIFY(at::equal(net->forward(x, t, y), loaded->network->forward(x, t, y)));
    }

    void latentNormTravelsWithTheModel() {
        // A latent model trained on per-channel normalised latents keeps its shift and scale in its
        // config; load_model() puts them on the autoencoder it loads, so decode() undoes them.
        QTemporaryDir dir;
        const std::string path = dir.filePath("latent.safetensors").toStdString();
        ModelConfig cfg = smallConfig();
        cfg.network.in_channels = 4;
        cfg.network.image_size = 8;
        cfg.network.channel_mult = {1, 2};
        cfg.network.attention_resolutions = {};
        cfg.autoencoder = std::string(DLAB_SOURCE_MODELS_DIR) + "/fashion-mnist-autoencoder-quality.safetensors";
        cfg.latent_shift = {0.5, -0.25, 0.0, 1.0};
        cfg.latent_scale = {2.0, 1.0, 4.0, 0.5};
        auto net = make_network(cfg.network).value();
        QVERIFY(save_model(path, cfg, *net).ok());
        auto loaded = load_model(path, c10::Device(c10::kCPU));
        QVERIFY2(loaded.ok(), loaded.error().c_str());
        QCOMPARE(loaded->config.latent_scale, cfg.latent_scale);
        QCOMPARE(loaded->autoencoder->config().latent_shift, cfg.latent_shift);
        QCOMPARE(loaded->autoencoder->config().latent_scale, cfg.latent_scale);
        // z = (raw - shift) * scale, channel by channel; a zero latent is the raw shift.
        const at::Tensor raw = loaded->autoencoder->unscale_latents(at::zeros({1, 4, 8, 8}));
        QCOMPARE(raw[0][3][2][5].item<double>(), 1.0);
        QCOMPARE(loaded->autoencoder->scale_latents(at::ones({1, 4, 8, 8}))[0][1][0][0].item<double>(), 1.25);
        // Wrong sizes, a zero scale, or a normalisation without an autoencoder are refused by name.
        nlohmann::json j = to_json(cfg);
        j["latent_norm"]["scale"] = {1.0, 1.0};
        auto wrong = model_config_from_json(j);
        QVERIFY(!wrong && QString::fromStdString(wrong.error()).contains("latent_norm"));
        j["latent_norm"]["scale"] = {1.0, 0.0, 1.0, 1.0};
        QVERIFY(!model_config_from_json(j));
        nlohmann::json orphan = to_json(cfg);
        orphan.erase("autoencoder");
        auto refused = model_config_from_json(orphan);
        QVERIFY(!refused && QString::fromStdString(refused.error()).contains("latent_norm"));
    }

    void mismatchedFilesAreRejected() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("m.safetensors").toStdString();
        ModelConfig cfg = smallConfig();
        auto net = make_network(cfg.network).value();
        QVERIFY(save_model(path, cfg, *net).ok());
        // Same file, but its config claims a wider network: shapes no longer match.
        auto file = load_safetensors(path).value();
        ModelConfig wide = cfg;
        wide.network.base_channels = 32;
        file.metadata["dlab"] = to_json(wide).dump();
        QVERIFY(save_safetensors(path, file).ok());
        auto r = load_model(path, c10::Device(c10::kCPU));
        QVERIFY(!r.ok());
        QVERIFY2(QString::fromStdString(r.error()).contains("has shape"), r.error().c_str());
        // A tensor missing.
        file.metadata["dlab"] = to_json(cfg).dump();
        file.tensors.erase("model.conv_out.weight");
        QVERIFY(save_safetensors(path, file).ok());
        r = load_model(path, c10::Device(c10::kCPU));
        QVERIFY(QString::fromStdString(r.error()).contains("model.conv_out.weight"));
        // A wrong dtype.
        file = load_safetensors(path).value();
        file.tensors["model.conv_out.weight"] = at::zeros({1, 16, 3, 3}, at::kDouble);
        file.tensors["model.conv_out.bias"] = at::zeros({1});
        QVERIFY(save_safetensors(path, file).ok());
        r = load_model(path, c10::Device(c10::kCPU));
        QVERIFY2(QString::fromStdString(r.error()).contains("dtype"), r.error().c_str());
        // Not a model at all.
        TensorFile plain;
        plain.tensors["x"] = at::zeros({1});
        QVERIFY(save_safetensors(path, plain).ok());
        QVERIFY(QString::fromStdString(load_model(path, c10::Device(c10::kCPU)).error()).contains("not a DiffusionLab model"));
    }

    void weightsCopiedByNameOrNotAtAll() {
        torch::manual_seed(3);
        torch::nn::Sequential src(torch::nn::Linear(4, 3), torch::nn::BatchNorm1d(3), torch::nn::Linear(3, 2));
        torch::nn::Sequential dst(torch::nn::Linear(4, 3), torch::nn::BatchNorm1d(3), torch::nn::Linear(3, 2));
        {
            torch::NoGradGuard g;
            src->named_buffers()["1.running_mean"].fill_(0.25);  // buffers travel too
        }
        QVERIFY(copy_module_weights(*dst, *src, "start").ok());
        for (const auto& p : src->named_parameters()) QVERIFY(at::equal(p.value(), dst->named_parameters()[p.key()]));
        QVERIFY(at::equal(dst->named_buffers()["1.running_mean"], at::full({3}, 0.25)));
        // Another shape in the last layer: refused by name, and nothing copied, not even the first layer.
        torch::nn::Sequential wide(torch::nn::Linear(4, 3), torch::nn::BatchNorm1d(3), torch::nn::Linear(3, 5));
        const at::Tensor before = wide->named_parameters()["0.weight"].clone();
        auto st = copy_module_weights(*wide, *src, "start");
        QVERIFY(!st.ok());
        QVERIFY2(st.error().find("start") == 0 && st.error().find("2.weight") != std::string::npos &&
                     st.error().find("[5, 3]") != std::string::npos, st.error().c_str());
        QVERIFY(at::equal(wide->named_parameters()["0.weight"], before));
        // Another number of tensors.
        torch::nn::Sequential shallow(torch::nn::Linear(4, 3));
        auto count = copy_module_weights(*shallow, *src, "start");
        QVERIFY2(!count.ok() && count.error().find("tensors") != std::string::npos, count.error().c_str());
    }

    void manifestsAreChecked() {
        // A bundled manifest reads, and its figures come out as numbers.
        const std::string model = std::string(DLAB_SOURCE_MODELS_DIR) + "/latent-fashion-mnist.safetensors";
        auto m = dlab::read_manifest(model);
        QVERIFY2(m, m ? "" : m.error().c_str());
        QCOMPARE(QString::fromStdString(m->name), QStringLiteral("latent-fashion-mnist"));
        const auto fid = dlab::manifest_figure(m.value(), {"latent", "s=1", "fid"});
        QVERIFY(fid && *fid > 0 && *fid < 1000);
        QVERIFY(!dlab::manifest_figure(m.value(), {"eval"}));          // a note, not a number
        QVERIFY(!dlab::manifest_figure(m.value(), {"latent", "nope"}));
        QVERIFY(!dlab::manifest_figure(m.value(), {"eval", "deeper"}));  // through a text

        // Damaged ones: each refused with the file and the problem named.
        const std::string deep = std::string(200000, '[') + std::string(200000, ']');
        const std::pair<std::string, const char*> bad[] = {
            {"[1, 2]", "JSON object"},
            {"{\"summary\": 42}", "\"summary\" must be a text"},
            {"{\"figures\": [1]}", "\"figures\" must be an object"},
            {"{\"figures\": {\"a\": " + deep + "}}", "nested deeper"},
            {"{\"summary\": \"" + std::string(70000, 'x') + "\"}", "longer than 64 KB"},
            {std::string(size_t(dlab::kMaxManifestBytes) + 1, ' '), "at most 1024 KB"},
            {"{\"name\": ", "not valid JSON"}};
        for (const auto& [text, expected] : bad) {
            auto r = dlab::parse_manifest(text, "m.json");
            QVERIFY(!r);
            QVERIFY2(r.error().rfind("m.json: ", 0) == 0 && r.error().find(expected) != std::string::npos, r.error().c_str());
        }
        QTemporaryDir dir;
        auto missing = dlab::read_manifest(dir.path().toStdString() + "/none.safetensors");
        QVERIFY(!missing && missing.error().find("none.json") != std::string::npos);
        QVERIFY(QDir(dir.path()).mkdir(QStringLiteral("d.json")));  // a folder where the file should be
        QVERIFY(!dlab::read_manifest(dir.path().toStdString() + "/d.safetensors"));
        QCOMPARE(QString::fromStdString(dlab::manifest_path("x.pt")), QString());
    }

    void tiersPickTheFirstModel() {
        // The bundled tiers: the quality model says so in its manifest, and so does the CPU one.
        const std::string dir = DLAB_SOURCE_MODELS_DIR;
        auto q = dlab::read_manifest(dir + "/fashion-mnist-quality.safetensors");
        auto live = dlab::read_manifest(dir + "/fashion-mnist-live.safetensors");
        QVERIFY2(q && live, q ? (live ? "" : live.error().c_str()) : q.error().c_str());
        QCOMPARE(QString::fromStdString(q->tier), QStringLiteral("quality"));
        QCOMPARE(QString::fromStdString(live->tier), QStringLiteral("cpu"));
        QVERIFY(!q->sampling.empty());
        // The figure of its recommended sampling (DPM-Solver++ 50, linspace): under twice the floor (2.083).
        const auto fid = dlab::manifest_figure(q.value(), {"dpmpp2m50-linspace", "s=1", "fid"});
        QVERIFY(fid && *fid > 0 && *fid < 2 * 2.083);
        QVERIFY(!dlab::parse_manifest("{\"tier\": 1}", "m.json"));
        QVERIFY(q->recommended && q->recommended->steps >= 20 && q->recommended->guidance >= 0);
        QVERIFY(dlab::parse_timestep_spacing(q->recommended->spacing));  // the quality tier names its timesteps
        QVERIFY(!live->recommended);
        // The quality tier's latent model: its figures are read the same way, and the model names
        // the quality autoencoder, which is bundled beside it.
        auto lq = dlab::read_manifest(dir + "/latent-fashion-mnist-quality.safetensors");
        QVERIFY2(lq, lq ? "" : lq.error().c_str());
        QCOMPARE(QString::fromStdString(lq->tier), QStringLiteral("quality"));
        const auto lfid = dlab::manifest_figure(lq.value(), {"ddim200-linspace", "s=1", "fid"});
        QVERIFY(lfid && *lfid > 0 && lq->recommended);
        auto lqModel = dlab::load_model(dir + "/latent-fashion-mnist-quality.safetensors", c10::Device(c10::kCPU));
        QVERIFY2(lqModel, lqModel ? "" : lqModel.error().c_str());
        QCOMPARE(QString::fromStdString(lqModel->config.autoencoder), QStringLiteral("fashion-mnist-autoencoder-quality"));
        QVERIFY(bool(lqModel->autoencoder));
        const std::pair<const char*, const char*> badRecommended[] = {
            {R"({"recommended": 3})", "must be an object"},
            {R"({"recommended": {"steps": 10}})", "sampler name"},
            {R"({"recommended": {"sampler": "ddim", "steps": 0}})", "1..10000"},
            {R"({"recommended": {"sampler": "ddim", "steps": 2.5}})", "1..10000"},
            {R"({"recommended": {"sampler": "ddim", "steps": 20, "guidance": -1}})", "0..100"},
            {R"({"recommended": {"sampler": "ddim", "steps": 20, "spacing": "uniform"}})", "trailing, leading or linspace"},
            {R"({"recommended": {"sampler": "ddim", "steps": 20, "spacing": 2}})", "trailing, leading or linspace"}};
        for (const auto& [text, expected] : badRecommended) {
            auto r = dlab::parse_manifest(text, "m.json");
            QVERIFY2(!r && r.error().find(expected) != std::string::npos, r ? text : r.error().c_str());
        }
        auto good = dlab::parse_manifest(R"({"recommended": {"sampler": "dpmpp2m", "steps": 50}})", "m.json");
        QVERIFY(good && good->recommended && good->recommended->steps == 50 && good->recommended->guidance == 1.0);
        QVERIFY(good->recommended->spacing.empty());  // none given: the sampler's default
        auto spaced = dlab::parse_manifest(R"({"recommended": {"sampler": "ddim", "steps": 9, "spacing": "leading"}})", "m.json");
        QVERIFY(spaced && spaced->recommended && spaced->recommended->spacing == "leading");
        // The GUI's first model: the quality tier on CUDA, the live one on a CPU, else the default.
        const std::vector<std::string> all{"toy-moons", "fashion-mnist-cosine", "fashion-mnist-quality", "fashion-mnist-live"};
        QCOMPARE(dlab::first_start_model(all, true), std::string("fashion-mnist-quality"));
        QCOMPARE(dlab::first_start_model(all, false), std::string("fashion-mnist-live"));
        QCOMPARE(dlab::first_start_model({"fashion-mnist-cosine", "fashion-mnist-live"}, true), std::string("fashion-mnist-live"));
        QCOMPARE(dlab::first_start_model({"fashion-mnist-quality", "fashion-mnist-cosine"}, false),
                 std::string("fashion-mnist-cosine"));
        QCOMPARE(dlab::first_start_model({"toy-moons"}, true), std::string());
        // Every bundled name the catalog lists is found by it (the GUI's list is this one).
        std::vector<std::string> bundled;
        for (const auto& [n, p] : dlab::bundled_models()) bundled.push_back(n);
        QCOMPARE(dlab::first_start_model(bundled, true), std::string("fashion-mnist-quality"));
    }

    void interruptedWriteKeepsPreviousFile() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("ckpt.safetensors").toStdString();
        TensorFile small;
        small.tensors["w"] = at::full({10}, 1.0);
        QVERIFY(save_safetensors(path, small).ok());
        // A child process writes a large file and is killed part-way through.
        const pid_t pid = fork();
        if (pid == 0) {
            TensorFile big;
            big.tensors["w"] = at::zeros({200 * 1000 * 1000 / 4});
            for (;;) save_safetensors(path, big);
        }
        QTest::qWait(400);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        auto back = load_safetensors(path);
        QVERIFY2(back.ok(), back.error().c_str());
        const at::Tensor w = back->tensors.at("w");
        // Either the old file or a complete new one, never a partial one.
        QVERIFY(w.numel() == 10 || w.numel() == 50 * 1000 * 1000);
    }
};

QTEST_GUILESS_MAIN(TestCheckpoint)
#include "test_checkpoint.moc"
