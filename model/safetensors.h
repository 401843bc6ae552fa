// safetensors: reader (mmap; single file or sharded with model.safetensors.index.json)
// and writer. Format: u64 little-endian header length N, N bytes of JSON
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the tensor bytes; offsets are relative to the end of the header.
// Every length and offset read from a file is validated before use.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/mapped_file.h"

namespace qsweep {

enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };

/// "F32", "F16", ... as written in safetensors headers.
const char* dtype_name(DType t);
/// Bytes per element.
int64_t dtype_size(DType t);

/// One tensor inside a mapped safetensors file (a view: valid while the file lives).
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  int64_t nbytes = 0;
  std::string file;  ///< the file it came from, for error messages

  int64_t numel() const;
  /// Converts F32/F16/BF16 data to fp32; any other dtype throws Error naming the tensor.
  std::vector<float> to_float() const;
  /// "F16[256, 4096]"
  std::string describe() const;
};

/// One .safetensors file, validated on open.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return file_->path(); }

 private:
  std::unique_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// All tensors of a checkpoint directory: model.safetensors, or the shards named by
/// model.safetensors.index.json (each shard opened once).
/// Owned by a shared_ptr (load_weights), its tensors can be kept as views: see
/// load_linear_weight.
class SafetensorsCheckpoint : public std::enable_shared_from_this<SafetensorsCheckpoint> {
 public:
  explicit SafetensorsCheckpoint(const std::string& dir);
  /// The tensor, or nullptr.
  const TensorView* find(const std::string& name) const;
  /// The tensor; throws Error naming the checkpoint when it is missing.
  const TensorView& get(const std::string& name) const;
  /// All tensors in file order.
  std::vector<const TensorView*> tensors() const;
  const std::vector<std::string>& files() const { return file_names_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::string> file_names_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> by_name_;
};

/// A tensor to write: bytes are copied from `data` (nbytes = numel * dtype_size).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

/// Writes a safetensors file atomically (temporary name, then rename). Tensors are
/// stored in the given order, each 8-byte aligned as the format recommends.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace qsweep
