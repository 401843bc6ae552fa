// The min/max grid of the GPTQ reference (quant.py find_params / quantize) and RTN on top of it.
#include <algorithm>
#include <cmath>

#include "common/errors.h"
#include "common/half.h"
#include "quantizers/detail/checks.h"
#include "quantizers/quantizers.h"

namespace qsweep {

GroupParams QuantGrid::find_params(const float* x, int64_t n) const {
  QS_ASSERT(n >= 1);
  const float maxq_f = float(maxq());
  float xmin = 0.0f, xmax = 0.0f;  // min(x, 0), max(x, 0)
  for (int64_t i = 0; i < n; ++i) {
    xmin = std::min(xmin, x[i]);
    xmax = std::max(xmax, x[i]);
  }
  if (sym) {
    xmax = std::max(std::fabs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = +1.0f;
  }
  GroupParams p;
  p.scale = (xmax - xmin) / maxq_f;
  if (fp16_scale) {
    // Departure from the reference: the scale is stored as fp16 by every GPTQ checkpoint, so
    // quantize with exactly that value (see quantizers.h).
    p.scale = half_to_float(float_to_half(p.scale));
    if (p.scale == 0.0f) p.scale = half_to_float(1);  // smallest fp16 subnormal, 2^-24
    QS_THROW_IF_NOT(std::isfinite(p.scale), "quantization grid: scale ", (xmax - xmin) / maxq_f,
                    " overflows fp16 (weights of magnitude ", std::max(-xmin, xmax), ")");
  }
  if (sym) {
    p.zero = (maxq_f + 1.0f) / 2.0f;
  } else {
    // -xmin / scale <= maxq up to the fp16 rounding of the scale; the clamp keeps it on the grid.
    p.zero = std::clamp(std::nearbyint(-xmin / p.scale), 0.0f, maxq_f);
  }
  return p;
}

uint8_t QuantGrid::quantize(float x, const GroupParams& p) const {
  const float q = std::nearbyint(x / p.scale) + p.zero;  // round half to even, as torch.round
  return uint8_t(std::clamp(q, 0.0f, float(maxq())));
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
