#include "core/evaluation/classifier.h"

#include <chrono>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "core/sampling/sampler.h"

namespace dlab {

namespace nn = torch::nn;

ClassifierImpl::ClassifierImpl(int64_t in_ch, int64_t classes, int64_t size)
    : in_channels(in_ch), num_classes(classes), image_size(size) {
    nn::Sequential body;
    auto block = [&body](int64_t i, int64_t o) {
        body->push_back(nn::Conv2d(nn::Conv2dOptions(i, o, 3).padding(1)));
        body->push_back(nn::BatchNorm2d(o));
        body->push_back(nn::ReLU());
    };
    block(in_ch, 32);
    block(32, 32);
    body->push_back(nn::MaxPool2d(2));
    block(32, 64);
    block(64, 64);
    body->push_back(nn::MaxPool2d(2));
    body_ = register_module("body", body);
    fc1_ = register_module("fc1", nn::Linear(64 * (size / 4) * (size / 4), 256));
    drop_ = register_module("drop", nn::Dropout(0.3));
    fc2_ = register_module("fc2", nn::Linear(256, classes));
}

at::Tensor ClassifierImpl::spatial_features(const at::Tensor& x) { return body_->forward(x); }
at::Tensor ClassifierImpl::features(const at::Tensor& x) { return at::relu(fc1_(spatial_features(x).flatten(1))); }
at::Tensor ClassifierImpl::head(const at::Tensor& f) { return fc2_(drop_(f)); }
at::Tensor ClassifierImpl::forward(const at::Tensor& x) { return head(features(x)); }

double classifier_accuracy(Classifier& net, const LabelledData& data, c10::Device device) {
    torch::NoGradGuard g;
    net->eval();
    int64_t correct = 0;
    const int64_t N = data.x.size(0);
    for (int64_t i = 0; i < N; i += 1000) {
        const int64_t n = std::min<int64_t>(1000, N - i);
        const at::Tensor logits = net->forward(data.x.narrow(0, i, n).to(device));
        correct += (logits.argmax(1).cpu() == data.labels.narrow(0, i, n)).sum().item<int64_t>();
    }
    return double(correct) / double(N);
}

Result<Classifier> train_classifier(const LabelledData& train, const LabelledData& test, int64_t epochs,
                                    int64_t batch, double lr, uint64_t seed, c10::Device device,
                                    const std::function<void(const std::string&)>& log) {
    if (train.x.dim() != 4) return Error{"classifier: needs image data"};
    at::manual_seed(seed);
    Classifier net(train.x.size(1), train.num_classes, train.x.size(2));
    net->to(device);
    torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(lr).weight_decay(1e-4));
    const at::Tensor x_all = train.x.to(device), y_all = train.labels.to(device);
    const int64_t N = x_all.size(0);
    at::Generator gen = make_generator(seed);
    for (int64_t e = 0; e < epochs; ++e) {
        net->train();
        const auto t0 = std::chrono::steady_clock::now();
        const at::Tensor perm = at::randperm(N, gen, at::TensorOptions().dtype(at::kLong)).to(device);
        double total = 0;
        int64_t batches = 0;
        for (int64_t i = 0; i + batch <= N; i += batch) {
            const at::Tensor idx = perm.narrow(0, i, batch);
            at::Tensor x = x_all.index_select(0, idx);
            // Random shifts of up to 2 pixels (padding with the background value -1).
            const int64_t dx = at::randint(5, {1}, gen, at::TensorOptions().dtype(at::kLong)).item<int64_t>() - 2;
            const int64_t dy = at::randint(5, {1}, gen, at::TensorOptions().dtype(at::kLong)).item<int64_t>() - 2;
            x = at::constant_pad_nd(x, {2, 2, 2, 2}, -1.0).narrow(2, 2 + dy, x.size(2)).narrow(3, 2 + dx, x.size(3));
            const at::Tensor loss = at::cross_entropy_loss(net->forward(x), y_all.index_select(0, idx));
            opt.zero_grad();
            loss.backward();
            opt.step();
            total += loss.item<double>();
            ++batches;
        }
        const double acc = classifier_accuracy(net, test, device);
        std::ostringstream s;
        s << "epoch " << e + 1 << "/" << epochs << "  loss " << total / double(std::max<int64_t>(1, batches))
          << "  test accuracy " << acc << "  ("
          << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s)";
        if (log) log(s.str());
    }
    net->eval();
    return net;
}

Status save_classifier(const std::string& path, Classifier& net, double test_accuracy) {
    TensorFile f;
    add_network_tensors(f, "", *net);
    f.metadata["dlab_classifier"] = "{\"in_channels\":" + std::to_string(net->in_channels) +
                                    ",\"num_classes\":" + std::to_string(net->num_classes) +
                                    ",\"image_size\":" + std::to_string(net->image_size) +
                                    ",\"test_accuracy\":" + std::to_string(test_accuracy) + "}";
    return save_safetensors(path, f);
}

Result<Classifier> load_classifier(const std::string& path, c10::Device device) {
    auto f = load_safetensors(path);
    if (!f) return Error{f.error()};
    auto it = f->metadata.find("dlab_classifier");
    if (it == f->metadata.end()) return Error{path + ": not a DiffusionLab classifier"};
    auto j = nlohmann::json::parse(it->second, nullptr, false);
    if (j.is_discarded()) return Error{path + ": corrupt classifier metadata"};
    Classifier net(j.value("in_channels", 1), j.value("num_classes", 10), j.value("image_size", 28));
    if (auto st = load_network_tensors(f.value(), "", *net, path); !st) return Error{st.error()};
    net->to(device);
    net->eval();
    return net;
}

}  // namespace dlab
