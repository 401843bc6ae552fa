// qsweep_quantizers: integer weight quantizers (RTN, GPTQ) and the quantized tensor they produce.
//
// Pure math: no files, no model. A quantizer turns (weight, statistics, config) into a QTensor;
// decoding belongs to the result (QTensor::dequantize), as faiss pairs
// compute_codes with decode. Checkpoint packings of a QTensor are in formats/ (gptq_packing.h,
// awq_packing.h).
//
// Conventions shared by everything here:
//  * A weight is a Hugging Face linear weight W[out, in], row-major fp32 (MatrixRM).
//    "rows" = out = output channels, "cols" = in = input columns.
//  * The grid is the min/max grid of the GPTQ reference (IST-DASLab/gptq quant.py, find_params
//    with perchannel=True, mse=False), one (scale, zero) per output row per group of columns:
//      xmin = min(min(x), 0), xmax = max(max(x), 0)
//      sym:  xmax = max(|xmin|, xmax); xmin = -xmax if xmin < 0
//      xmin == xmax == 0  ->  xmin = -1, xmax = +1
//      scale = (xmax - xmin) / maxq,  maxq = 2^bits - 1
//      zero  = sym ? (maxq + 1) / 2 : round(-xmin / scale)
//      code  = clamp(round(x / scale) + zero, 0, maxq),   dequantized w = scale * (code - zero)
//    round() is round-half-to-even, like torch.round. Kept quirk of the reference: with sym and
//    a group that has no negative value, xmin stays 0, so the grid's negative half is unused.
//  * Departure from the reference (one on purpose): the scale is rounded to the nearest fp16
//    value right after it is computed (QuantGrid::fp16_scale, on by default), and the zero and
//    every code are computed with that rounded scale. GPTQ checkpoints store scales as fp16, so
//    this makes export -> reload bit-exact: the model evaluated from the exported file is the
//    model the quantizer produced. A scale below the smallest fp16 subnormal becomes 2^-24; a
//    scale above the fp16 range (|w| > ~1e6) is an Error.
//  * Groups: group_size = -1 means one group of all `cols` columns (per output channel).
//    Otherwise groups are runs of group_size consecutive columns (in the order GPTQ processes
//    them, see GptqConfig::desc_act); when group_size does not divide cols the last group is
//    short (cols % group_size columns). n_groups = ceil(cols / group_size).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/matrix.h"
#include "common/weight_tensor.h"

namespace qsweep {

class Backend;  // backends/backend.h

/// A quantized linear weight W[rows = out, cols = in] with per-(group, row) scale and zero.
///
/// Dequantization: W[r, c] = scales[g, r] * (codes[r, c] - zeros[g, r]) with g = g_idx[c].
struct QTensor {
  int64_t rows = 0;     ///< out features
  int64_t cols = 0;     ///< in features
  int bits = 4;         ///< 2..8
  int group_size = -1;  ///< -1 = one group of all columns; else columns per group
  bool sym = false;     ///< the grid was symmetric (zero = 2^(bits-1) everywhere)

  /// Integer codes in [0, 2^bits - 1], one byte per weight. Size rows * cols,
  /// layout [rows, cols] row-major, columns in the ORIGINAL order (not the act-order one).
  std::vector<uint8_t> codes;
  /// Scales, size n_groups() * rows, layout [n_groups, rows] (like the GPTQ `scales` tensor).
  std::vector<float> scales;
  /// Zero points, integer-valued floats in [0, 2^bits - 1]; size and layout as `scales`.
  std::vector<float> zeros;
  /// Group of each input column, size cols, indexed by ORIGINAL column, values in [0, n_groups).
  /// Without act-order g_idx[c] = c / group_size; with act-order it is a permutation of that.
  std::vector<int32_t> g_idx;

  /// 1 for group_size == -1, else ceil(cols / group_size).
  int64_t n_groups() const;
  int maxq() const { return (1 << bits) - 1; }

  uint8_t code(int64_t r, int64_t c) const { return codes[size_t(r * cols + c)]; }
  float scale(int64_t g, int64_t r) const { return scales[size_t(g * rows + r)]; }
  float zero(int64_t g, int64_t r) const { return zeros[size_t(g * rows + r)]; }

  /// W_hat[r, c] = scale * (code - zero), computed in fp32 exactly as the GPTQ reference does.
  MatrixRM dequantize() const;
  /// Rows [r0, r0 + n) of dequantize() into out[n, cols], the same values.
  void dequantize_rows(int64_t r0, int64_t n, float* out) const;

  // Storage cost is a property of a checkpoint layout: formats/gptq_packing.h
  // (gptq_bits_per_weight, gptq_storage_bytes) and formats/awq_packing.h.

  /// Throws Error when sizes disagree or a code / zero / g_idx is out of range (used when a
  /// QTensor comes from outside, e.g. from a checkpoint).
  void validate() const;
};

/// A Quantized WeightTensor ("qtensor<bits>") whose rows are t->dequantize_rows(): the model
/// holds the codes, not fp32. Keeps `t` alive.
WeightTensor qtensor_weight(std::shared_ptr<const QTensor> t);

/// One group's grid parameters.
struct GroupParams {
  float scale = 0.0f;
  float zero = 0.0f;
};

/// The min/max grid of the GPTQ reference (see the file comment), a value object handed to
/// the solvers.
struct QuantGrid {
  int bits = 4;
  bool sym = false;
  /// Round the scale to fp16 before computing zero and codes (see the file comment).
  bool fp16_scale = true;

