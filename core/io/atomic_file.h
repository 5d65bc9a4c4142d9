#pragma once
// Writing files so that a crash, a full disk or a cancelled job never leaves a half-written file:
// the bytes go to PATH.part, are flushed, and the temporary file is renamed over PATH.

#include <string>
#include <string_view>

#include "core/runtime/result.h"

namespace dlab {

/// Whether `path` may be written as an output: its folder exists and is a folder, and the path is
/// either absent or a regular file that is not read-only. A symbolic link, a device, a folder or a
/// read-only file is never replaced; the message names the path and the reason. Commands call it
/// before long work, so that a bad output path fails at once, not after the work. With a `suffix`
/// (such as ".png"), the name must also end in it (any letter case): the file's format is fixed.
Status check_output_path(const std::string& path, const char* suffix = nullptr);

/// Writes `bytes` to `path` atomically (PATH.part, fsync, rename) after check_output_path(); on
/// failure the previous file (if any) is untouched and the message names the path and the problem.
Status write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace dlab
