#pragma once
// core/data/ -- where training data comes from: the Fashion-MNIST IDX files of Debian's
// dataset-fashion-mnist package and labelled 2-D toy sets (moons, swiss roll, 8 Gaussians,
// checkerboard), as tensors in model space. Image folders are read by the imaging library.
//
// Dataset readers: Fashion-MNIST from Debian's IDX .gz files, and labelled 2-D toy sets.

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/runtime/result.h"

namespace dlab {

/// A labelled dataset held in memory.
struct LabelledData {
    at::Tensor x;       ///< images [N,C,H,W] float32 in [-1, 1], or points [N,D]
    at::Tensor labels;  ///< [N] int64
    /// Optional, like x: each element's standard deviation when x is the mean of a distribution
    /// (latent posteriors); training then draws x + x_std * noise afresh every step.
    at::Tensor x_std;
    int64_t num_classes = 0;
    std::vector<std::string> class_names;
    std::string name;
};

/// Where the Fashion-MNIST files are: $DLAB_FASHION_MNIST_DIR, else Debian's
/// /usr/share/datasets/fashion-mnist.
std::string fashion_mnist_dir();

/// The 10 Fashion-MNIST class names, in label order.
const std::vector<std::string>& fashion_mnist_class_names();

/// Reads the train (60000) or test (10000) split from `dir`, checking magic numbers and sizes.
Result<LabelledData> load_fashion_mnist(const std::string& dir, bool train);

/// The names of the toy sets: "moons", "swissroll", "8gaussians", "checkerboard".
const std::vector<std::string>& toy_names();
/// n points of a 2-D toy set (scaled to about unit variance) with their labels.
Result<LabelledData> make_toy(const std::string& name, int64_t n, uint64_t seed);

/// A built-in training set by name: "fashion-mnist" (the train split) or "toy:NAME" (100,000
/// points, fixed seed). Image folders are read by the imaging library instead; any other name is
/// an error listing the choices.
Result<LabelledData> load_builtin_dataset(const std::string& spec);

}  // namespace dlab
