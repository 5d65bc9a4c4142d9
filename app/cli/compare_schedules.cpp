// diffusionlab-cli compare-schedules: cosine against linear, settled by an experiment a user can
// repeat. The same network, data and budget for every schedule, several seeds each; every run is
// scored with FID / precision / recall / class agreement at a few guidance scales, and its
// per-timestep noise-prediction loss and bound terms are measured on test images (where does a
// schedule spend its training steps?). Three phases, each resumable and each runnable for one run
// alone (--only), so that a script can train and evaluate the runs side by side on one GPU:
//   train:  OUT/<schedule>-seed<k>/ (the trainer's run folder; done.json when finished)
//   eval:   OUT/<schedule>-seed<k>/eval.json
//   report: the table (mean and spread over seeds) and the CSVs.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "app/cli/cli_util.h"
#include "app/cli/commands.h"
#include "app/cli/eval_common.h"
#include "core/data/datasets.h"
#include "core/evaluation/classifier.h"
#include "core/evaluation/feature_net.h"
#include "core/evaluation/likelihood.h"
#include "core/evaluation/metrics.h"
#include "core/io/atomic_file.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/runtime/runtime.h"
#include "core/sampling/generate.h"
#include "core/training/trainer.h"

namespace dlab::app {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

struct RunId {
    std::string schedule;
    int64_t seed = 0;
    std::string name() const { return schedule + "-seed" + std::to_string(seed); }
};

Result<json> read_json(const std::string& path) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) return Error{path + ": " + ec.message()};
    if (size > (64u << 20)) return Error{path + " is larger than 64 MB"};
    std::ifstream in(path);
    const json j = json::parse(in, nullptr, false);
    if (j.is_discarded()) return Error{path + " is not valid JSON"};
    return j;
}

std::vector<std::string> split(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

double mean_of(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / double(v.size());
}

// Sample standard deviation (0 for fewer than two values).
double sd_of(const std::vector<double>& v) {
    if (v.size() < 2) return 0;
    const double m = mean_of(v);
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / double(v.size() - 1));
}

}  // namespace

