// The CPU twins of AWQ's backend ops (Backend::awq_fake_quant_scaled, mean_squared_error,
// awq_clip_search): the code quantize/awq.cpp runs on the CPU, per-element math from
// kernels/awq_math.h. This file is built with the quantize library's flags (FMA contraction
// allowed, as awq.cpp always was), so the fp64 loss sums and Eigen products round as before
// the searches moved here; the shared grid math has nothing to contract.
#pragma once

#include <cstdint>

#include "backends/kernels/awq_math.h"

namespace qsweep {

/// Q[r, c] = kernels::awq_fake_quant_group over each (row, group) of W[rows, cols] with the
/// column scales s[cols]. Error when W·s is not finite or a group's scale overflows fp16.
void cpu_awq_fake_quant_scaled(const float* W, const float* s, float* Q, int64_t rows, int64_t cols,
                               const kernels::AwqGridConfig& cfg);

/// Σ (a[i] − b[i])² / n, summed in fp64 in order (0 for n = 0).
double cpu_mean_squared_error(const float* a, const float* b, int64_t n);

/// AWQ's clip search (AutoAWQ auto_clip) for W[rows, cols] and sampled inputs Xs[T, cols]: per
/// group g and row r, the max ratio among 1 − i/n_grid (i < n_shrink) whose clipped, quantized
/// group gives the smallest mean over tokens of (Xs_g·Q_gᵀ − Xs_g·W_gᵀ)²; writes
/// best_max[g·rows + r] = max |W_g[r]| · that ratio (fp32). Groups in parallel.
void cpu_awq_clip_search(const float* W, const float* Xs, int64_t T, int64_t rows, int64_t cols,
                         const kernels::AwqGridConfig& cfg, int n_grid, int n_shrink,
                         float* best_max);

}  // namespace qsweep
