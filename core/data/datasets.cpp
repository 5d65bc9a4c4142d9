#include "core/data/datasets.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include <ATen/ATen.h>
#include <zlib.h>

#include "core/sampling/sampler.h"

namespace dlab {

std::string fashion_mnist_dir() {
    if (const char* env = std::getenv("DLAB_FASHION_MNIST_DIR"); env && *env) return env;
    return "/usr/share/datasets/fashion-mnist";
}

namespace {

Result<std::string> read_gz(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return Error{path + ": no such file (install dataset-fashion-mnist)"};
    if (!std::filesystem::is_regular_file(path, ec)) return Error{path + ": not a regular file"};
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) return Error{path + ": cannot open"};
    // The largest IDX file of the data sets is 47 MB unpacked; more than this is not one.
    constexpr size_t kMaxBytes = size_t(1) << 30;
    std::string out;
    char buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof buf)) > 0) {
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > kMaxBytes) {
            gzclose(f);
            return Error{path + ": unpacks to more than 1 GiB; not an IDX file of a data set"};
        }
    }
    int err = 0;
    const char* msg = gzerror(f, &err);
    const std::string why = msg ? msg : "?";  // gzerror's text lives in the gzFile: copy it before gzclose
    gzclose(f);
    if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) return Error{path + ": corrupt gzip data (" + why + ")"};
    return out;
}

uint32_t be32(const std::string& s, size_t at) {
    return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) |
           (uint32_t(uint8_t(s[at + 2])) << 8) | uint32_t(uint8_t(s[at + 3]));
}

}  // namespace

Result<LabelledData> load_fashion_mnist(const std::string& dir, bool train) {
    const std::string prefix = dir + "/" + (train ? "train" : "t10k");
    auto images = read_gz(prefix + "-images-idx3-ubyte.gz");
    if (!images) return Error{images.error()};
    auto labels = read_gz(prefix + "-labels-idx1-ubyte.gz");
    if (!labels) return Error{labels.error()};
    const std::string& im = images.value();
    const std::string& lb = labels.value();
    if (im.size() < 16 || be32(im, 0) != 2051) return Error{prefix + "-images-idx3-ubyte.gz: not an IDX image file (magic)"};
    if (lb.size() < 8 || be32(lb, 0) != 2049) return Error{prefix + "-labels-idx1-ubyte.gz: not an IDX label file (magic)"};
    const int64_t n = be32(im, 4), h = be32(im, 8), w = be32(im, 12);
    // Bounds before any product of them is taken.
    if (h < 1 || w < 1 || h > 4096 || w > 4096)
        return Error{prefix + "-images-idx3-ubyte.gz: image size " + std::to_string(h) + "x" + std::to_string(w) +
                     " is out of range (1 to 4096 a side)"};
    if (n < 1) return Error{prefix + "-images-idx3-ubyte.gz: holds no images"};
    if (int64_t(be32(lb, 4)) != n) return Error{prefix + ": image and label counts differ"};
    if (int64_t(im.size()) - 16 != n * h * w || int64_t(lb.size()) - 8 != n)
        return Error{prefix + ": truncated IDX file (the header promises " + std::to_string(n) + " images of " +
                     std::to_string(h) + "x" + std::to_string(w) + ")"};
    constexpr int kClasses = 10;
    for (int64_t i = 0; i < n; ++i) {
        const int label = uint8_t(lb[size_t(8 + i)]);
        if (label >= kClasses)
            return Error{prefix + "-labels-idx1-ubyte.gz: label " + std::to_string(label) + " of image " +
                         std::to_string(i) + " is outside the classes 0 to " + std::to_string(kClasses - 1)};
    }
    LabelledData d;
    d.x = at::from_blob(const_cast<char*>(im.data() + 16), {n, 1, h, w}, at::kByte)
              .to(at::kFloat)
              .div_(127.5)
              .sub_(1.0);
    d.labels = at::from_blob(const_cast<char*>(lb.data() + 8), {n}, at::kByte).to(at::kLong);
    d.num_classes = 10;
    d.class_names = fashion_mnist_class_names();
    d.name = "fashion-mnist";
    return d;
}

