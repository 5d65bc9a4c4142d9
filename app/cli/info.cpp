// diffusionlab-cli info: LibTorch version, devices and threads
#include "app/cli/commands.h"

#include <cstdio>
#include <iostream>
#include <string>

#include <ATen/ATen.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/runtime/runtime.h"

namespace dlab::app {

int cmd_info(const std::vector<std::string>& argv) {
    Args args("info");
    args.option("device", "auto, cpu, cuda or cuda:N", "auto").flag("help", "show this help");
    if (auto st = args.parse(argv); !st) return usage(st.error());
    if (args.has("help")) {
        std::cout << "Usage: diffusionlab-cli info [OPTIONS]\n" << args.help();
        return 0;
    }
    const auto info = runtime_info();
    std::cout << "DiffusionLab " << version() << "\n"
              << "LibTorch " << info.torch_version << "\n"
              << "CUDA available: " << (info.cuda_available ? "yes" : "no") << " ("
              << info.cuda_devices << " device(s))\n"
              << "intra-op threads: " << info.intra_op_threads << " of "
              << info.hardware_threads << " hardware threads\n";
    auto device = select_device(args.get("device"));
    if (!device) {
        return failure("info: " + device.error());
    }
    std::cout << "device: " << device->str() << "\n";
    return 0;
}

}  // namespace dlab::app
