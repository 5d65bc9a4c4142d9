#pragma once
// Writing files so that a crash, a full disk or a cancelled job never leaves a half-written file:
// the bytes go to PATH.part, are flushed, and the temporary file is renamed over PATH.

#include <string>
#include <string_view>

#include "core/runtime/result.h"

namespace dlab {

/// Writes `bytes` to `path` atomically; on failure the previous file (if any) is untouched and the
/// message names the path and the problem.
Status write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace dlab
