// libFuzzer target: a model config (the JSON a model file or a settings file carries). Parsing,
// the range checks and the bounds computed from it must never crash, divide by zero or overflow
// into a huge allocation; a settings file is applied over the defaults as `train --config` does.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/io/model_io.h"
#include "core/training/trainer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(data), size), nullptr, false);
    if (j.is_discarded()) return 0;
    if (auto config = dlab::model_config_from_json(j)) {  // validated by the parser
        (void)config->network.min_parameters();
        (void)config->network.min_activation_bytes();
    }
    dlab::ModelConfig mc;
    dlab::TrainConfig tc;
    if (j.is_object() && dlab::apply_settings_json(j, mc, tc)) (void)mc.network.validate();
    return 0;
}
