#if !defined(QSWEEP_IN_FORMATS)
#error "formats/detail/ is private to qsweep_formats; include formats/formats.h or formats/gguf.h"
#endif
// Little-endian byte writer and bounds-checked cursor for the GGUF writer and reader.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/errors.h"

// Every GGUF read and write copies little-endian bytes as they are (memcpy).
static_assert(std::endian::native == std::endian::little, "GGUF I/O assumes a little-endian host");

namespace qsweep::gguf_detail {

class ByteWriter {
 public:
  std::vector<uint8_t> buf;

  template <typename T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const size_t at = buf.size();
    buf.resize(at + sizeof(T));
    std::memcpy(buf.data() + at, &v, sizeof(T));  // the host is little-endian (checked below)
  }
  void put_str(std::string_view s) {
    put<uint64_t>(s.size());
    buf.insert(buf.end(), s.begin(), s.end());
  }
  void put_bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf.insert(buf.end(), b, b + n);
  }
  void pad_to(uint64_t alignment) {
    while (buf.size() % alignment != 0) buf.push_back(0);
  }
};

/// Reads from [data, data + size); every read past the end throws Error naming the file,
/// the byte offset and what was being read.
class ByteCursor {
 public:
  ByteCursor(const uint8_t* data, uint64_t size, std::string path)
      : data_(data), size_(size), path_(std::move(path)) {}

  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  const std::string& path() const { return path_; }

  template <typename T>
  T get(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string get_str(const std::string& what) {
    const uint64_t at = pos_;
    const uint64_t n = get<uint64_t>(what + " (string length)");
    QS_THROW_IF_NOT(n <= left(), path_, ": byte ", at, ": ", what, ": string length ", n,
                    " exceeds the ", left(), " bytes left in the file");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), size_t(n));
    pos_ += n;
    return s;
  }
  void need(uint64_t n, const std::string& what) const {
    QS_THROW_IF_NOT(n <= left(), path_, ": byte ", pos_, ": truncated file while reading ", what,
                    " (", n, " bytes needed, ", left(), " left)");
  }

 private:
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  std::string path_;
};

}  // namespace qsweep::gguf_detail
