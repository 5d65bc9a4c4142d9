#include "core/distributed/distributed.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <mutex>

#include <torch/torch.h>

#include "core/runtime/runtime.h"

#ifdef DLAB_C10D
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef DLAB_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef DLAB_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

namespace dlab {

namespace {

// An environment variable as a whole number in [lo, hi]; absent gives `fallback`.
Result<int> env_int(const char* name, int lo, int hi, int fallback) {
    const char* text = std::getenv(name);
    if (!text || !*text) return fallback;
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return Error{std::string("the environment variable ") + name + "='" + text + "' is not a whole number in [" +
                     std::to_string(lo) + ", " + std::to_string(hi) + "]"};
    return static_cast<int>(v);
}

}  // namespace

Result<RankInfo> rank_info_from_environment() {
    RankInfo info;
    const bool has_rank = std::getenv("RANK") != nullptr, has_world = std::getenv("WORLD_SIZE") != nullptr;
    if (has_rank != has_world)
        return Error{std::string("distributed run: ") + (has_rank ? "RANK is set but WORLD_SIZE is not"
                                                                  : "WORLD_SIZE is set but RANK is not") +
                     " (set both, as torchrun does, or neither for one process)"};
    auto world = env_int("WORLD_SIZE", 1, 1 << 20, 1);
    if (!world) return Error{"distributed run: " + world.error()};
    info.world_size = world.value();
    auto rank = env_int("RANK", 0, info.world_size - 1, 0);
    if (!rank) return Error{"distributed run: " + rank.error() + " (WORLD_SIZE is " + std::to_string(info.world_size) + ")"};
    info.rank = rank.value();
    auto local_world = env_int("LOCAL_WORLD_SIZE", 1, info.world_size, 0);
    if (!local_world) return Error{"distributed run: " + local_world.error()};
    info.local_world_size = local_world.value() > 0 ? local_world.value() : info.world_size;
    auto local = env_int("LOCAL_RANK", 0, info.world_size - 1, info.rank % info.local_world_size);
    if (!local) return Error{"distributed run: " + local.error()};
    info.local_rank = local.value();
    if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) info.master_addr = addr;
    else if (info.distributed() && info.rank != 0 && info.world_size > info.local_world_size)
        return Error{"distributed run: MASTER_ADDR is not set; ranks on other machines cannot find rank 0"};
    auto port = env_int("MASTER_PORT", 1, 65535, 29500);
    if (!port) return Error{"distributed run: " + port.error()};
    info.master_port = port.value();
    if (const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE"))
        info.agent_store = std::string(agent) == "True" || std::string(agent) == "1";
    return info;
}

Result<Backend> parse_backend(const std::string& name) {
    if (name == "auto") return Backend::Auto;
    if (name == "gloo") return Backend::Gloo;
    if (name == "nccl") return Backend::Nccl;
    return Error{"unknown backend '" + name + "' (auto, gloo or nccl)"};
}

bool distributed_available() {
#ifdef DLAB_C10D
    return true;
#else
    return false;
#endif
}

bool gloo_available() {
#ifdef DLAB_C10D_GLOO
    return true;
#else
    return false;
#endif
}

bool nccl_available() {
#ifdef DLAB_C10D_NCCL
    return true;
#else
    return false;
#endif
}

#ifdef DLAB_C10D

struct Communicator::Impl {
    int rank = 0, world = 1;
    c10::Device device{c10::kCPU};
    bool staged = false;  // Gloo with CUDA tensors: through host copies
    std::chrono::milliseconds timeout{0};
    c10::intrusive_ptr<c10d::Store> store;
#ifdef DLAB_C10D_GLOO
    c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#ifdef DLAB_C10D_NCCL
    c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif

