#pragma once
// Shared by eval, sweep, trilemma and compare-schedules: the sample-quality metrics of one sample
// set against a reference's features, and their table formatting.
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "core/evaluation/feature_net.h"
#include "core/evaluation/metrics.h"

namespace dlab::app {

/// The asked metrics ("fid", "sfid", "is", "precision", "recall", "agreement", "diversity") of
/// `fake` against `real`; `labels` are the requested classes (agreement, diversity); `timing`
/// gets the seconds spent per metric.
nlohmann::json compute_metrics(const std::set<std::string>& metrics, const Features& fake, const at::Tensor& labels,
                               const Features& real, const FeatureStats& real_stats, const FeatureStats* real_spatial_stats,
                               std::map<std::string, double>& timing);

/// row[key] right-aligned in `width` with `prec` decimals, or "-" when absent.
std::string fmt(const nlohmann::json& row, const char* key, int width, int prec);

}  // namespace dlab::app
