#include "core/evaluation/feature_net.h"

#include <torch/script.h>
#include <torch/torch.h>

namespace dlab {

namespace {

constexpr int64_t kBatch = 500;

class ClassifierFeatures final : public FeatureNet {
public:
    ClassifierFeatures(Classifier net, c10::Device device, std::string name)
        : net_(std::move(net)), device_(device), name_(std::move(name)) {}
    Features extract(const at::Tensor& images) override {
        torch::NoGradGuard g;
        net_->eval();
        std::vector<at::Tensor> p, s, l;
        for (int64_t i = 0; i < images.size(0); i += kBatch) {
            const at::Tensor x = images.narrow(0, i, std::min(kBatch, images.size(0) - i)).to(device_, at::kFloat);
            const at::Tensor sp = net_->spatial_features(x);
            const at::Tensor f = net_->features(x);
            p.push_back(f.cpu());
            s.push_back(sp.narrow(1, 0, std::min<int64_t>(7, sp.size(1))).flatten(1).cpu());  // sFID: first 7 channels
            l.push_back(net_->head(f).cpu());
        }
        return {at::cat(p), at::cat(s), at::cat(l)};
    }
    std::string name() const override { return name_; }

private:
    Classifier net_;
    c10::Device device_;
    std::string name_;
};

class ScriptFeatures final : public FeatureNet {
public:
    ScriptFeatures(torch::jit::Module m, c10::Device device, std::string path, int64_t size, int64_t channels)
        : m_(std::move(m)), device_(device), path_(std::move(path)), size_(size), channels_(channels) {}
    Features extract(const at::Tensor& images) override {
        torch::NoGradGuard g;
        std::vector<at::Tensor> p, s, l;
        for (int64_t i = 0; i < images.size(0); i += kBatch) {
            at::Tensor x = images.narrow(0, i, std::min(kBatch, images.size(0) - i)).to(device_, at::kFloat);
            if (x.size(2) != size_ || x.size(3) != size_)
                x = at::upsample_bilinear2d(x, {size_, size_}, /*align_corners=*/false);
            if (x.size(1) == 1 && channels_ == 3) x = x.repeat({1, 3, 1, 1});
            const c10::IValue out = m_.forward({x});
            if (out.isTensor()) {
                p.push_back(out.toTensor().flatten(1).to(at::kCPU, at::kFloat));
            } else if (out.isTuple()) {
                const auto& e = out.toTupleRef().elements();
                if (e.empty() || !e[0].isTensor()) throw std::runtime_error("the tuple's first element is not a tensor");
                p.push_back(e[0].toTensor().flatten(1).to(at::kCPU, at::kFloat));
                if (e.size() > 1 && e[1].isTensor()) s.push_back(e[1].toTensor().flatten(1).to(at::kCPU, at::kFloat));
                if (e.size() > 2 && e[2].isTensor()) l.push_back(e[2].toTensor().flatten(1).to(at::kCPU, at::kFloat));
            } else {
                throw std::runtime_error("forward() returned neither a tensor nor a tuple");
            }
        }
        Features f;
        f.pooled = at::cat(p);
        if (!s.empty()) f.spatial = at::cat(s);
        if (!l.empty()) f.logits = at::cat(l);
        return f;
    }
    std::string name() const override { return "TorchScript " + path_; }

private:
    torch::jit::Module m_;
    c10::Device device_;
    std::string path_;
    int64_t size_, channels_;
};

}  // namespace

std::unique_ptr<FeatureNet> classifier_feature_net(Classifier net, c10::Device device, std::string name) {
    return std::make_unique<ClassifierFeatures>(std::move(net), device, std::move(name));
}

Result<std::unique_ptr<FeatureNet>> torchscript_feature_net(const std::string& path, c10::Device device,
                                                            int64_t size, int64_t channels) {
    if (channels != 1 && channels != 3) return Error{"feature network: channels must be 1 or 3"};
    if (size < 1 || size > 4096) return Error{"feature network: input size must be in [1, 4096]"};
    try {
        torch::jit::Module m = torch::jit::load(path, device);
        m.eval();
        // One probe batch, so that a wrong interface fails here with a clear message.
        ScriptFeatures probe(m, device, path, size, channels);
        const Features f = probe.extract(at::zeros({2, channels, size, size}));
        if (f.pooled.size(0) != 2) return Error{path + ": the feature network returned a batch of the wrong size"};
        return std::unique_ptr<FeatureNet>(std::make_unique<ScriptFeatures>(m, device, path, size, channels));
    } catch (const std::exception& e) {
        std::string what = e.what();
        if (auto nl = what.find('\n'); nl != std::string::npos) what = what.substr(0, nl);
        return Error{path + ": not a usable TorchScript feature network (" + what + ")"};
    }
}

}  // namespace dlab
