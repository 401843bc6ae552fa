// The per-element math of AWQ's two searches (quantize/awq.cpp), shared by the CPU twins
// (backends/cpu/cpu_awq_ops.cpp) and the CUDA twins (backends/cuda/cuda_awq_ops.cu, one thread
// per (row, group)): the min/max grid (gptq_math.h, fp16 scales) applied to one row's group.
// None of it has an a·b + c form a compiler could contract, so it rounds alike with and
// without FMA contraction (the .cu is built with --fmad=false).
#pragma once

#include <cstdint>

#include "backends/kernels/gptq_math.h"
#include "common/hd.h"

namespace qsweep::kernels {

/// The grid AWQ searches with: bits, symmetric or not, columns per group (> 0: the caller
/// resolves "one group per row" to the number of columns). Scales are rounded to fp16.
struct AwqGridConfig {
  int bits = 4;
  bool sym = false;
  int64_t group_size = 128;
};

/// AWQ's fake quantization of one row's group with per-column scales s: x = w·s on the grid
/// found over the group's x, dequantized, divided by s again:
/// q[i] = scale·(code(w[i]·s[i]) − zero) / s[i] (quantize_rtn(W·diag(s)).dequantize()·diag(s)⁻¹).
/// Returns the group's scale (infinite when it overflows fp16: the host caller reports it).
QS_HD inline float awq_fake_quant_group(const float* w, const float* s, int64_t n,
                                        const AwqGridConfig& cfg, float* q) {
  const int maxq = (1 << cfg.bits) - 1;
  float lo = 0.0f, hi = 0.0f;  // grid_range over w·s
  for (int64_t i = 0; i < n; ++i) {
    const float x = w[i] * s[i];
    lo = x < lo ? x : lo;
    hi = hi < x ? x : hi;
  }
  float scale, zero;
  grid_params(lo, hi, maxq, cfg.sym, /*fp16_scale=*/true, &scale, &zero);
  for (int64_t i = 0; i < n; ++i) {
    const float x = w[i] * s[i];
    const float dq = scale * (float(grid_quantize(x, scale, zero, maxq)) - zero);
    q[i] = dq / s[i];
  }
  return scale;
}

/// AWQ's clip candidate for one row's group: w clamped to [−max_val, max_val], then
/// quantized and dequantized on the grid found over the clamped values (written to q).
/// Returns the group's scale (infinite when it overflows fp16).
QS_HD inline float awq_clip_group(const float* w, int64_t n, float max_val,
                                  const AwqGridConfig& cfg, float* q) {
  const int maxq = (1 << cfg.bits) - 1;
  const float lo_clamp = -max_val;
  // std::clamp(v, lo, hi): v < lo ? lo : (hi < v ? hi : v).
  for (int64_t i = 0; i < n; ++i)
    q[i] = w[i] < lo_clamp ? lo_clamp : (max_val < w[i] ? max_val : w[i]);
  float lo, hi;
  grid_range(q, n, &lo, &hi);
  float scale, zero;
  grid_params(lo, hi, maxq, cfg.sym, /*fp16_scale=*/true, &scale, &zero);
  for (int64_t i = 0; i < n; ++i)
    q[i] = scale * (float(grid_quantize(q[i], scale, zero, maxq)) - zero);
  return scale;
}

}  // namespace qsweep::kernels
