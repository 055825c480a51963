#include "trainers/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace ssm::train {

AtomicFile::AtomicFile(const std::string& path) : path_(path), tmp_(path + ".tmp") {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_input(cat("cannot write '", tmp_, "': ", std::strerror(errno)));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t bytes) {
  SSM_CHECK(fd_ >= 0 && !committed_, "AtomicFile::write after commit: ", path_);
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_internal(cat("writing '", tmp_, "' failed: ", std::strerror(errno)));
    p += n;
    bytes -= size_t(n);
  }
}

void AtomicFile::commit() {
  SSM_CHECK(fd_ >= 0 && !committed_, "AtomicFile::commit twice: ", path_);
  if (::fsync(fd_) != 0) throw_internal(cat("fsync '", tmp_, "' failed: ", std::strerror(errno)));
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) throw_internal(cat("closing '", tmp_, "' failed: ", std::strerror(errno)));
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    throw_internal(cat("renaming '", tmp_, "' to '", path_, "' failed: ", std::strerror(errno)));
  committed_ = true;
  std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  fsync_dir(parent.empty() ? "." : parent.string());
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace ssm::train