    template <typename F>
    auto on_group(F&& f) {
#if defined(DLAB_C10D_NCCL) && defined(DLAB_C10D_GLOO)
        if (nccl) return f(*nccl);
        return f(*gloo);
#elif defined(DLAB_C10D_NCCL)
        return f(*nccl);  // an NCCL-only build: connect() made one
#else
        return f(*gloo);
#endif
    }
    [[noreturn]] void fail(const std::string& what, const std::exception& e) const {
        throw DistributedError("rank " + std::to_string(rank) + " of " + std::to_string(world) + ": " + what +
                               " failed; another rank has stopped or cannot be reached (" + error_message(e) + ")");
    }
    // The tensors the group works on: the caller's, or host copies of them.
    std::vector<at::Tensor> stage(const std::vector<at::Tensor>& tensors) const {
        if (!staged) return tensors;
        std::vector<at::Tensor> host;
        for (const auto& t : tensors) host.push_back(t.to(at::kCPU).contiguous());
        return host;
    }
    void unstage(std::vector<at::Tensor>& tensors, const std::vector<at::Tensor>& host) const {
        if (!staged) return;
        for (size_t i = 0; i < tensors.size(); ++i) tensors[i].copy_(host[i]);
    }
    // A collective's tensor list means one tensor per local device to c10d; a list of a model's
    // tensors goes as one flat buffer per dtype instead, one collective each, in a fixed order.
    template <typename Op>
    void flat_by_dtype(std::vector<at::Tensor>& tensors, Op&& op) {
        std::vector<at::ScalarType> dtypes;
        for (const auto& t : tensors)
            if (std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end()) dtypes.push_back(t.scalar_type());
        std::sort(dtypes.begin(), dtypes.end());
        for (at::ScalarType dt : dtypes) {
            std::vector<at::Tensor> members;
            for (const auto& t : tensors)
                if (t.scalar_type() == dt) members.push_back(t.reshape({-1}));
            std::vector<at::Tensor> flat = stage({at::cat(members)});
            op(flat);
            at::Tensor back = flat[0].to(tensors.front().device());
            int64_t offset = 0;
            torch::NoGradGuard g;
            for (auto& t : tensors) {
                if (t.scalar_type() != dt) continue;
                t.copy_(back.narrow(0, offset, t.numel()).view_as(t));
                offset += t.numel();
            }
        }
    }
};

Communicator::Communicator() : impl_(std::make_unique<Impl>()) {}
Communicator::~Communicator() = default;

Result<std::shared_ptr<Communicator>> Communicator::connect(const RankInfo& info, Backend backend, c10::Device device,
                                                            std::chrono::milliseconds timeout) {
    const std::string who = "rank " + std::to_string(info.rank) + " of " + std::to_string(info.world_size);
    if (backend == Backend::Auto) backend = device.is_cuda() && nccl_available() ? Backend::Nccl : Backend::Gloo;
    if (backend == Backend::Gloo && !gloo_available())
        return Error{who + ": this build has no Gloo (gloo's headers were missing when it was configured)" +
                     std::string(nccl_available() ? "; on CUDA devices use --backend nccl" : "")};
    if (backend == Backend::Nccl && !nccl_available())
        return Error{who + ": this build has no NCCL (its LibTorch has no CUDA c10d); use --backend gloo"};
    if (backend == Backend::Nccl && !device.is_cuda())
        return Error{who + ": NCCL needs a CUDA device (this rank runs on " + device.str() + "); use --backend gloo"};
    std::shared_ptr<Communicator> comm(new Communicator());
    Impl& d = *comm->impl_;
    d.rank = info.rank;
    d.world = info.world_size;
    d.device = device;
    d.timeout = timeout;
    d.staged = backend == Backend::Gloo && device.is_cuda();
    try {
        c10d::TCPStoreOptions so;
        so.port = static_cast<std::uint16_t>(info.master_port);
        so.isServer = info.rank == 0 && !info.agent_store;
        so.numWorkers = info.agent_store ? c10::nullopt : c10::optional<std::size_t>(info.world_size);
        so.waitWorkers = !info.agent_store;
        so.timeout = timeout;
        auto tcp = c10::make_intrusive<c10d::TCPStore>(info.master_addr, so);
        d.store = c10::make_intrusive<c10d::PrefixStore>("diffusionlab", tcp);
    } catch (const std::exception& e) {
        return Error{who + ": cannot meet the other ranks at " + info.master_addr + ":" +
                     std::to_string(info.master_port) + " within " + std::to_string(timeout.count() / 1000) +
                     " s (" + error_message(e) + ")"};
    }
    try {
#ifdef DLAB_C10D_NCCL
        if (backend == Backend::Nccl) {
            auto opts = c10d::ProcessGroupNCCL::Options::create();
            opts->timeout = timeout;
            d.nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(d.store, info.rank, info.world_size, opts);
        }
#endif
#ifdef DLAB_C10D_GLOO
        if (backend == Backend::Gloo) {
            auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
            const char* iface = std::getenv("GLOO_SOCKET_IFNAME");
            opts->devices.push_back(iface && *iface ? c10d::ProcessGroupGloo::createDeviceForInterface(iface)
                                                    : info.master_addr == "127.0.0.1" || info.master_addr == "localhost"
                                                          ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                                          : c10d::ProcessGroupGloo::createDefaultDevice());
            d.gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(d.store, info.rank, info.world_size, opts);
        }
#endif
    } catch (const std::exception& e) {
        return Error{who + ": cannot build the " + std::string(backend == Backend::Nccl ? "NCCL" : "Gloo") +
                     " process group (" + error_message(e) + ")"};
    }
    return comm;
}

int Communicator::rank() const { return impl_->rank; }
int Communicator::world_size() const { return impl_->world; }
std::string Communicator::backend_name() const {
#ifdef DLAB_C10D_NCCL
    if (impl_->nccl) return "nccl";
#endif
    return impl_->staged ? "gloo (through host memory)" : "gloo";
}

void Communicator::allreduce_sum(std::vector<at::Tensor>& tensors) {
    if (tensors.empty()) return;
    try {
        impl_->flat_by_dtype(tensors, [&](std::vector<at::Tensor>& flat) {
            impl_->on_group([&](auto& g) { return g.allreduce(flat); })->wait();
        });
    } catch (const std::exception& e) {
        impl_->fail("a sum over the ranks", e);
    }
}

void Communicator::broadcast(std::vector<at::Tensor>& tensors, int root) {
    if (tensors.empty()) return;
    try {
        c10d::BroadcastOptions o;
        o.rootRank = root;
        impl_->flat_by_dtype(tensors, [&](std::vector<at::Tensor>& flat) {
            impl_->on_group([&](auto& g) { return g.broadcast(flat, o); })->wait();
        });
    } catch (const std::exception& e) {
        impl_->fail("a broadcast from rank " + std::to_string(root), e);
    }
}

std::vector<at::Tensor> Communicator::all_gather(const at::Tensor& tensor) {
    try {
        std::vector<at::Tensor> in = impl_->stage({tensor.contiguous()});
        std::vector<std::vector<at::Tensor>> out(1);
        for (int r = 0; r < impl_->world; ++r) out[0].push_back(at::empty_like(in[0]));
        impl_->on_group([&](auto& g) { return g.allgather(out, in); })->wait();
        return out[0];
    } catch (const std::exception& e) {
        impl_->fail("a gather from every rank", e);
    }
}

void Communicator::barrier() {
    // A sum everybody must join: the same on every backend and LibTorch version.
    std::vector<at::Tensor> one{at::ones({1}, at::TensorOptions().device(impl_->device))};
    allreduce_sum(one);
}

namespace {
template <typename WorkPtr>
class PendingSum : public Communicator::Pending {
public:
    PendingSum(WorkPtr work, std::vector<at::Tensor> tensors, at::Tensor target, std::string who)
        : work_(std::move(work)), tensors_(std::move(tensors)), target_(std::move(target)), who_(std::move(who)) {}
    void wait() override {
        try {
            work_->wait();
        } catch (const std::exception& e) {
            throw DistributedError(who_ + ": a gradient sum over the ranks failed; another rank has stopped or cannot be "
                                          "reached (" + error_message(e) + ")");
        }
        if (target_.defined()) target_.copy_(tensors_[0]);
    }

private:
    WorkPtr work_;
    std::vector<at::Tensor> tensors_;
    at::Tensor target_;  // the caller's CUDA tensor when staged through the host
    std::string who_;
};
}  // namespace

std::unique_ptr<Communicator::Pending> Communicator::allreduce_sum_async(at::Tensor tensor) {
    const std::string who = "rank " + std::to_string(impl_->rank) + " of " + std::to_string(impl_->world);
    try {
        std::vector<at::Tensor> work = impl_->stage({tensor});
        auto handle = impl_->on_group([&](auto& g) { return g.allreduce(work); });
        return std::make_unique<PendingSum<decltype(handle)>>(handle, work, impl_->staged ? tensor : at::Tensor(), who);
    } catch (const std::exception& e) {
        impl_->fail("starting a gradient sum", e);
    }
}

#else  // no c10d in this build

struct Communicator::Impl {};
Communicator::Communicator() : impl_(std::make_unique<Impl>()) {}
Communicator::~Communicator() = default;
Result<std::shared_ptr<Communicator>> Communicator::connect(const RankInfo& info, Backend, c10::Device,
                                                            std::chrono::milliseconds) {
    return Error{"rank " + std::to_string(info.rank) + ": this build has no distributed engine (LibTorch's c10d "
                 "headers or gloo were missing when it was configured; install libgloo-dev and rebuild)"};
}
int Communicator::rank() const { return 0; }
int Communicator::world_size() const { return 1; }
std::string Communicator::backend_name() const { return "none"; }
void Communicator::allreduce_sum(std::vector<at::Tensor>&) {}
void Communicator::broadcast(std::vector<at::Tensor>&, int) {}
std::vector<at::Tensor> Communicator::all_gather(const at::Tensor& t) { return {t}; }
void Communicator::barrier() {}
std::unique_ptr<Communicator::Pending> Communicator::allreduce_sum_async(at::Tensor) {
    throw DistributedError("this build has no distributed engine");
}

#endif

// ---------------------------------------------------------------------------------------------
// GradientReducer

struct GradientReducer::Impl {
    struct Bucket {
        at::Tensor flat;
        std::vector<size_t> members;
        std::vector<int64_t> offsets;
        int64_t pending = 0;
        std::unique_ptr<Communicator::Pending> work;
    };
    Communicator& comm;
    std::vector<at::Tensor> params;
    std::vector<Bucket> buckets;
    std::vector<size_t> bucket_of, slot_of;
    std::vector<char> arrived;
    std::vector<unsigned> hooks;
    size_t next_launch = 0;
    bool in_backward = false;
    int64_t overlapped = 0;
    std::exception_ptr error;
    std::mutex mu;

