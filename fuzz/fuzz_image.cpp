// libFuzzer target: an image file as the forward view, `forward --image` and image-folder training
// read it. The header's declared size is checked before OpenCV decodes; a decoded image is 8-bit,
// of the asked channels and within the pixel bound; every failure is a message naming the file.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <opencv2/core.hpp>

#include "imaging/image_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::vector<unsigned char> bytes(data, data + size);
    for (int channels : {1, 3}) {
        auto m = dlab::imaging::decode_image(bytes, "fuzz.img", channels);
        if (!m) {
            if (m.error().rfind("fuzz.img: ", 0) != 0) std::abort();
            continue;
        }
        if (m->depth() != CV_8U || m->channels() != channels || m->empty() ||
            int64_t(m->cols) * m->rows > dlab::imaging::kMaxImagePixels)
            std::abort();
    }
    return 0;
}
