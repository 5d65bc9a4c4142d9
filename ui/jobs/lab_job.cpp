#include "ui/jobs/lab_job.h"

#include "core/io/model_catalog.h"
#include "core/runtime/runtime.h"

namespace dlab::ui {

Result<std::shared_ptr<LoadedModel>> loadJobModel(const std::string& model, const std::string& device) {
    auto d = select_device(device);
    if (!d) return Error{d.error()};
    auto path = resolve_model(model);
    if (!path) return Error{path.error()};
    auto loaded = load_model(path.value(), d.value());
    if (!loaded) return Error{loaded.error()};
    return std::make_shared<LoadedModel>(std::move(loaded.value()));
}

}  // namespace dlab::ui
