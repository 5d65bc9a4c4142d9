#pragma once
// Shared by the core tests: the first n Fashion-MNIST images of a split (a fatal error naming the
// problem when the data set is missing) and the tiny UNet that trains in seconds on 2 cores.
#include <QtGlobal>

#include "core/data/datasets.h"
#include "core/io/model_io.h"

namespace dlab::test {

inline LabelledData fashion_subset(int64_t n, bool train = true) {
    auto all = load_fashion_mnist(fashion_mnist_dir(), train);
    if (!all) qFatal("Fashion-MNIST: %s", all.error().c_str());
    LabelledData d = all.value();
    d.x = d.x.narrow(0, 0, n).clone();
    d.labels = d.labels.narrow(0, 0, n).clone();
    return d;
}

inline ModelConfig tiny_unet() {
    ModelConfig c;
    c.network.base_channels = 8;
    c.network.channel_mult = {1, 2};
    c.network.attention_resolutions = {14};
    c.network.num_classes = 10;
    return c;
}

}  // namespace dlab::test