    explicit Impl(Communicator& c) : comm(c) {}

    at::Tensor slice(size_t i) {
        const Bucket& b = buckets[bucket_of[i]];
        return b.flat.narrow(0, b.offsets[slot_of[i]], params[i].numel());
    }
    // Starts every bucket that is complete and whose predecessors have started: the same order on
    // every rank, whatever order the hooks ran in.
    void launch_ready() {
        while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
            Bucket& b = buckets[next_launch];
            b.work = comm.allreduce_sum_async(b.flat);
            if (in_backward) ++overlapped;
            ++next_launch;
        }
    }
    void on_grad(size_t i, const at::Tensor& grad) {
        std::lock_guard<std::mutex> lock(mu);
        if (error) return;
        try {
            torch::NoGradGuard g;
            if (arrived[i]) {
                slice(i).add_(grad.reshape({-1}));  // a second gradient for the same leaf
                return;
            }
            slice(i).copy_(grad.reshape({-1}));
            arrived[i] = 1;
            --buckets[bucket_of[i]].pending;
            launch_ready();
        } catch (...) {
            error = std::current_exception();
        }
    }
};

GradientReducer::GradientReducer(Communicator& comm, std::vector<at::Tensor> params, int64_t bucket_bytes)
    : impl_(std::make_unique<Impl>(comm)) {
    Impl& d = *impl_;
    d.params = std::move(params);
    const size_t n = d.params.size();
    d.bucket_of.assign(n, 0);
    d.slot_of.assign(n, 0);
    d.arrived.assign(n, 0);
    // Reverse order: the last layers' gradients come first in backward.
    int64_t bytes = 0;
    for (size_t k = n; k-- > 0;) {
        const at::Tensor& p = d.params[k];
        const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
        const bool new_bucket = d.buckets.empty() || bytes + size > bucket_bytes ||
                                d.params[d.buckets.back().members.front()].scalar_type() != p.scalar_type();
        if (new_bucket) {
            d.buckets.emplace_back();
            bytes = 0;
        }
        auto& b = d.buckets.back();
        const int64_t offset = b.offsets.empty() ? 0 : b.offsets.back() + d.params[b.members.back()].numel();
        d.bucket_of[k] = d.buckets.size() - 1;
        d.slot_of[k] = b.members.size();
        b.members.push_back(k);
        b.offsets.push_back(offset);
        bytes += size;
    }
    for (auto& b : d.buckets) {
        const at::Tensor& last = d.params[b.members.back()];
        b.flat = at::zeros({b.offsets.back() + last.numel()}, last.options().requires_grad(false));
    }
    for (size_t i = 0; i < n; ++i) {
        if (!d.params[i].requires_grad()) continue;
        Impl* self = impl_.get();
        d.hooks.push_back(d.params[i].register_hook([self, i](const at::Tensor& grad) { self->on_grad(i, grad); }));
    }
}

