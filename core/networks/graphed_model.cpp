#include "core/networks/graphed_model.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#ifdef DLAB_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "core/runtime/runtime.h"

namespace dlab {

bool cuda_graphs_compiled() {
#ifdef DLAB_CUDA_GRAPHS
    return true;
#else
    return false;
#endif
}

struct GraphedModel::Entry {
#ifdef DLAB_CUDA_GRAPHS
    at::cuda::CUDAGraph graph;
#endif
    at::Tensor x, t, y, out;
};

GraphedModel::GraphedModel(Network net) : net_(std::move(net)) {
    const char* env = std::getenv("DLAB_CUDA_GRAPHS");
    const bool disabled = env && std::strcmp(env, "0") == 0;
    active_ = cuda_graphs_compiled() && !disabled && net_ && !net_->parameters().empty() &&
              net_->parameters().front().device().is_cuda();
}

GraphedModel::~GraphedModel() = default;

void GraphedModel::record_weights() {
    captured_state_.clear();
    for (const at::Tensor& w : weights_) captured_state_.emplace_back(w.data_ptr(), w._version());
}

bool GraphedModel::weights_changed() const {
    for (size_t i = 0; i < weights_.size(); ++i)
        if (captured_state_[i] != std::make_pair<const void*, int64_t>(weights_[i].data_ptr(), weights_[i]._version()))
            return true;
    return false;
}

bool GraphedModel::active() const { return active_; }
int GraphedModel::captured() const { return int(graphs_.size()); }

at::Tensor GraphedModel::operator()(const at::Tensor& x, const at::Tensor& t, const at::Tensor& labels) {
    // Graphs only replay inference: with autograd on or in training mode, the plain forward pass.
    if (!active_ || c10::GradMode::is_enabled() || net_->is_training()) return net_->forward(x, t, labels);
#ifdef DLAB_CUDA_GRAPHS
    if (weights_.empty()) {
        weights_ = net_->parameters();
        for (const at::Tensor& b : net_->buffers()) weights_.push_back(b);
    }
    if (!graphs_.empty() && weights_changed()) graphs_.clear();  // recaptured below
    if (graphs_.empty()) record_weights();
    const auto key = std::make_pair(x.size(0), labels.defined());
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
        auto e = std::make_unique<Entry>();
        try {
            const c10::Device dev = x.device();
            e->x = x.detach().clone();
            e->t = t.to(dev, at::kLong).clone();
            if (labels.defined()) e->y = labels.to(dev, at::kLong).clone();
            c10::cuda::CUDAGuard guard(dev);
            at::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, dev.index());
            c10::cuda::getCurrentCUDAStream(dev.index()).synchronize();  // the inputs are ready
            {
                c10::cuda::CUDAStreamGuard sg(side);
                // Warm-up outside the capture: cuDNN picks its algorithms, the allocator its blocks.
                for (int i = 0; i < 3; ++i) net_->forward(e->x, e->t, e->y);
                side.synchronize();
                e->graph.capture_begin();
                e->out = net_->forward(e->x, e->t, e->y);
                e->graph.capture_end();
            }
            side.synchronize();  // the capture is complete before the first replay
        } catch (const std::exception& ex) {
            std::fprintf(stderr, "diffusionlab: CUDA graph capture failed (%s); the network runs eagerly from now on\n",
                         error_message(ex).c_str());
            active_ = false;
            graphs_.clear();
            return net_->forward(x, t, labels);
        }
        it = graphs_.emplace(key, std::move(e)).first;
    }
    Entry& e = *it->second;
    e.x.copy_(x);
    e.t.copy_(t);
    if (labels.defined()) e.y.copy_(labels);
    e.graph.replay();
    return e.out.clone();
#else
    return net_->forward(x, t, labels);
#endif
}

ModelFn model_function(Network net, std::shared_ptr<GraphedModel> graphs, bool bf16) {
    ModelFn fn;
    if (graphs && graphs->active())
        fn = [graphs](const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) { return (*graphs)(x, t, y); };
    else
        fn = [net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) { return net->forward(x, t, y); };
    if (!bf16) return fn;
    return [fn](const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) {
        CudaBf16Autocast autocast(true, /*cache=*/false);
        return fn(x, t, y).to(at::kFloat);
    };
}

}  // namespace dlab
