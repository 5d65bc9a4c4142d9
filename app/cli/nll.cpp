#include "app/cli/nll.h"

#include <cstdio>
#include <sstream>

#include "core/data/datasets.h"
#include "core/evaluation/likelihood.h"
#include "core/io/atomic_file.h"

namespace dlab::app {

void add_nll_options(Args& args) {
    args.option("nll-count", "--metrics nll: test images in the bound (the first N of the test set)", "1000")
        .option("nll-strata", "--metrics nll: 0 for every timestep (exact), else L_0 plus one timestep from each of K ranges", "0")
        .option("nll-variance", "--metrics nll: model (learned when the network has it, else small), small (beta~) or large (beta)", "model")
        .option("nll-guidance", "--metrics nll: classifier-free scale with the test labels (1: the conditional model)", "1")
        .option("nll-csv", "--metrics nll: write t, weight, L_t (bits/dim) and the noise-prediction MSE per timestep")
        .flag("nll-unconditional", "--metrics nll: the null class for every image (the model's p(x) rather than p(x | y))")
        .flag("nll-no-clip", "--metrics nll: do not clamp the predicted x0 to [-1, 1] (the samplers do)");
}

Result<nlohmann::json> run_nll(const Args& args, const LoadedModel& model, const std::string& command) {
    auto count = args.get_int("nll-count", 2, 1000000);
    if (!count) return Error{count.error()};
    auto strata = args.get_int("nll-strata", 0, 1000000);
    if (!strata) return Error{strata.error()};
    auto guidance = args.get_double("nll-guidance", -100.0, 1000.0);
    if (!guidance) return Error{guidance.error()};
    auto batch = args.get_int("batch", 1, 100000);
    if (!batch) return Error{batch.error()};
    auto seed = args.get_int("seed", 0, INT64_MAX);
    if (!seed) return Error{seed.error()};
    const auto variance = parse_bound_variance(args.get("nll-variance"));
    if (!variance) return Error{"--nll-variance must be model, small or large (not '" + args.get("nll-variance") + "')"};
    if (args.get("reference") != "fashion-mnist-test")
        return Error{"--metrics nll is measured on the Fashion-MNIST test set (--reference fashion-mnist-test)"};
    auto test = load_fashion_mnist(fashion_mnist_dir(), false);
    if (!test) return Error{test.error()};
    const int64_t n = std::min<int64_t>(count.value(), test->x.size(0));
    BoundOptions o;
    o.strata = strata.value();
    o.variance = *variance;
    o.clip_x0 = !args.has("nll-no-clip");
    o.guidance = guidance.value();
    o.unconditional = args.has("nll-unconditional");
    o.batch = batch.value();
    o.seed = uint64_t(seed.value());
    int last_tenth = -1;
    o.on_progress = [&](int64_t done, int64_t all) {
        const int tenth = int(10 * done / all);
        if (tenth != last_tenth) std::fprintf(stderr, "\r%s: bits/dim %d%%", command.c_str(), 10 * tenth);
        last_tenth = tenth;
        if (done == all) std::fprintf(stderr, "\n");
    };
    auto r = model_bound(model, test->x.narrow(0, 0, n), test->labels.narrow(0, 0, n), o);
    if (!r) return Error{r.error()};
    const int64_t T = int64_t(r->grid.timesteps.size()) - 1;
    const std::string steps = r->grid.exact ? "all " + std::to_string(T + 1) + " timesteps (exact sum)"
                                            : "L_0 + " + std::to_string(T) + " stratified timesteps (estimate)";
    std::printf("bits/dim (variational bound): %.4f +- %.4f  (N = %lld test images; %s; %s variance; %s; x0 %s)\n", r->bpd,
                r->bpd_se, (long long)n, steps.c_str(), r->variance.c_str(), r->conditioning.c_str(),
                o.clip_x0 ? "clipped" : "not clipped");
    std::printf("  L_T (prior) %.5f, L_0 (decoder) %.4f, sum of L_t (t >= 1) %.4f; %.1f s on %s\n", r->prior, r->decoder,
                r->diffusion, r->seconds, model.network->parameters().front().device().str().c_str());
    nlohmann::json j = {{"bpd", r->bpd},           {"bpd_se", r->bpd_se},         {"count", n},
                        {"prior", r->prior},       {"decoder", r->decoder},       {"diffusion", r->diffusion},
                        {"exact", r->grid.exact},  {"timesteps", r->grid.timesteps}, {"weights", r->grid.weights},
                        {"term_bpd", r->term_mean}, {"mse", r->mse_mean},          {"variance", r->variance},
                        {"conditioning", r->conditioning}, {"clip_x0", o.clip_x0}, {"seconds", r->seconds}};
    if (args.has("nll-csv")) {
        std::ostringstream csv;
        csv << "t,weight,term_bits_per_dim,eps_mse\n";
        csv.precision(9);
        for (size_t k = 0; k < r->grid.timesteps.size(); ++k)
            csv << r->grid.timesteps[k] << ',' << r->grid.weights[k] << ',' << r->term_mean[k] << ',' << r->mse_mean[k] << '\n';
        if (auto st = write_file_atomic(args.get("nll-csv"), csv.str()); !st) return Error{st.error()};
    }
    return j;
}

}  // namespace dlab::app
