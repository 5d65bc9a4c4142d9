// diffusionlab-cli train-classifier: the Fashion-MNIST classifier (clean or noise-aware)
#include "app/cli/commands.h"

#include <chrono>
#include <cstdio>
#include <iostream>

#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/data/datasets.h"
#include "core/evaluation/classifier.h"
#include "core/forward/schedule.h"
#include "core/guidance/noisy_classifier.h"
#include "core/io/safetensors.h"
#include "core/runtime/runtime.h"

namespace dlab::app {

int cmd_train_classifier(const std::vector<std::string>& argv) {
    Args args("train-classifier");
    args.option("out", "the classifier file (.safetensors)")
        .flag("noisy", "a noise-aware classifier p(y | x_t, t) for classifier guidance (else a clean one for metrics)")
        .option("epochs", "clean: passes over the training set", "8")
        .option("steps", "noisy: optimisation steps", "6000")
        .option("schedule", "noisy: the noise schedule it learns (linear, cosine, ...)", "cosine")
        .option("base-channels", "noisy: encoder channels at full resolution", "32")
        .option("batch", "batch size", "128")
        .option("lr", "learning rate (default 1e-3 clean, 3e-4 noisy)")
        .option("seed", "random seed", "0")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "train-classifier --out FILE [--noisy] [OPTIONS]"); rc >= 0) return rc;
    if (!args.has("out")) return usage("train-classifier: --out FILE is required");
    const bool noisy = args.given("noisy");
    auto epochs = args.get_int("epochs", 1, 1000);
    auto steps = args.get_int("steps", 1, 10000000);
    auto base = args.get_int("base-channels", 8, 512);
    auto batch = args.get_int("batch", 1, 65536);
    Result<double> lr = args.given("lr") ? args.get_double("lr", 1e-8, 1.0) : Result<double>(noisy ? 3e-4 : 1e-3);
    auto seed = args.get_int("seed", 0, INT64_MAX);
    for (const std::string* e : {&epochs.error(), &steps.error(), &base.error(), &batch.error(), &lr.error(), &seed.error()})
        if (!e->empty()) return usage(*e);
    const auto sk = parse_schedule_kind(args.get("schedule"));
    if (!sk) return usage("train-classifier: unknown schedule '" + args.get("schedule") + "'");
    auto device = select_device(args.get("device"));
    if (!device) return failure("train-classifier: " + device.error());
    auto train = load_fashion_mnist(fashion_mnist_dir(), true);
    if (!train) return failure("train-classifier: " + train.error());
    auto test = load_fashion_mnist(fashion_mnist_dir(), false);
    if (!test) return failure("train-classifier: " + test.error());
    auto log = [](const std::string& line) { std::cerr << line << "\n"; };
    if (noisy) {
        NoisyClassifierConfig cc;
        cc.base_channels = base.value();
        cc.schedule.kind = *sk;
        cc.num_classes = train->num_classes;
        NoisyClassifierTraining tr;
        tr.steps = steps.value();
        tr.batch = batch.value();
        tr.lr = lr.value();
        tr.seed = static_cast<uint64_t>(seed.value());
        const auto t0 = std::chrono::steady_clock::now();
        auto net = train_noisy_classifier(cc, tr, train.value(), device.value(), log);
        if (!net) return failure("train-classifier: " + net.error());
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const std::vector<int64_t> ts = {0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999};
        auto acc = noisy_accuracy_by_t(net.value(), test.value(), ts, device.value());
        nlohmann::json report{{"train_seconds", secs}, {"steps", tr.steps}, {"batch", tr.batch},
                              {"device", device->str()}, {"test_accuracy_by_t", nlohmann::json::object()}};
        std::cout << "test accuracy by t (10000 test images, one noise draw each)\n";
        for (auto [t, a] : acc) {
            report["test_accuracy_by_t"][std::to_string(t)] = a;
            std::cout << "  t=" << t << "  " << a << "\n";
        }
        if (auto st = save_noisy_classifier(args.get("out"), net.value(), report); !st)
            return failure("train-classifier: " + st.error());
        return 0;
    }
    auto net = train_classifier(train.value(), test.value(), epochs.value(), batch.value(), lr.value(),
                                static_cast<uint64_t>(seed.value()), device.value(), log);
    if (!net) return failure("train-classifier: " + net.error());
    const double acc = classifier_accuracy(net.value(), test.value(), device.value());
    std::cout << "test accuracy " << acc << "\n";
    if (auto st = save_classifier(args.get("out"), net.value(), acc); !st) return failure("train-classifier: " + st.error());
    return 0;
}

}  // namespace dlab::app
