// Read-only memory map of a whole file (RAII). Used by the safetensors and GGUF
// readers so that multi-gigabyte checkpoints are paged in lazily.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace qsweep {

class MappedFile {
 public:
  /// Maps `path` read-only; throws Error naming the file when it cannot be opened.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

/// Opens `path` read-only and returns its descriptor (O_CLOEXEC, blocking), after checking
/// on that descriptor that it is a regular file: a FIFO, socket, device or directory is an
/// Error naming the file, never a hang. `size` (optional) receives the file size. Every
/// file qsweep reads is opened through here (directly or via MappedFile/read_text_file).
int open_regular_file(const std::string& path, size_t* size = nullptr);

/// Reads a whole (small) text file (a regular file: see open_regular_file); throws Error naming the
/// file when missing.
std::string read_text_file(const std::string& path);

/// Writes `size` bytes to `path` atomically: a temporary file in the same
/// directory, fsync, then rename — a crash never leaves a half-written file.
void write_file_atomic(const std::string& path, const void* data, size_t size);

}  // namespace qsweep
