// Type lookup, dispatch and the row-parallel tensor entry points.
#include "quantizers/kquants/kquants.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "common/errors.h"

namespace qsweep::kquants {

std::optional<QuantType> type_from_name(std::string_view name) {
  for (const TypeTraits& t : kTypeTraits) {
    if (name == t.name) return t.type;
  }
  return std::nullopt;
}

std::optional<QuantType> type_from_ggml(int32_t ggml_type) {
  for (const TypeTraits& t : kTypeTraits) {
    if (t.ggml_type == ggml_type) return t.type;
  }
  return std::nullopt;
}

size_t row_size(QuantType t, int64_t n) {
  const TypeTraits& tr = traits(t);
  QS_THROW_IF_NOT(n >= 0 && n % tr.block_size == 0, tr.name, ": row length ", n,
                  " is not a multiple of the block size ", tr.block_size);
  return static_cast<size_t>(n / tr.block_size) * static_cast<size_t>(tr.type_size);
}

void quantize_row_ref(QuantType t, const float* x, void* blocks, int64_t n) {
  traits(t).quantize_ref(x, blocks, n);
}

void quantize_row(QuantType t, const float* x, void* blocks, int64_t n, const float* imatrix) {
  traits(t).quantize(x, blocks, n, imatrix);
}

void dequantize_row(QuantType t, const void* blocks, float* y, int64_t n) {
  traits(t).dequantize(blocks, y, n);
}

std::vector<uint8_t> quantize_tensor(QuantType t, const float* W, int64_t rows, int64_t cols,
                                     const float* imatrix) {
  const TypeTraits& tr = traits(t);
  QS_THROW_IF_NOT(rows >= 0, tr.name, ": negative row count ", rows);
  const size_t rs = row_size(t, cols);
  const size_t total = static_cast<size_t>(
      mul_checked(rows, static_cast<int64_t>(rs), cat(tr.name, " tensor size")));
  std::vector<uint8_t> out(total);
  if (total == 0) return out;
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, rows), [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t row = r.begin(); row < r.end(); ++row) {
          tr.quantize(W + row * cols, out.data() + static_cast<size_t>(row) * rs, cols, imatrix);
        }
      });
  return out;
}

std::vector<float> dequantize_tensor(QuantType t, std::span<const uint8_t> data, int64_t rows,
                                     int64_t cols) {
  const TypeTraits& tr = traits(t);
  QS_THROW_IF_NOT(rows >= 0, tr.name, ": negative row count ", rows);
  const size_t rs = row_size(t, cols);
  QS_THROW_IF_NOT(data.size() == static_cast<size_t>(rows) * rs, tr.name, ": ", data.size(),
                  " bytes given for a [", rows, ", ", cols, "] tensor, expected ",
                  static_cast<size_t>(rows) * rs);
  std::vector<float> out(
      static_cast<size_t>(mul_checked(rows, cols, cat(tr.name, " dequantized tensor size"))));
  if (out.empty()) return out;
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, rows), [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t row = r.begin(); row < r.end(); ++row) {
          tr.dequantize(data.data() + static_cast<size_t>(row) * rs, out.data() + row * cols, cols);
        }
      });
  return out;
}

}  // namespace qsweep::kquants
