#pragma once
// A Fashion-MNIST classifier whose penultimate features serve as the feature space of the
// Frechet distance (FID-style) and whose predictions give the class agreement of samples.

#include <string>

#include <torch/nn.h>

#include "core/data/datasets.h"
#include "core/runtime/result.h"

namespace dlab {

/// conv(32)-conv(32)-pool-conv(64)-conv(64)-pool-fc(256)-fc(classes), BatchNorm and dropout.
class ClassifierImpl : public torch::nn::Module {
public:
    explicit ClassifierImpl(int64_t in_channels = 1, int64_t num_classes = 10, int64_t image_size = 28);
    /// x in [-1, 1], [B,C,H,W] -> logits [B, classes].
    at::Tensor forward(const at::Tensor& x);
    /// The penultimate 256-d features (after the ReLU).
    at::Tensor features(const at::Tensor& x);
    /// The last convolutional feature map [B,64,H/4,W/4] (spatial features, sFID-style).
    at::Tensor spatial_features(const at::Tensor& x);
    /// Logits from penultimate features.
    at::Tensor head(const at::Tensor& features);
    int64_t in_channels, num_classes, image_size;

private:
    torch::nn::Sequential body_{nullptr};
    torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
    torch::nn::Dropout drop_{nullptr};
};
TORCH_MODULE(Classifier);

/// Trains a classifier (AdamW, cross-entropy, random shifts) and returns it in eval mode;
/// `log` receives a line per epoch.
Result<Classifier> train_classifier(const LabelledData& train, const LabelledData& test, int64_t epochs,
                                    int64_t batch, double lr, uint64_t seed, c10::Device device,
                                    const std::function<void(const std::string&)>& log = {});

/// Accuracy of a classifier on a dataset (batched, no grad).
double classifier_accuracy(Classifier& net, const LabelledData& data, c10::Device device);

/// Saves/loads a classifier as safetensors with its sizes in the metadata.
Status save_classifier(const std::string& path, Classifier& net, double test_accuracy);
Result<Classifier> load_classifier(const std::string& path, c10::Device device);

}  // namespace dlab
