#pragma once
// A folder of images as a training set: PNG, JPEG, BMP, GIF, TIFF, WebP or PNM files, with class subfolders as labels.

#include <string>
#include <vector>

#include "core/data/datasets.h"
#include "core/runtime/result.h"

namespace dlab::imaging {

/// How the images of a folder are brought to the model's size.
struct ImageFolderOptions {
    int64_t size = 28;      ///< square side after resizing the short side and centre-cropping
    int channels = 1;       ///< 1 (grey) or 3 (RGB)
};

/// What loading a folder found besides the data.
struct ImageFolderReport {
    std::vector<std::string> skipped;  ///< unreadable files, with why
};

/// Reads `dir`: when it has subfolders holding images, each subfolder is a class (sorted by name);
/// otherwise every image is of one class ("images", num_classes 0: unconditional). Images are
/// resized (short side to `size`, area interpolation) and centre-cropped, scaled to [-1, 1].
/// Unreadable files are skipped and listed in the report; no readable image at all is an error.
Result<LabelledData> load_image_folder(const std::string& dir, const ImageFolderOptions& options,
                                       ImageFolderReport* report = nullptr);

}  // namespace dlab::imaging
