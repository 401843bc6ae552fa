// A 2-D weight [rows, cols], row-major, kept in the form it is stored in: fp32 (owned or a
// view), fp16/bf16 (usually a view into a memory-mapped checkpoint) or quantized (a row
// decoder over codes: a QTensor, ggml blocks of a GGUF). Copies share the storage, so a tied
// lm_head is the embedding's storage, not a copy of it. Readers widen only what they need:
// decode_rows() a few rows, to_matrix() one whole tensor, f32_data() when it is fp32 already.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/matrix.h"

namespace qsweep {

enum class WeightDType { F32, F16, BF16, Quantized };
/// "F32", "F16", "BF16", "quantized".
const char* weight_dtype_name(WeightDType t);

/// A quantized weight's codes as one contiguous run of ggml blocks of a GGUF tensor: what an
/// off-host backend uploads as is and dequantizes there (Backend::dequantize_ggml) when the rows
/// are in logical order (row_of nullptr), and what the CPU multiplies directly at decode (#18).
/// ggml_type −1: not available.
struct GgmlBlocks {
  int ggml_type = -1;
  const void* data = nullptr;  ///< kept alive by the tensor's decoder
  size_t bytes = 0;
  /// Stored row of each logical row (llama's q/k tensors, whose rows GGUF permutes; kept alive
  /// by the decoder), or nullptr: rows in logical order.
  const int64_t* row_of = nullptr;
};

/// A quantized weight's GPTQ/AWQ-style group codes (a QTensor's arrays: one code byte per weight
/// [rows, cols], scales and zeros [n_groups, rows], g_idx [cols]): what an off-host backend
/// uploads and dequantizes there (Backend::dequantize_groups). codes nullptr: not available.
struct GroupCodes {
  const uint8_t* codes = nullptr;  ///< kept alive by the tensor's decoder, as the rest
  const float* scales = nullptr;
  const float* zeros = nullptr;
  const int32_t* g_idx = nullptr;
  int64_t n_groups = 0;
};

class WeightTensor {
 public:
  /// Writes rows [r0, r0 + n) as fp32 to out[n, cols]. Must be safe to call concurrently.
  using RowDecoder = std::function<void(int64_t r0, int64_t n, float* out)>;

  /// Empty: 0 × 0 (a weightless shell).
  WeightTensor() = default;
  /// Owned fp32.
  static WeightTensor from_matrix(MatrixRM m);
  /// fp32 rows at `data` (4-byte aligned), kept valid by `keep`.
  static WeightTensor f32_view(const float* data, int64_t rows, int64_t cols,
                               std::shared_ptr<const void> keep);
  /// fp16 or bf16 bit patterns at `data` (any alignment), kept valid by `keep`.
  static WeightTensor half_view(WeightDType dtype, const void* data, int64_t rows, int64_t cols,
                                std::shared_ptr<const void> keep);
  /// Quantized: `decode` widens rows; `stored_bytes` is the size of its codes; `type` names
  /// the format ("gptq", "q4_K", ...). Whatever `decode` needs it must keep alive itself.
  /// `blocks` / `groups`: the same codes as ggml blocks (GGUF) or group codes (GPTQ/AWQ), when
  /// they are that, for off-host uploads.
  static WeightTensor quantized(int64_t rows, int64_t cols, size_t stored_bytes, std::string type,
                                RowDecoder decode, GgmlBlocks blocks = {}, GroupCodes groups = {});

  int64_t rows() const { return owned_ ? owned_->rows() : rows_; }
  int64_t cols() const { return owned_ ? owned_->cols() : cols_; }
  int64_t size() const { return rows() * cols(); }
  bool empty() const { return size() == 0; }
  WeightDType dtype() const { return dtype_; }
  /// "F32", "F16", "BF16" or the quantized type's name.
  std::string type_name() const;
  /// Bytes of the stored form (4, 2 or the codes' bytes per weight).
  size_t stored_bytes() const;

  /// out[n, cols] = rows [r0, r0 + n) in fp32: exactly the values loading produced before
  /// (fp16/bf16 widened exactly; quantized: the format's dequantization).
  void decode_rows(int64_t r0, int64_t n, float* out) const;
  /// An fp32 copy of the whole tensor.
  MatrixRM to_matrix() const;
  /// The fp32 data without a copy when stored as F32, else nullptr.
  const float* f32_data() const {
    return owned_ ? owned_->data() : dtype_ == WeightDType::F32 ? f32_ : nullptr;
  }
  /// The raw fp16/bf16 bit patterns (possibly unaligned) when stored as F16/BF16, else nullptr.
  const void* half_data() const {
    return dtype_ == WeightDType::F16 || dtype_ == WeightDType::BF16 ? half_ : nullptr;
  }

  /// Quantized GGUF codes as ggml blocks (ggml_type −1 otherwise).
  const GgmlBlocks& ggml_blocks() const { return blocks_; }
  /// Quantized GPTQ/AWQ group codes (codes nullptr otherwise).
  const GroupCodes& group_codes() const { return groups_; }

  /// An owned fp32 matrix to edit in place (or assign, any shape): widens (or un-shares) the
  /// storage first, so other copies of this tensor keep their values.
  MatrixRM& mutable_matrix();
  /// The owned fp32 matrix: only after mutable_matrix() or from_matrix() (QS_ASSERT).
  const MatrixRM& matrix() const;

 private:
  int64_t rows_ = 0, cols_ = 0;
  WeightDType dtype_ = WeightDType::F32;
  const float* f32_ = nullptr;
  const void* half_ = nullptr;
  std::shared_ptr<MatrixRM> owned_;   ///< owned fp32 storage
  std::shared_ptr<const void> keep_;  ///< keeps a view's storage alive
  std::shared_ptr<const RowDecoder> decoder_;
  size_t qbytes_ = 0;
  std::string qtype_;
  GgmlBlocks blocks_;
  GroupCodes groups_;
};

}  // namespace qsweep
