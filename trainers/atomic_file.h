// Files that appear complete or not at all: written to "<path>.tmp", flushed to disk (fsync), then
// renamed over <path> (rename is atomic on POSIX file systems). A crash leaves at worst a stray .tmp.
#pragma once
#include <cstddef>
#include <string>

namespace ssm::train {

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // opens "<path>.tmp"; BadInput when it cannot
  ~AtomicFile();                                  // not committed: closes and removes the .tmp file
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void write(const std::string& s) { write(s.data(), s.size()); }
  void commit();  // fsync, close, rename to the final path, fsync the folder
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Writes `contents` to `path` atomically (AtomicFile).
void write_file_atomic(const std::string& path, const std::string& contents);
// fsync a folder, so that renames and new entries in it are on disk. Errors are ignored where the
// file system does not support it.
void fsync_dir(const std::string& dir);

}  // namespace ssm::train
