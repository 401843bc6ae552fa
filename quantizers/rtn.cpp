// The min/max grid of the GPTQ reference (quant.py find_params / quantize) and RTN on top of it.
#include <algorithm>
#include <cmath>

#include "backends/kernels/gptq_math.h"
#include "common/errors.h"
#include "common/half.h"
#include "quantizers/detail/checks.h"
#include "quantizers/quantizers.h"

namespace qsweep {

// The grid's arithmetic is backends/kernels/gptq_math.h's, shared with the CUDA twin.
GroupParams QuantGrid::find_params(const float* x, int64_t n) const {
  QS_ASSERT(n >= 1);
  float xmin, xmax;  // min(x, 0), max(x, 0)
  kernels::grid_range(x, n, &xmin, &xmax);
  GroupParams p;
  kernels::grid_params(xmin, xmax, maxq(), sym, fp16_scale, &p.scale, &p.zero);
  if (fp16_scale && !std::isfinite(p.scale)) {
    GroupParams raw;
    kernels::grid_params(xmin, xmax, maxq(), sym, false, &raw.scale, &raw.zero);
    throw Error(cat("quantization grid: scale ", raw.scale,
                    " overflows fp16 (weights of magnitude ", std::max(-xmin, xmax), ")"));
  }
  return p;
}

uint8_t QuantGrid::quantize(float x, const GroupParams& p) const {
  return kernels::grid_quantize(x, p.scale, p.zero, maxq());
}

QTensor quantize_rtn(const MatrixRM& W, const RtnConfig& cfg) {
  detail::check_grid_config(cfg.bits, cfg.group_size, "RTN");
  QS_THROW_IF_NOT(W.rows() >= 1 && W.cols() >= 1, "RTN: empty weight [", W.rows(), ", ", W.cols(),
                  "]");
  QS_THROW_IF_NOT(W.allFinite(), "RTN: the weight contains NaN or Inf");

  QTensor q;
  q.rows = W.rows();
  q.cols = W.cols();
  q.bits = cfg.bits;
  q.group_size = cfg.group_size;
  q.sym = cfg.sym;
  const int64_t gs = cfg.group_size == -1 ? q.cols : cfg.group_size;
  const int64_t ng = q.n_groups();
  q.codes.resize(size_t(q.rows * q.cols));
  q.scales.resize(size_t(ng * q.rows));
  q.zeros.resize(size_t(ng * q.rows));
  q.g_idx.resize(size_t(q.cols));
  for (int64_t c = 0; c < q.cols; ++c) q.g_idx[size_t(c)] = int32_t(c / gs);

  const QuantGrid grid{cfg.bits, cfg.sym, true};
  for (int64_t r = 0; r < q.rows; ++r) {
    const float* w = W.data() + r * q.cols;
    uint8_t* codes = q.codes.data() + r * q.cols;
    for (int64_t g = 0; g < ng; ++g) {
      const int64_t c0 = g * gs, c1 = std::min(c0 + gs, q.cols);  // short last group
      const GroupParams p = grid.find_params(w + c0, c1 - c0);
      q.scales[size_t(g * q.rows + r)] = p.scale;
      q.zeros[size_t(g * q.rows + r)] = p.zero;
      for (int64_t c = c0; c < c1; ++c) codes[c] = grid.quantize(w[c], p);
    }
  }
  return q;
}

}  // namespace qsweep
