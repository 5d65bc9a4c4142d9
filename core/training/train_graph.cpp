#include "core/training/train_graph.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>

#include <torch/torch.h>

#ifdef DLAB_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

#include "core/runtime/runtime.h"
#include "core/training/train_support.h"

namespace dlab {

struct TrainStepGraph::Impl {
    Impl(LossFn l, Network n, AdamW& o, std::vector<at::Tensor> e, double c, double w,
         c10::Device d)
        : loss_fn(std::move(l)),
          net(std::move(n)),
          opt(o),
          ema(std::move(e)),
          clip(c),
          wd(w),
          device(d) {}
    LossFn loss_fn;
    Network net;
    AdamW& opt;
    std::vector<at::Tensor> ema;
    double clip, wd;
    c10::Device device;
    int eager_steps = 0;
    bool failed = false, captured = false;
    StepDraws buf;       // the draws' static device copies
    at::Tensor scalars;  // [4] float32 on the device: lr, Adam's step, EMA decay, 1 - EMA decay
    at::Tensor loss;     // the captured step's loss
#ifdef DLAB_CUDA_GRAPHS
    std::optional<c10::cuda::CUDAStream> side;
    std::optional<c10::cuda::CUDAStreamGuard> on_side;
    std::unique_ptr<at::cuda::CUDAGraph> graph;
#endif

    // One whole step on the buffers: forward, backward, clip, AdamW, EMA; no host sync.
    at::Tensor body() {
        net->zero_grad(true);
        at::Tensor l = loss_fn(buf);
        l.backward();
        torch::NoGradGuard no_grad;
        std::vector<at::Tensor> grads;
        grads.reserve(opt.params.size());
        for (const auto& p : opt.params) {
            if (!p.grad().defined()) throw std::runtime_error("a parameter received no gradient");
            grads.push_back(p.grad());
        }
#ifdef DLAB_CUDA_GRAPHS
        if (clip > 0) {
            // The eager clip's rule without reading the norm back: scale by clip / norm when the
            // norm is finite and above the limit, else by 1.
            const at::Tensor norm = at::stack(at::_foreach_norm(grads, 2)).norm();
            const at::Tensor scale =
                at::where(at::isfinite(norm) & (norm > clip), (norm + 1e-6).reciprocal() * clip,
                          at::ones_like(norm));
            at::_foreach_mul_(grads, scale);
        }
        const std::vector<at::Tensor> adam_steps(opt.params.size(), scalars.select(0, 1));
        at::_fused_adamw_(opt.params, grads, opt.m, opt.v, {}, adam_steps, scalars.select(0, 0),
                          opt.b1, opt.b2, wd, opt.eps, /*amsgrad=*/false, /*maximize=*/false,
                          std::nullopt, std::nullopt);
        at::_foreach_mul_(ema, scalars.select(0, 2));
        at::_foreach_add_(ema, at::_foreach_mul(opt.params, scalars.select(0, 3)));
#endif
        return l.detach();
    }

    void fail(const std::string& why) {
        failed = true;
        std::fprintf(stderr,
                     "diffusionlab: the training step could not run as a CUDA graph (%s); training "
                     "goes on eagerly\n",
                     why.c_str());
    }
};

bool TrainStepGraph::usable(c10::Device device) {
#ifdef DLAB_CUDA_GRAPHS
    const char* env = std::getenv("DLAB_CUDA_GRAPHS");
    return device.is_cuda() && !(env && std::strcmp(env, "0") == 0);
#else
    (void)device;
    return false;
#endif
}

TrainStepGraph::TrainStepGraph(LossFn loss, Network net, AdamW& opt, std::vector<at::Tensor> ema,
                               double grad_clip, double weight_decay, c10::Device device)
    : impl_(std::make_unique<Impl>(std::move(loss), std::move(net), opt, std::move(ema), grad_clip,
                                   weight_decay, device)) {
    Impl& s = *impl_;
    if (!usable(device)) {
        s.failed = true;
        return;
    }
#ifdef DLAB_CUDA_GRAPHS
    const c10::DeviceIndex index =
        device.has_index() ? device.index() : c10::cuda::current_device();
    s.device = c10::Device(c10::kCUDA, index);
    s.scalars = at::zeros({4}, at::TensorOptions().dtype(at::kFloat).device(s.device));
    c10::cuda::device_synchronize();  // what the default stream made (data, weights) is ready
    s.side = c10::cuda::getStreamFromPool(false, index);
    s.on_side.emplace(*s.side);
#endif
}

TrainStepGraph::~TrainStepGraph() {
#ifdef DLAB_CUDA_GRAPHS
    if (impl_->side) impl_->side->synchronize();  // the default stream sees the last step
    impl_->on_side.reset();
#endif
}

bool TrainStepGraph::captured() const {
    return impl_->captured;
}
bool TrainStepGraph::failed() const {
    return impl_->failed;
}

at::Tensor TrainStepGraph::step(const StepDraws& draws, double lr, int64_t adam_t,
                                double ema_decay) {
    Impl& s = *impl_;
    if (s.failed) return {};
#ifdef DLAB_CUDA_GRAPHS
    // Into the static buffers through pinned memory, without waiting for the GPU (the pinned
    // allocator keeps a block until its copy is done).
    auto put = [&](at::Tensor& dst, const at::Tensor& src) {
        if (!dst.defined()) dst = at::empty(src.sizes(), src.options().device(s.device));
        dst.copy_(src.contiguous().pin_memory(), /*non_blocking=*/true);
    };
    const at::Tensor host =
        at::tensor({float(lr), float(adam_t), float(ema_decay), float(1.0 - ema_decay)});
    put(s.buf.idx, draws.idx);
    put(s.buf.t, draws.t);
    put(s.buf.eps, draws.eps);
    put(s.buf.drop, draws.drop);
    put(s.buf.flip, draws.flip);
    if (draws.noise.defined()) put(s.buf.noise, draws.noise);
    put(s.scalars, host);
    if (!s.captured && s.eager_steps >= 3) {
        s.side->synchronize();
        s.graph = std::make_unique<at::cuda::CUDAGraph>();
        try {
            s.net->zero_grad(true);  // backward allocates the gradients in the graph's pool
            s.graph->capture_begin();
            s.loss = s.body();
            s.graph->capture_end();
            s.captured = true;
        } catch (const std::exception& e) {
            try {
                s.graph->capture_end();  // ends the stream's capture and the pool's routing
            } catch (...) {
            }
            (void)cudaGetLastError();
            s.graph.reset();
            s.fail("capture: " + error_message(e));
            return {};
        }
    }
    if (s.captured) {
        s.graph->replay();
        return s.loss;
    }
    try {
        at::Tensor l = s.body();  // the warm-up steps: the same operations, eagerly
        ++s.eager_steps;
        return l;
    } catch (const std::exception& e) {
        if (is_out_of_memory(e)) throw;
        s.fail(error_message(e));
        return {};
    }
#else
    (void)draws;
    (void)lr;
    (void)adam_t;
    (void)ema_decay;
    return {};
#endif
}

}  // namespace dlab
