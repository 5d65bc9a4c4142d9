// libFuzzer target: the Fashion-MNIST IDX reader on hostile files. The input is split into an
// image file and a label file (the first byte says where), written under the data set's names
// (zlib reads plain files as well as gzip) and loaded.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

#include "core/data/datasets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string dir = "/tmp/dlab-fuzz-idx-" + std::to_string(::getpid());
    static const bool made = ::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST;
    if (!made || size < 1) return 0;
    const size_t split = size > 1 ? 1 + (size_t(data[0]) * (size - 1)) / 255 : 1;
    auto write = [&](const std::string& name, const uint8_t* p, size_t n) {
        if (FILE* f = std::fopen((dir + "/" + name).c_str(), "wb")) {
            std::fwrite(p, 1, n, f);
            std::fclose(f);
        }
    };
    write("t10k-images-idx3-ubyte.gz", data + 1, split - 1);
    write("t10k-labels-idx1-ubyte.gz", data + split, size - split);
    (void)dlab::load_fashion_mnist(dir, false);
    return 0;
}