  int maxq() const { return (1 << bits) - 1; }
  /// Parameters for the n values x[0..n) (one row of one group). Requires n >= 1, finite x.
  GroupParams find_params(const float* x, int64_t n) const;
  /// clamp(round_half_even(x / p.scale) + p.zero, 0, maxq).
  uint8_t quantize(float x, const GroupParams& p) const;
};

/// Round-to-nearest (RTN) configuration.
struct RtnConfig {
  int bits = 4;         ///< 2..8, else Error
  int group_size = -1;  ///< -1 or >= 1; a non-divisor gives a short last group
  bool sym = false;
};

/// Round-to-nearest: each (row, group) gets QuantGrid::find_params over its own weights.
/// W: [out, in] row-major, finite (else Error). g_idx[c] = c / group_size.
QTensor quantize_rtn(const MatrixRM& W, const RtnConfig& cfg);

/// GPTQ configuration (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
/// Generative Pre-trained Transformers"; the reference is IST-DASLab/gptq gptq.py fasterquant).
struct GptqConfig {
  int bits = 4;         ///< 2..8
  int group_size = -1;  ///< -1 or >= 1; a non-divisor gives a short last group
  bool sym = false;
  /// Act-order: process columns by descending diag(H) (ties: lower column first, a stable
  /// sort; torch.argsort is not stable). Groups are then runs of group_size columns in that
  /// processing order, and g_idx maps each original column to its group.
  bool desc_act = false;
  /// Compute every group's grid on the (dead-column-zeroed) W before any update, in the
  /// original column order; with desc_act this keeps g_idx[c] = c / group_size.
  /// Ignored when group_size == -1.
  bool static_groups = false;
  int block_size = 128;  ///< columns per lazy-batch block (>= 1)
  /// Damping added to diag(H): damp_percent * mean(diag(H)) (the reference's percdamp).
  double damp_percent = 0.01;
  /// When the Cholesky factorisation fails, damp_percent is multiplied by 10 (capped here) and
  /// the factorisation retried; past this cap GPTQ throws Error.
  double damp_max_percent = 1.0;
  /// Names the layer in error messages ("model.layers.3.mlp.down_proj").
  std::string layer_name;
};

struct GptqResult {
  QTensor q;
  /// Sum over all weights of (w - q)^2 / Hinv_ii^2 / 2: the sum of the reference's `Losses`.
  double loss = 0.0;
  /// Damping actually used, as a fraction of mean(diag(H)), and absolutely.
  double damp_percent_used = 0.0;
  double damp_used = 0.0;
  double seconds = 0.0;  ///< wall time of the whole call
};

/// GPTQ-quantizes W[out, in] given the layer's input Hessian H[in, in] = 2/n sum x x^T
/// (accumulated by the caller; symmetric, as it is by construction). Does what the reference
/// fasterquant does: dead inputs (H_ii == 0 -> H_ii = 1, W[:, i] = 0), act-order
/// permutation with the inverse permutation at the end, static groups, damping, the inverse
/// Hessian as the upper Cholesky factor of H^-1, blocks of block_size columns with the lazy
/// trailing update W[:, i2:] -= Err1 * Hinv[i1:i2, i2:].
///
/// Precision: W, the errors and Hinv in fp32, like the reference; H, the damping and
/// H -> Hinv (Cholesky, triangular inverse) in double, then Hinv is cast to fp32.
/// Grids as the reference finds them: per-channel (group_size -1) on W before the dead columns
/// are zeroed; dynamic groups when their first column is reached, on the lazily updated W
/// (without the updates from earlier columns of the same block).
/// Parallelism: oneTBB over blocks of 64 rows (rows are independent in GPTQ); the trailing
/// update is one Eigen GEMM per row block; the Cholesky and triangular inverse are blocked and
/// parallel too. Respects tbb::global_control. Work is split the same way whatever the thread
/// count, so the result does not depend on it.
///
/// Throws Error (naming cfg.layer_name) for bad config, mismatched shapes, NaN/Inf in W or H,
/// or an H that is not positive definite even with damp_max_percent damping.
///
/// `backend`: where the column loop runs (Backend::gptq_columns); nullptr or the CPU backend
/// runs the CPU twin (the result above). On CUDA the same per-column arithmetic runs per row
/// on the device and the trailing update is a cuBLAS GEMM, whose summation order differs from
/// Eigen's: a few codes can differ where a weight lies within rounding of a grid boundary
/// (tests/backends/quant_ops_test.cpp bounds it). On CUDA, H → Hinv is cuSOLVER's, with the
/// same damping escalation (backends' damped_upper_cholesky_of_inverse).
GptqResult gptq_quantize(const MatrixRM& W, const MatrixD& H, const GptqConfig& cfg,
                         Backend* backend = nullptr);

}  // namespace qsweep
