// diffusionlab-cli schedule: print or write a noise schedule (t, beta, alpha_bar, snr)
#include "app/cli/commands.h"

#include <cstdio>
#include <iostream>
#include <string>

#include <ATen/ATen.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/forward/schedule.h"
#include "core/io/atomic_file.h"

namespace dlab::app {

int cmd_schedule(const std::vector<std::string>& argv) {
    Args args("schedule");
    args.option("schedule", "linear, cosine, scaled-linear or sigmoid", "cosine")
        .option("timesteps", "number of diffusion steps T", "1000")
        .option("beta-start", "first beta (linear, sigmoid)")
        .option("beta-end", "last beta (linear, sigmoid)")
        .flag("zero-terminal-snr", "rescale so that alpha_bar at T-1 is 0 (Lin et al. 2024)")
        .option("snr-shift", "multiply SNR(t) at every t by this (Hoogeboom et al. 2023's shifted schedules)", "1")
        .option("csv", "write t,beta,alpha_bar,snr to FILE, or '-' for standard output")
        .flag("help", "show this help");
    if (auto st = args.parse(argv); !st) return usage(st.error());
    if (args.has("help")) {
        std::cout << "Usage: diffusionlab-cli schedule [OPTIONS]\n" << args.help();
        return 0;
    }
    ScheduleConfig cfg;
    const auto kind = parse_schedule_kind(args.get("schedule"));
    if (!kind) {
        return usage("schedule: unknown schedule '" + args.get("schedule") +
                           "' (expected linear, cosine, scaled-linear or sigmoid)");
    }
    cfg.kind = *kind;
    auto T = args.get_int("timesteps", 2, 100000);
    if (!T) return usage(T.error());
    cfg.timesteps = T.value();
    if (args.has("beta-start")) {
        auto b = args.get_double("beta-start", 0.0, 1.0);
        if (!b) return usage(b.error());
        cfg.beta_start = b.value();
    }
    if (args.has("beta-end")) {
        auto b = args.get_double("beta-end", 0.0, 1.0);
        if (!b) return usage(b.error());
        cfg.beta_end = b.value();
    }
    cfg.zero_terminal_snr = args.has("zero-terminal-snr");
    auto shift = args.get_double("snr-shift", kMinSnrShift, kMaxSnrShift);
    if (!shift) return usage(shift.error());
    cfg.snr_shift = shift.value();
    auto schedule = NoiseSchedule::create(cfg);
    if (!schedule) return usage("schedule: " + schedule.error());

    const at::Tensor beta = schedule->betas(), abar = schedule->alpha_bars(), snr = schedule->snr();
    auto row = [&](int64_t t) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%lld,%.17g,%.17g,%.17g\n", static_cast<long long>(t),
                      beta[t].item<double>(), abar[t].item<double>(), snr[t].item<double>());
        return std::string(buf);
    };
    if (!args.has("csv")) {
        std::cout << "schedule " << schedule_summary(cfg) << ", T = " << cfg.timesteps << "\n"
                  << "t,beta,alpha_bar,snr\n";
        const int64_t n = cfg.timesteps;
        for (int64_t t : {int64_t{0}, n / 4, n / 2, 3 * n / 4, n - 1}) std::cout << row(t);
        std::cout << "(use --csv FILE or --csv - for every row)\n";
        return 0;
    }
    std::string csv = "t,beta,alpha_bar,snr\n";
    for (int64_t t = 0; t < cfg.timesteps; ++t) csv += row(t);
    const std::string target = args.get("csv");
    if (target == "-") {
        std::cout << csv;
        return 0;
    }
    if (auto st = write_file_atomic(target, csv); !st) {
        return failure("schedule: " + st.error());
    }
    std::cerr << "wrote " << cfg.timesteps << " rows to " << target << "\n";
    return 0;
}

}  // namespace dlab::app
