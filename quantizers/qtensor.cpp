#include <cmath>

#include "common/errors.h"
#include "quantizers/quantizers.h"

namespace qsweep {

int64_t QTensor::n_groups() const {
  if (group_size == -1) return 1;
  QS_ASSERT(group_size >= 1, "group_size ", group_size);
  return (cols + group_size - 1) / group_size;
}

MatrixRM QTensor::dequantize() const {
  MatrixRM W(rows, cols);
  dequantize_rows(0, rows, W.data());
  return W;
}

void QTensor::dequantize_rows(int64_t r0, int64_t n, float* out) const {
  QS_ASSERT(r0 >= 0 && n >= 0 && r0 + n <= rows);
  for (int64_t r = r0; r < r0 + n; ++r) {
    const uint8_t* q = codes.data() + r * cols;
    float* w = out + (r - r0) * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t g = g_idx[size_t(c)];
      w[c] = scale(g, r) * (float(q[c]) - zero(g, r));
    }
  }
}

WeightTensor qtensor_weight(std::shared_ptr<const QTensor> t) {
  QS_ASSERT(t);
  // What the codes cost packed (bits per weight) plus an fp16 scale and zero per group row.
  const size_t bytes = size_t((t->rows * t->cols * t->bits + 7) / 8) +
                       size_t(t->n_groups() * t->rows) * 4 + size_t(t->cols) * 4;
  const int64_t rows = t->rows, cols = t->cols;
  const std::string type = cat("qtensor", t->bits);
  const GroupCodes groups{t->codes.data(), t->scales.data(), t->zeros.data(), t->g_idx.data(),
                          t->n_groups()};
  return WeightTensor::quantized(
      rows, cols, bytes, type,
      [t = std::move(t)](int64_t r0, int64_t n, float* out) { t->dequantize_rows(r0, n, out); }, {},
      groups);
}

void QTensor::validate() const {
  QS_THROW_IF_NOT(rows >= 1 && cols >= 1, "QTensor: empty shape [", rows, ", ", cols, "]");
  QS_THROW_IF_NOT(bits >= 2 && bits <= 8, "QTensor: bits must be 2..8, got ", bits);
  QS_THROW_IF_NOT(group_size == -1 || group_size >= 1,
                  "QTensor: group_size must be -1 or >= 1, got ", group_size);
  const int64_t ng = n_groups();
  QS_THROW_IF_NOT(int64_t(codes.size()) == rows * cols, "QTensor: ", codes.size(),
                  " codes for shape [", rows, ", ", cols, "]");
  QS_THROW_IF_NOT(int64_t(scales.size()) == ng * rows && int64_t(zeros.size()) == ng * rows,
                  "QTensor: scales/zeros must have n_groups*rows = ", ng * rows, " entries, got ",
                  scales.size(), "/", zeros.size());
  QS_THROW_IF_NOT(int64_t(g_idx.size()) == cols, "QTensor: g_idx has ", g_idx.size(),
                  " entries for ", cols, " columns");
  const int mq = maxq();
  for (uint8_t q : codes) QS_THROW_IF_NOT(q <= mq, "QTensor: code ", int(q), " > maxq ", mq);
  for (float z : zeros)
    QS_THROW_IF_NOT(z >= 0 && z <= mq && z == std::floor(z), "QTensor: zero point ", z,
                    " is not an integer in [0, ", mq, "]");
  for (float s : scales) QS_THROW_IF_NOT(std::isfinite(s), "QTensor: scale ", s, " is not finite");
  for (int32_t g : g_idx)
    QS_THROW_IF_NOT(g >= 0 && g < ng, "QTensor: g_idx value ", g, " outside [0, ", ng, ")");
}

}  // namespace qsweep
