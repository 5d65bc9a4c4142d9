#include "app/cli/eval_common.h"

#include <chrono>
#include <cstdio>

namespace dlab::app {

namespace {
using MetricClock = std::chrono::steady_clock;
double metric_seconds(MetricClock::time_point t0) { return std::chrono::duration<double>(MetricClock::now() - t0).count(); }
}  // namespace

// All metrics of one sample set against the reference; `timing` gets seconds per metric.
nlohmann::json compute_metrics(const std::set<std::string>& metrics, const Features& fake, const at::Tensor& labels,
                     const Features& real, const FeatureStats& real_stats, const FeatureStats* real_spatial_stats,
                     std::map<std::string, double>& timing) {
    nlohmann::json row;
    auto timed = [&](const std::string& name, auto&& fn) {
        if (!metrics.count(name)) return;
        const auto t0 = MetricClock::now();
        fn();
        timing[name] += metric_seconds(t0);
    };
    timed("fid", [&] { row["fid"] = frechet_distance(feature_stats(fake.pooled), real_stats); });
    timed("sfid", [&] {
        if (fake.spatial.defined() && real_spatial_stats)
            row["sfid"] = frechet_distance(feature_stats(fake.spatial), *real_spatial_stats);
    });
    timed("is", [&] {
        if (!fake.logits.defined()) return;
        const auto is = inception_score(fake.logits, 10);
        row["is"] = is.mean;
        row["is_std"] = is.std;
    });
    if (metrics.count("precision") || metrics.count("recall")) {
        const auto t0 = MetricClock::now();
        const auto pr = precision_recall(real.pooled, fake.pooled, 3);
        timing["precision+recall"] += metric_seconds(t0);
        if (metrics.count("precision")) row["precision"] = pr.precision;
        if (metrics.count("recall")) row["recall"] = pr.recall;
    }
    timed("agreement", [&] {
        if (fake.logits.defined() && labels.defined()) row["agreement"] = class_agreement(fake.logits, labels);
    });
    timed("diversity", [&] {
        row["diversity"] = mean_pairwise_distance(fake.pooled, labels.defined() ? labels : at::zeros({fake.pooled.size(0)}, at::kLong));
    });
    return row;
}

std::string fmt(const nlohmann::json& row, const char* key, int width, int prec) {
    char buf[64];
    if (!row.contains(key)) {
        std::snprintf(buf, sizeof buf, "%*s", width, "-");
    } else {
        std::snprintf(buf, sizeof buf, "%*.*f", width, prec, row[key].get<double>());
    }
    return buf;
}

}  // namespace dlab::app
