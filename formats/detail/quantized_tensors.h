#if !defined(QSWEEP_IN_FORMATS)
#error "formats/detail/ is private to qsweep_formats; include formats/formats.h or formats/gguf.h"
#endif
// Reading the tensors that GPTQ- and AWQ-layout checkpoints have in common:
// packed int32 codes, fp16 scales, and the final dequantize-and-check step.
#pragma once

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/errors.h"
#include "common/matrix.h"
#include "model/safetensors.h"
#include "quantizers/quantizers.h"

namespace qsweep::detail {

/// An I32 tensor of exactly `shape`; `layout` names the format in errors.
inline std::vector<int32_t> read_packed_i32(const TensorView& t, const std::vector<int64_t>& shape,
                                            const char* layout) {
  if (t.dtype != DType::I32 || t.shape != shape) {
    std::string dims;
    for (size_t i = 0; i < shape.size(); ++i) dims += cat(i ? ", " : "", shape[i]);
    throw Error(cat(t.file, ": tensor '", t.name, "' is ", t.describe(), "; the ", layout,
                    " layout in config.json implies I32[", dims, "]"));
  }
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data, v.size() * 4);
  return v;
}

/// The F16 `scales` tensor [n_groups, rows] as raw binary16 bits.
inline std::vector<uint16_t> read_scales_f16(const TensorView& s, int64_t n_groups, int64_t rows) {
  const std::vector<int64_t> shape = {n_groups, rows};
  QS_THROW_IF_NOT(s.dtype == DType::F16 && s.shape == shape, s.file, ": tensor '", s.name, "' is ",
                  s.describe(), "; expected F16[", n_groups, ", ", rows, "]");
  std::vector<uint16_t> v(static_cast<size_t>(s.numel()));
  std::memcpy(v.data(), s.data, v.size() * 2);
  return v;
}

/// Unpacks with `unpack()` (errors get `where` prefixed), refuses non-finite dequantized
/// values, keeps the QTensor in `keep` and returns it as a Quantized WeightTensor (codes).
template <typename Unpack>
WeightTensor unpack_and_dequantize(const std::string& where, Unpack&& unpack,
                                   std::vector<QTensor>* keep) {
  QTensor t;
  try {
    t = unpack();
  } catch (const Error& e) {
    throw Error(cat(where, ": ", e.what()));
  }
  std::vector<float> row(size_t(t.cols));
  for (int64_t r = 0; r < t.rows; ++r) {
    t.dequantize_rows(r, 1, row.data());
    for (float v : row)
      QS_THROW_IF_NOT(std::isfinite(v), where, ".scales holds a non-finite value");
  }
  keep->push_back(t);
  return qtensor_weight(std::make_shared<const QTensor>(std::move(t)));
}

}  // namespace qsweep::detail