int cmd_compare_schedules(const std::vector<std::string>& argv) {
    Args args("compare-schedules");
    args.option("schedules", "noise schedules to compare", "linear,cosine")
        .option("seeds", "training seeds per schedule", "1,2,3")
        .option("out", "folder of the runs", "runs/compare-schedules")
        .option("phase", "train, eval, report or all", "all")
        .option("only", "one run, as SCHEDULE:SEED (to run the runs side by side from a script)")
        .option("steps", "training steps of every run (the budget)", "3000")
        .option("batch", "training batch", "128")
        .option("lr", "learning rate", "3e-4")
        .option("warmup", "warm-up steps", "500")
        .option("ema", "EMA decay", "0.9995")
        .option("size", "network size preset: tiny, small (the bundled default's) or large", "small")
        .option("max-minutes", "train: stop (with a checkpoint) after this much wall time; run again to continue", "0")
        .option("count", "eval: samples per guidance scale (and reference images)", "10000")
        .option("scales", "eval: classifier-free guidance scales", "0,1,2")
        .option("sampling-steps", "eval: DDIM steps", "50")
        .option("eval-batch", "eval: samples per batch", "1000")
        .option("loss-images", "eval: test images for the per-timestep loss and bound", "1000")
        .option("loss-timesteps", "eval: timesteps of the per-timestep curves: 0 for all T (exact), else t = 0 plus one per geometric range of 1..T-1", "0")
        .option("classifier", "eval: the feature classifier", "fashion-mnist-classifier")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .option("csv", "report: one row per run and scale")
        .option("curves-csv", "report: one row per run and timestep (loss, bound term, log-SNR)")
        .option("json", "report: the summary as JSON")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "compare-schedules [--phase all] [--steps N] [--seeds 1,2,3] [OPTIONS]"); rc >= 0)
        return rc;
    const std::string phase = args.get("phase");
    if (phase != "train" && phase != "eval" && phase != "report" && phase != "all")
        return usage("compare-schedules: --phase must be train, eval, report or all");
    auto seeds = args.get_int_list("seeds", 0, 1000000);
    auto steps = args.get_int("steps", 1, 100000000);
    auto batch = args.get_int("batch", 1, 100000);
    auto lr = args.get_double("lr", 1e-8, 1.0);
    auto warmup = args.get_int("warmup", 0, 100000000);
    auto ema = args.get_double("ema", 0.0, 1.0);
    auto max_minutes = args.get_double("max-minutes", 0.0, 1e7);
    auto count = args.get_int("count", 10, 1000000);
    auto scales = args.get_double_list("scales", -100.0, 1000.0);
    auto sampling_steps = args.get_int("sampling-steps", 1, 10000);
    auto eval_batch = args.get_int("eval-batch", 1, 100000);
    auto loss_images = args.get_int("loss-images", 2, 10000);
    auto loss_timesteps = args.get_int("loss-timesteps", 0, 100000);
    for (const std::string* e : {&seeds.error(), &steps.error(), &batch.error(), &warmup.error(), &count.error(),
                                 &sampling_steps.error(), &eval_batch.error(), &loss_images.error(), &loss_timesteps.error()})
        if (!e->empty()) return usage(*e);
    for (const std::string* e : {&lr.error(), &ema.error(), &max_minutes.error(), &scales.error()})
        if (!e->empty()) return usage(*e);
    std::vector<RunId> runs;
    for (const std::string& name : split(args.get("schedules"))) {
        if (!parse_schedule_kind(name)) return usage("compare-schedules: unknown schedule '" + name + "'");
        for (int64_t s : seeds.value()) runs.push_back({name, s});
    }
    if (runs.empty()) return usage("compare-schedules: no schedules given");
    if (args.has("only")) {
        const std::string only = args.get("only");
        const auto colon = only.find(':');
        const std::string sched = only.substr(0, colon);
        std::vector<RunId> picked;
        for (const RunId& r : runs)
            if (r.schedule == sched && colon != std::string::npos && std::to_string(r.seed) == only.substr(colon + 1)) picked.push_back(r);
        if (picked.empty()) return usage("compare-schedules: --only " + only + " names none of the runs (SCHEDULE:SEED)");
        runs = picked;
    }
    const std::string out = args.get("out");
    auto device = select_device(args.get("device"));
    if (!device) return failure("compare-schedules: " + device.error());
    std::error_code ec;
    fs::create_directories(out, ec);
    if (ec) return failure("compare-schedules: cannot create " + out + ": " + ec.message());

    // ---- train: every run from the same settings but its schedule and seed.
    if (phase == "train" || phase == "all") {
        auto data = load_fashion_mnist(fashion_mnist_dir(), true);
        if (!data) return failure("compare-schedules: " + data.error());
        for (const RunId& run : runs) {
            const std::string dir = out + "/" + run.name();
            if (fs::exists(dir + "/done.json")) {
                std::printf("train %s: done earlier\n", run.name().c_str());
                continue;
            }
            ModelConfig mc;
            shape_network_for_data(data.value(), mc.network);
            if (auto st = apply_size_preset(args.get("size"), mc.network); !st) return usage("compare-schedules: " + st.error());
            mc.schedule.kind = *parse_schedule_kind(run.schedule);
            TrainConfig tc;
            tc.steps = steps.value();
            tc.batch = batch.value();
            tc.lr = lr.value();
            tc.warmup = warmup.value();
            tc.ema_decay = ema.value();
            tc.seed = uint64_t(run.seed);
            tc.log_every = 100;
            tc.checkpoint_every = 1000;
            std::atomic<bool> stop{false};
            const auto started = std::chrono::steady_clock::now();
            const double budget_s = max_minutes.value() * 60.0;
            TrainHooks hooks;
            hooks.cancel = &stop;
            hooks.on_progress = [&](const TrainProgress& p) {
                if (budget_s > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() > budget_s)
                    stop = true;
                if (p.step % 500 == 0 || p.step == p.total)
                    std::fprintf(stderr, "%s: step %lld/%lld loss %.5f %.0f img/s\n", run.name().c_str(), (long long)p.step,
                                 (long long)p.total, p.loss, p.images_per_s);
            };
            const TrainStart start = holds_training_run(dir) ? TrainStart::Resume : TrainStart::New;
            auto r = train(mc, tc, data.value(), device.value(), dir, start, hooks);
            if (!r) return failure("compare-schedules: " + run.name() + ": " + r.error());
            if (r->cancelled) {
                std::printf("train %s: stopped at step %lld (time limit); run again to continue\n", run.name().c_str(),
                            (long long)r->steps_done);
                continue;
            }
            const json done = {{"steps", r->steps_done}, {"seconds", r->seconds}, {"images_per_s", r->images_per_s},
                               {"device", device->str()}};
            if (auto st = write_file_atomic(dir + "/done.json", done.dump(2)); !st) return failure("compare-schedules: " + st.error());
            std::printf("train %s: %lld steps, %.0f s, %.0f img/s\n", run.name().c_str(), (long long)r->steps_done, r->seconds,
                        r->images_per_s);
            std::fflush(stdout);
        }
    }

    // ---- eval: sample quality per scale and the per-timestep curves of every finished run.
    if (phase == "eval" || phase == "all") {
        const int64_t N = count.value();
        auto cpath = resolve_model(args.get("classifier"));
        if (!cpath) return failure("compare-schedules: classifier: " + cpath.error());
        auto clf = load_classifier(cpath.value(), device.value());
        if (!clf) return failure("compare-schedules: " + clf.error());
        auto fnet = classifier_feature_net(clf.value(), device.value(), "Fashion-MNIST classifier " + cpath.value());
        auto test = load_fashion_mnist(fashion_mnist_dir(), false);
        if (!test) return failure("compare-schedules: " + test.error());
        torch::NoGradGuard ng;
        const Features real = fnet->extract(test->x.narrow(0, 0, std::min<int64_t>(N, test->x.size(0))));
        const FeatureStats real_stats = feature_stats(real.pooled);
        const std::set<std::string> metrics{"fid", "precision", "recall", "agreement"};
        std::map<std::string, double> timing;
        for (const RunId& run : runs) {
            const std::string dir = out + "/" + run.name();
            if (!fs::exists(dir + "/done.json")) {
                std::printf("eval %s: not trained yet\n", run.name().c_str());
                continue;
            }
            // eval.json grows a scale at a time ("complete" once the curves are in): a stopped
            // evaluation continues with the scales it lacks.
            const std::string eval_path = dir + "/eval.json";
            json result = {{"schedule", run.schedule}, {"seed", run.seed}, {"count", N}, {"rows", json::array()},
                           {"sampler", "ddim"}, {"sampling_steps", sampling_steps.value()}, {"complete", false}};
            if (fs::exists(eval_path)) {
                auto earlier = read_json(eval_path);
                if (!earlier) return failure("compare-schedules: " + earlier.error());
                if (earlier.value().value("complete", false)) {
                    std::printf("eval %s: done earlier\n", run.name().c_str());
                    continue;
                }
                if (earlier.value().value("count", int64_t(0)) != N || earlier.value().value("sampling_steps", int64_t(0)) != sampling_steps.value() ||
                    !earlier.value().contains("rows") || !earlier.value()["rows"].is_array())
                    return failure("compare-schedules: " + eval_path + " was started with another N or step count (or is damaged); move it away to start again");
                result["rows"] = earlier.value()["rows"];
            }
            auto has_scale = [&](double s) {
                for (const json& row : result["rows"])
                    if (row.contains("scale") && row["scale"].is_number() && row["scale"].get<double>() == s) return true;
                return false;
            };
            auto model = load_model(dir + "/model.safetensors", device.value());
            if (!model) return failure("compare-schedules: " + model.error());
            const int64_t C = model->config.network.num_classes;
            const at::Tensor target = at::arange(N, at::kLong).remainder(C > 0 ? C : 10);
            for (double s : scales.value()) {
                if (has_scale(s)) continue;
                GenerateRequest req;
                req.sampler.kind = SamplerKind::Ddim;
                req.sampler.steps = sampling_steps.value();
                req.labels = C > 0 ? target : at::Tensor();
                req.count = N;
                req.seed = 0;
                req.batch = eval_batch.value();
                req.guidance = s;
                auto x = generate(model.value(), req);
                if (!x) return failure("compare-schedules: " + run.name() + ": " + x.error());
                json row = compute_metrics(metrics, fnet->extract(x.value().clamp(-1, 1)), target, real, real_stats, nullptr, timing);
                row["scale"] = s;
                std::printf("eval %s s=%g: FID %.2f precision %.3f recall %.3f agreement %.3f\n", run.name().c_str(), s,
                            row.value("fid", 0.0), row.value("precision", 0.0), row.value("recall", 0.0),
                            row.value("agreement", 0.0));
                std::fflush(stdout);
                result["rows"].push_back(row);
                if (auto st = write_file_atomic(eval_path, result.dump(1)); !st) return failure("compare-schedules: " + st.error());
            }
            // The per-timestep curves on the same test images and timesteps for every run.
            BoundOptions bo;
            bo.strata = loss_timesteps.value();
            bo.batch = eval_batch.value();
            bo.seed = 0;
            const int64_t n = std::min<int64_t>(loss_images.value(), test->x.size(0));
            auto b = model_bound(model.value(), test->x.narrow(0, 0, n), test->labels.narrow(0, 0, n), bo);
            if (!b) return failure("compare-schedules: " + run.name() + ": " + b.error());
            const NoiseSchedule sched = NoiseSchedule::create(model->config.schedule).value();
            std::vector<double> log_snr;
            for (int64_t t : b->grid.timesteps) log_snr.push_back(sched.log_snr()[t].item<double>());
            result["bpd"] = b->bpd;
            result["bpd_se"] = b->bpd_se;
            result["bpd_exact"] = b->grid.exact;
            result["curve"] = {{"t", b->grid.timesteps}, {"weight", b->grid.weights}, {"log_snr", log_snr},
                               {"eps_mse", b->mse_mean}, {"term_bpd", b->term_mean}};
            result["complete"] = true;
            std::printf("eval %s: bound %.3f +- %.3f bits/dim (%lld test images)\n", run.name().c_str(), b->bpd, b->bpd_se,
                        (long long)n);
            if (auto st = write_file_atomic(dir + "/eval.json", result.dump(1)); !st) return failure("compare-schedules: " + st.error());
        }
    }

    // ---- report: mean and spread over seeds, per schedule and scale.
    if (phase == "report" || phase == "all") {
        std::map<std::string, std::map<double, std::map<std::string, std::vector<double>>>> table;
        std::map<std::string, std::vector<double>> bpd;
        std::ostringstream csv, curves;
        csv << "schedule,seed,scale,fid,precision,recall,agreement,bpd\n";
        curves << "schedule,seed,t,log_snr,eps_mse,term_bpd\n";
        csv.precision(8);
        curves.precision(8);
        int found = 0;
        for (const RunId& run : runs) {
            const std::string path = out + "/" + run.name() + "/eval.json";
            if (!fs::exists(path)) continue;
            auto j = read_json(path);
            if (!j) return failure("compare-schedules: " + j.error());
            if (!j.value().value("complete", false)) {
                std::printf("report: %s is not fully evaluated yet (run the eval phase again)\n", run.name().c_str());
                continue;
            }
            try {
                ++found;
                const double b = j.value()["bpd"].get<double>();
                bpd[run.schedule].push_back(b);
                for (const json& row : j.value()["rows"]) {
                    const double s = row["scale"].get<double>();
                    for (const char* k : {"fid", "precision", "recall", "agreement"})
                        table[run.schedule][s][k].push_back(row[k].get<double>());
                    csv << run.schedule << ',' << run.seed << ',' << s << ',' << row["fid"].get<double>() << ','
                        << row["precision"].get<double>() << ',' << row["recall"].get<double>() << ','
                        << row["agreement"].get<double>() << ',' << b << '\n';
                }
                const json& c = j.value()["curve"];
                for (size_t k = 0; k < c["t"].size(); ++k)
                    curves << run.schedule << ',' << run.seed << ',' << c["t"][k].get<int64_t>() << ',' << c["log_snr"][k].get<double>()
                           << ',' << c["eps_mse"][k].get<double>() << ',' << c["term_bpd"][k].get<double>() << '\n';
            } catch (const std::exception& e) {
                return failure("compare-schedules: " + path + ": missing or wrong field (" + std::string(e.what()) + ")");
            }
        }
        if (found == 0) return failure("compare-schedules: no evaluated runs in " + out + " (run the train and eval phases)");
        std::printf("\ncompare-schedules: %d evaluated runs in %s; mean +- sd over seeds (DDIM %lld, N = %lld per scale)\n", found,
                    out.c_str(), (long long)sampling_steps.value(), (long long)count.value());
        std::printf("%-10s %6s %5s %16s %16s %16s %16s\n", "schedule", "scale", "runs", "FID", "precision", "recall", "agreement");
        json summary = {{"out", out}, {"rows", json::array()}, {"bpd", json::object()}};
        for (const auto& [sched, by_scale] : table) {
            for (const auto& [s, m] : by_scale) {
                char cells[4][40];
                int i = 0;
                json row = {{"schedule", sched}, {"scale", s}, {"runs", m.at("fid").size()}};
                for (const char* k : {"fid", "precision", "recall", "agreement"}) {
                    const auto& v = m.at(k);
                    std::snprintf(cells[i++], sizeof cells[0], k[0] == 'f' ? "%7.2f +- %5.2f" : "%6.3f +- %5.3f", mean_of(v), sd_of(v));
                    row[k] = mean_of(v);
                    row[std::string(k) + "_sd"] = sd_of(v);
                }
                std::printf("%-10s %6g %5zu %16s %16s %16s %16s\n", sched.c_str(), s, m.at("fid").size(), cells[0], cells[1],
                            cells[2], cells[3]);
                summary["rows"].push_back(row);
            }
        }
        for (const auto& [sched, v] : bpd) {
            std::printf("%-10s bound on test images: %.3f +- %.3f bits/dim (sd over seeds)\n", sched.c_str(), mean_of(v), sd_of(v));
            summary["bpd"][sched] = {{"mean", mean_of(v)}, {"sd", sd_of(v)}};
        }
        if (args.has("csv"))
            if (auto st = write_file_atomic(args.get("csv"), csv.str()); !st) return failure("compare-schedules: " + st.error());
        if (args.has("curves-csv"))
            if (auto st = write_file_atomic(args.get("curves-csv"), curves.str()); !st) return failure("compare-schedules: " + st.error());
        if (args.has("json"))
            if (auto st = write_file_atomic(args.get("json"), summary.dump(2)); !st) return failure("compare-schedules: " + st.error());
    }
    return 0;
}

}  // namespace dlab::app