GradientReducer::~GradientReducer() {
    size_t h = 0;
    for (size_t i = 0; i < impl_->params.size() && h < impl_->hooks.size(); ++i)
        if (impl_->params[i].requires_grad()) impl_->params[i].remove_hook(impl_->hooks[h++]);
}

void GradientReducer::prepare() {
    Impl& d = *impl_;
    std::lock_guard<std::mutex> lock(d.mu);
    std::fill(d.arrived.begin(), d.arrived.end(), 0);
    for (auto& b : d.buckets) {
        b.pending = static_cast<int64_t>(b.members.size());
        b.work.reset();
    }
    d.next_launch = 0;
    d.overlapped = 0;
    d.error = nullptr;
    d.in_backward = true;
}

void GradientReducer::finish() {
    Impl& d = *impl_;
    {
        std::lock_guard<std::mutex> lock(d.mu);
        d.in_backward = false;
        if (d.error) std::rethrow_exception(d.error);
        torch::NoGradGuard g;
        for (size_t i = 0; i < d.params.size(); ++i)
            if (!d.arrived[i]) {
                d.slice(i).zero_();  // no gradient here: counts as zero in the mean
                d.arrived[i] = 1;
                --d.buckets[d.bucket_of[i]].pending;
            }
        d.launch_ready();
    }
    torch::NoGradGuard g;
    const double scale = 1.0 / d.comm.world_size();
    for (auto& b : d.buckets) {
        b.work->wait();
        b.work.reset();
        b.flat.mul_(scale);
    }
    for (size_t i = 0; i < d.params.size(); ++i) {
        at::Tensor& grad = d.params[i].mutable_grad();
        if (!grad.defined()) grad = at::zeros_like(d.params[i]);
        grad.copy_(d.slice(i).view_as(d.params[i]));
    }
}

int64_t GradientReducer::bucket_count() const { return static_cast<int64_t>(impl_->buckets.size()); }
int64_t GradientReducer::overlapped_last_step() const { return impl_->overlapped; }

}  // namespace dlab
