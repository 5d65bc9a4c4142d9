#include "imaging/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include <ATen/ATen.h>

#include "imaging/backend.h"
#include "imaging/image_io.h"

namespace dlab::imaging {

namespace fs = std::filesystem;

namespace {

bool looks_like_image(const fs::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    static const char* known[] = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"};
    return std::any_of(std::begin(known), std::end(known), [&](const char* k) { return ext == k; });
}

std::vector<fs::path> images_in(const fs::path& dir) {
    std::vector<fs::path> files;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
        if (it->is_regular_file(ec) && looks_like_image(it->path())) files.push_back(it->path());
    std::sort(files.begin(), files.end());
    return files;
}

}  // namespace

Result<LabelledData> load_image_folder(const std::string& dir, const ImageFolderOptions& opt,
                                       ImageFolderReport* report) {
    if (opt.channels != 1 && opt.channels != 3) return Error{"image folder: channels must be 1 or 3"};
    if (opt.size < 4 || opt.size > 4096) return Error{"image folder: size must be in [4, 4096]"};
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return Error{dir + ": not a folder"};
    // Class subfolders (sorted), or the folder itself as one unlabelled set.
    std::vector<std::string> classes;
    std::vector<std::vector<fs::path>> files;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        if (!it->is_directory(ec)) continue;
        auto f = images_in(it->path());
        if (!f.empty()) {
            classes.push_back(it->path().filename().string());
            files.push_back(std::move(f));
        }
    }
    {
        std::vector<size_t> order(classes.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return classes[a] < classes[b]; });
        std::vector<std::string> c2;
        std::vector<std::vector<fs::path>> f2;
        for (size_t i : order) {
            c2.push_back(classes[i]);
            f2.push_back(std::move(files[i]));
        }
        classes = std::move(c2);
        files = std::move(f2);
    }
    const bool labelled = !classes.empty();
    if (!labelled) files.push_back(images_in(dir));

    std::vector<at::Tensor> images;
    std::vector<int64_t> labels;
    std::vector<std::string> skipped;
    const int size = static_cast<int>(opt.size);
    for (size_t c = 0; c < files.size(); ++c) {
        for (const auto& path : files[c]) {
            // The file's size and its header's image size are checked before decoding; every
            // failure names the file.
            auto bytes = read_image_bytes(path.string());
            auto decoded = bytes ? decode_to_tensor(bytes.value(), path.string(), opt.channels) : Result<at::Tensor>(Error{bytes.error()});
            if (!decoded) {
                skipped.push_back(decoded.error());
                continue;
            }
            const at::Tensor sq = backend::fit_square(decoded.value(), size);
            images.push_back(sq.permute({2, 0, 1}).to(at::kFloat).div(127.5).sub(1.0));
            labels.push_back(static_cast<int64_t>(c));
        }
    }
    if (report) report->skipped = skipped;
    if (images.empty())
        return Error{dir + ": no readable images (" +
                     (skipped.empty() ? std::string("none found") : std::to_string(skipped.size()) + " unreadable") + ")"};
    LabelledData d;
    d.x = at::stack(images);
    d.labels = at::tensor(labels, at::kLong);
    d.num_classes = labelled ? static_cast<int64_t>(classes.size()) : 0;
    d.class_names = classes;
    d.name = "images:" + fs::path(dir).filename().string();
    return d;
}

}  // namespace dlab::imaging
