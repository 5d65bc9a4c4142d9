#include "core/io/safetensors.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/io/atomic_file.h"

namespace dlab {

namespace {

using json = nlohmann::json;

struct DtypeName {
    at::ScalarType type;
    const char* name;
};
const DtypeName kDtypes[] = {{at::kFloat, "F32"}, {at::kDouble, "F64"}, {at::kHalf, "F16"},
                             {at::kBFloat16, "BF16"}, {at::kLong, "I64"}, {at::kInt, "I32"},
                             {at::kShort, "I16"}, {at::kChar, "I8"}, {at::kByte, "U8"},
                             {at::kBool, "BOOL"}};

const char* dtype_name(at::ScalarType t) {
    for (const auto& d : kDtypes)
        if (d.type == t) return d.name;
    return nullptr;
}

bool parse_dtype(const std::string& s, at::ScalarType& out) {
    for (const auto& d : kDtypes)
        if (s == d.name) {
            out = d.type;
            return true;
        }
    return false;
}

}  // namespace

Status save_safetensors(const std::string& path, const TensorFile& file) {
    json header = json::object();
    if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
    std::vector<at::Tensor> cpu;
    uint64_t offset = 0;
    for (const auto& [name, tensor] : file.tensors) {
        const char* dt = dtype_name(tensor.scalar_type());
        if (!dt) return Status::failure(path + ": tensor '" + name + "' has an unsupported dtype");
        at::Tensor c = tensor.detach().to(at::kCPU).contiguous();
        const uint64_t bytes = static_cast<uint64_t>(c.numel()) * c.element_size();
        header[name] = {{"dtype", dt}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
        cpu.push_back(c);
    }
    std::string head = header.dump();
    head.append((8 - head.size() % 8) % 8, ' ');  // align the data to 8 bytes
    std::string out;
    out.reserve(8 + head.size() + offset);
    const uint64_t n = head.size();
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    out += head;
    for (const auto& c : cpu)
        out.append(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel() * c.element_size()));
    return write_file_atomic(path, out);
}

Result<TensorFile> load_safetensors(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec))
        return Error{path + ": not a regular file (a folder or a device), so not a model file"};
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) return Error{path + ": cannot open (missing or unreadable)"};
    const auto size = static_cast<uint64_t>(in.tellg());
    in.seekg(0);
    if (size < 8) return Error{path + ": not a safetensors file (" + std::to_string(size) + " bytes)"};
    unsigned char len_bytes[8];
    in.read(reinterpret_cast<char*>(len_bytes), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
    if (n == 0 || n > 100u * 1024 * 1024 || n > size - 8) {
        return Error{path + ": corrupt or truncated safetensors file (header length " +
                     std::to_string(n) + " does not fit in " + std::to_string(size) + " bytes)"};
    }
    std::string head(n, '\0');
    if (!in.read(head.data(), static_cast<std::streamsize>(n))) return Error{path + ": read failed (header)"};
    json header;
    try {
        header = json::parse(head);
    } catch (const json::exception& e) {
        return Error{path + ": corrupt safetensors header: " + e.what()};
    }
    if (!header.is_object()) return Error{path + ": corrupt safetensors header (not an object)"};
    const uint64_t data_size = size - 8 - n;
    std::string data(data_size, '\0');
    if (!in.read(data.data(), static_cast<std::streamsize>(data_size))) return Error{path + ": read failed (tensor data)"};
    if (!in) return Error{path + ": read failed"};

    TensorFile file;
    try {
        for (auto it = header.begin(); it != header.end(); ++it) {
            if (it.key() == "__metadata__") {
                for (auto m = it->begin(); m != it->end(); ++m) file.metadata[m.key()] = m->get<std::string>();
                continue;
            }
            const std::string& name = it.key();
            at::ScalarType type;
            if (!parse_dtype(it->at("dtype").get<std::string>(), type))
                return Error{path + ": tensor '" + name + "' has unknown dtype " + it->at("dtype").dump()};
            const auto shape = it->at("shape").get<std::vector<int64_t>>();
            const auto offs = it->at("data_offsets").get<std::vector<uint64_t>>();
            uint64_t numel = 1;
            for (int64_t d : shape) {
                if (d < 0) return Error{path + ": tensor '" + name + "' has a negative dimension"};
                numel *= static_cast<uint64_t>(d);
            }
            const uint64_t bytes = numel * c10::elementSize(type);
            if (offs.size() != 2 || offs[0] > offs[1] || offs[1] > data_size || offs[1] - offs[0] != bytes) {
                return Error{path + ": tensor '" + name +
                             "' has data offsets outside the file or of the wrong size (truncated?)"};
            }
            at::Tensor t = at::empty(shape, at::TensorOptions().dtype(type));
            if (bytes) std::memcpy(t.data_ptr(), data.data() + offs[0], bytes);
            file.tensors.emplace(name, t);
        }
    } catch (const json::exception& e) {
        return Error{path + ": corrupt safetensors header: " + e.what()};
    }
    return file;
}

}  // namespace dlab
