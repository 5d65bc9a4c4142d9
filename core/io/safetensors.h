#pragma once
// The safetensors format (readable by Python's `safetensors`): an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the
// raw little-endian tensor bytes.

#include <map>
#include <string>

#include <ATen/core/Tensor.h>

#include "core/runtime/result.h"

namespace dlab {

/// Tensors by name plus string metadata.
struct TensorFile {
    std::map<std::string, at::Tensor> tensors;
    std::map<std::string, std::string> metadata;
};

/// Writes atomically (temporary file, then rename). Tensors are copied to the CPU, contiguous.
Status save_safetensors(const std::string& path, const TensorFile& file);

/// Reads and validates a file: header size, JSON, dtypes, shapes and offsets are checked, and a
/// truncated or corrupt file gets a message naming the file and the fault.
Result<TensorFile> load_safetensors(const std::string& path);

}  // namespace dlab