const std::vector<std::string>& fashion_mnist_class_names() {
    static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    return names;
}

const std::vector<std::string>& toy_names() {
    static const std::vector<std::string> names = {"moons", "swissroll", "8gaussians", "checkerboard"};
    return names;
}

Result<LabelledData> make_toy(const std::string& name, int64_t n, uint64_t seed) {
    if (n < 1) return Error{"toy data: the point count must be positive"};
    at::Generator gen = make_generator(seed);
    const auto f64 = at::TensorOptions().dtype(at::kDouble);
    LabelledData d;
    d.name = "toy:" + name;
    if (name == "moons") {
        // Two interleaving half circles, label = which moon.
        const at::Tensor lab = at::randint(2, {n}, gen, at::TensorOptions().dtype(at::kLong));
        const at::Tensor a = at::rand({n}, gen, f64) * M_PI;
        const at::Tensor up = (lab == 0).to(at::kDouble);
        const at::Tensor x = up * at::cos(a) + (1 - up) * (1 - at::cos(a));
        const at::Tensor y = up * at::sin(a) + (1 - up) * (0.5 - at::sin(a));
        d.x = (at::stack({x - 0.5, y - 0.25}, 1) + 0.08 * at::randn({n, 2}, gen, f64)) * 1.6;
        d.labels = lab;
        d.num_classes = 2;
        d.class_names = {"upper moon", "lower moon"};
    } else if (name == "swissroll") {
        const at::Tensor u = at::rand({n}, gen, f64);
        const at::Tensor r = 1.5 * M_PI * (1 + 2 * u);
        d.x = at::stack({r * at::cos(r), r * at::sin(r)}, 1) / 5.0 + 0.05 * at::randn({n, 2}, gen, f64);
        d.labels = at::clamp_max((u * 3).to(at::kLong), 2);  // inner, middle, outer third
        d.num_classes = 3;
        d.class_names = {"inner", "middle", "outer"};
    } else if (name == "8gaussians") {
        const at::Tensor lab = at::randint(8, {n}, gen, at::TensorOptions().dtype(at::kLong));
        const at::Tensor ang = lab.to(at::kDouble) * (2 * M_PI / 8);
        d.x = at::stack({at::cos(ang), at::sin(ang)}, 1) * 1.6 + 0.1 * at::randn({n, 2}, gen, f64);
        d.labels = lab;
        d.num_classes = 8;
        for (int i = 0; i < 8; ++i) d.class_names.push_back("blob " + std::to_string(i));
    } else if (name == "checkerboard") {
        const at::Tensor x1 = at::rand({n}, gen, f64) * 4 - 2;
        const at::Tensor x2 = at::rand({n}, gen, f64) - at::randint(2, {n}, gen, at::TensorOptions().dtype(at::kLong)).to(at::kDouble) * 2;
        const at::Tensor y = x2 + (at::floor(x1) - 2 * at::floor(x1 / 2));
        d.x = at::stack({x1, y}, 1) * 0.9;
        d.labels = ((at::floor(x1) + at::floor(y)).remainder(2) == 0).to(at::kLong);
        d.num_classes = 2;
        d.class_names = {"light", "dark"};
    } else {
        return Error{"toy data: unknown set '" + name + "' (moons, swissroll, 8gaussians, checkerboard)"};
    }
    d.x = d.x.to(at::kFloat);
    return d;
}

Result<LabelledData> load_builtin_dataset(const std::string& spec) {
    if (spec == "fashion-mnist") return load_fashion_mnist(fashion_mnist_dir(), true);
    if (spec.rfind("toy:", 0) == 0) return make_toy(spec.substr(4), 100000, 12345);
    return Error{"unknown dataset '" + spec + "' (fashion-mnist, images:DIR or toy:NAME)"};
}

}  // namespace dlab
