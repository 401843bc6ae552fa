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
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* q = codes.data() + r * cols;
    float* w = W.data() + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t g = g_idx[size_t(c)];
      w[c] = scale(g, r) * (float(q[c]) - zero(g, r));
    }
  }
  return W;
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
