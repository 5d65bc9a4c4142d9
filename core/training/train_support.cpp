#include "core/training/train_support.h"

#include <charconv>
#include <cmath>
#include <fstream>

#include <torch/torch.h>

#include "core/io/atomic_file.h"

namespace dlab {

void AdamW::step(int64_t t, double lr, double wd) {
    torch::NoGradGuard g;
    const double c1 = 1 - std::pow(b1, double(t)), c2 = 1 - std::pow(b2, double(t));
    std::vector<at::Tensor> grads;
    grads.reserve(params.size());
    for (const auto& p : params) grads.push_back(p.grad().defined() ? p.grad() : at::zeros_like(p));
    at::_foreach_mul_(m, b1);
    at::_foreach_add_(m, grads, 1 - b1);
    at::_foreach_mul_(v, b2);
    at::_foreach_addcmul_(v, grads, grads, 1 - b2);
    if (wd > 0) at::_foreach_mul_(params, 1 - lr * wd);
    std::vector<at::Tensor> denom = at::_foreach_sqrt(v);
    at::_foreach_div_(denom, std::sqrt(c2));
    at::_foreach_add_(denom, eps);
    at::_foreach_addcdiv_(params, m, denom, -lr / c1);  // p -= lr m_hat / (sqrt(v_hat) + eps)
}

void clip_gradients(const std::vector<at::Tensor>& params, double max_norm) {
    std::vector<at::Tensor> grads;
    for (const auto& p : params)
        if (p.grad().defined()) grads.push_back(p.grad());
    if (grads.empty()) return;
    const at::Tensor total = at::stack(at::_foreach_norm(grads, 2)).norm();
    const double norm = total.item<double>();
    if (std::isfinite(norm) && norm > max_norm) at::_foreach_mul_(grads, max_norm / (norm + 1e-6));
}

std::string checkpoint_path(const std::string& dir) { return dir + "/checkpoint.safetensors"; }

std::optional<int64_t> parse_count(const std::string& text) {
    int64_t v = 0;
    const char* end = text.data() + text.size();
    const auto r = std::from_chars(text.data(), end, v);
    if (r.ec != std::errc() || r.ptr != end || v < 0) return std::nullopt;
    return v;
}

Status truncate_log(const std::string& path, int64_t step) {
    std::ifstream in(path);
    if (!in) return Status::success();
    std::string line, kept;
    std::getline(in, line);
    kept = line + "\n";
    while (std::getline(in, line)) {
        const auto s = parse_count(line.substr(0, line.find(',')));
        if (s && *s <= step) kept += line + "\n";
    }
    return write_file_atomic(path, kept);
}

bool all_finite(const std::vector<at::Tensor>& tensors) {
    for (const at::Tensor& t : tensors)
        if (t.defined() && !at::isfinite(t).all().item<bool>()) return false;
    return true;
}

}  // namespace dlab
