#pragma once
// Feature networks for the sample-quality metrics: the bundled Fashion-MNIST classifier, or any
// TorchScript module the user supplies (for example an Inception-v3 exported from PyTorch).

#include <memory>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "core/evaluation/classifier.h"
#include "core/runtime/result.h"

namespace dlab {

/// Features of a batch, on the CPU (float32).
struct Features {
    at::Tensor pooled;   ///< [N,D] for FID, precision/recall and diversity
    at::Tensor spatial;  ///< [N,D'] flattened spatial features for sFID (may be undefined)
    at::Tensor logits;   ///< [N,K] class logits for IS and class agreement (may be undefined)
};

/// A feature network.
class FeatureNet {
public:
    virtual ~FeatureNet() = default;
    /// Images in model space [-1, 1], [N,C,H,W] on any device; computed in batches, no grad.
    virtual Features extract(const at::Tensor& images) = 0;
    /// What the reports call it.
    virtual std::string name() const = 0;
};

/// The Fashion-MNIST classifier: penultimate 256-d features, the first 7 channels of its last
/// convolutional map (7 x 7 x 7 = 343-d, as sFID takes Inception's first 7 mixed_6 channels) as
/// spatial features, and its logits.
std::unique_ptr<FeatureNet> classifier_feature_net(Classifier net, c10::Device device, std::string name);

/// A TorchScript module from `path`: forward(x) takes [B, channels, size, size] images in [-1, 1]
/// (ours are resized bilinearly and grey is repeated to 3 channels when channels = 3) and returns
/// a tensor of pooled features, or a tuple (pooled, spatial) or (pooled, spatial, logits).
Result<std::unique_ptr<FeatureNet>> torchscript_feature_net(const std::string& path, c10::Device device,
                                                            int64_t size, int64_t channels);

}  // namespace dlab
