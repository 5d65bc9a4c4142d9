#include "core/io/atomic_file.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace dlab {

namespace fs = std::filesystem;

Status check_output_path(const std::string& path, const char* suffix) {
    if (path.empty()) return Status::failure("an output path is empty");
    if (suffix != nullptr) {
        const size_t n = std::strlen(suffix);
        const bool ends = path.size() > n && std::equal(path.end() - static_cast<std::ptrdiff_t>(n), path.end(), suffix,
                                                       [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) ==
                                                                                   std::tolower(static_cast<unsigned char>(b)); });
        if (!ends) return Status::failure(path + ": this output is a " + suffix + " file; give a name ending in " + suffix);
    }
    const fs::path p(path);
    const fs::path folder = p.has_parent_path() ? p.parent_path() : fs::path(".");
    struct stat fst {};
    if (::stat(folder.c_str(), &fst) != 0)
        return Status::failure(path + ": the folder " + folder.string() + " does not exist");
    if (!S_ISDIR(fst.st_mode)) return Status::failure(path + ": " + folder.string() + " is not a folder");
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return Status::success();
        return Status::failure(path + ": cannot inspect: " + std::strerror(errno));
    }
    if (S_ISLNK(st.st_mode)) return Status::failure(path + ": is a symbolic link; it is not replaced (write to its target or another name)");
    if (S_ISDIR(st.st_mode)) return Status::failure(path + ": is a folder, not a file");
    if (!S_ISREG(st.st_mode)) return Status::failure(path + ": is not a regular file (a device, socket or pipe); it is not replaced");
    if ((st.st_mode & 0222) == 0 || ::access(path.c_str(), W_OK) != 0)
        return Status::failure(path + ": is read-only; it is not replaced");
    return Status::success();
}

Status write_file_atomic(const std::string& path, std::string_view bytes) {
    if (auto st = check_output_path(path); !st) return st;
    const std::string tmp = path + ".part";
    // A stale PATH.part (an earlier crash) goes first; O_EXCL | O_NOFOLLOW then never writes
    // through a link someone put there.
    struct stat pst {};
    if (::lstat(tmp.c_str(), &pst) == 0 && (S_ISREG(pst.st_mode) || S_ISLNK(pst.st_mode))) ::unlink(tmp.c_str());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        return Status::failure(path + ": cannot open for writing: " + std::strerror(errno));
    }
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            const std::string why = std::strerror(errno);
            ::close(fd);
            ::unlink(tmp.c_str());
            return Status::failure(path + ": write failed: " + why);
        }
        done += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        const std::string why = std::strerror(errno);
        ::unlink(tmp.c_str());
        return Status::failure(path + ": write failed: " + why);
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        ::unlink(tmp.c_str());
        return Status::failure(path + ": cannot move the finished file into place: " + why);
    }
    return Status::success();
}

}  // namespace dlab
