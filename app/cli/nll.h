#pragma once
// The likelihood part of `eval`: --metrics nll computes the variational bound in bits/dim of a
// pixel model on the Fashion-MNIST test set (core/evaluation/likelihood.h) and prints its parts.
#include <string>

#include <nlohmann/json.hpp>

#include "app/args.h"
#include "core/io/model_io.h"
#include "core/runtime/result.h"

namespace dlab::app {

/// Adds the --nll-* options to `eval`.
void add_nll_options(Args& args);
/// Evaluates the bound as the options ask, prints it, writes --nll-csv; the JSON of the result.
Result<nlohmann::json> run_nll(const Args& args, const LoadedModel& model, const std::string& command);

}  // namespace dlab::app
