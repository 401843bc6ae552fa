// The CPU twins of the quantization and evaluation ops of issue #16 (backend.h's last block):
// the code the CPU pipeline itself runs where it calls them (quantizers/gptq.cpp runs
// cpu_gptq_columns, the KL baseline cpu_topk_logsumexp_row, kquants' decoders and the grid the
// same kernels/*.h math), so the CUDA twins are pinned to the pipeline by
// tests/backends/quant_ops_test.cpp. calibration/capture.cpp's statistics (the importance matrix,
// AWQ's x_mean) are cpu_column_stats.
#pragma once

#include <cstdint>
#include <vector>

#include "backends/kernels/gptq_math.h"

namespace qsweep {

/// C[m, n] = A[m, k]·W[n, k]ᵀ with W fp16 (bf16 = false) or bf16 bits, widened (exactly) to
/// fp32 and multiplied by cpu_gemm_nt; for m <= kGemvW16MaxM (decode) cpu_gemv_w16 per row of
/// A instead (fp32 reordering of the same products: cpu_gemm.h).
void cpu_gemm_nt_w16(const float* A, const uint16_t* W, bool bf16, float* C, int64_t m, int64_t n,
                     int64_t k);

/// H[d, d] += XᵀX for fp16 X[n, d], in fp64 (exact products).
void cpu_hessian_accumulate_f16(const uint16_t* X, double* H, int64_t n, int64_t d);

/// sum_sq[j] += Σ_t x², sum_abs[j] += Σ_t |x| over the rows of X[n, d], fp64, tokens in order,
/// columns in parallel (the same sums for any thread count); each square added with one
/// rounding (fma), as the importance matrix was computed before it called this.
void cpu_column_stats(const float* X, int64_t n, int64_t d, double* sum_sq, double* sum_abs);

/// One logits row z[vocab] (finite): ids[0..k) of the k largest (largest first, ties to the
/// lower id) and *lse = log Σ exp(z) (max-shifted, fp64). `scratch` is reused between calls.
void cpu_topk_logsumexp_row(const float* z, int64_t vocab, int k, int32_t* ids, double* lse,
                            std::vector<int>& scratch);
/// cpu_topk_logsumexp_row over rows[rows, vocab] in parallel.
void cpu_topk_logsumexp(const float* logits, int64_t rows, int64_t vocab, int k, int32_t* top_ids,
                        double* lse);

/// y[0..n) from ggml blocks of `type` (kernels/ggml_decode.h). Error for an unknown type or an
/// n that is not a multiple of the block size.
void cpu_dequantize_ggml(int type, const uint8_t* blocks, float* y, int64_t n);

/// GPTQ's lazy-batch column loop (Backend::gptq_columns), rows in parallel in fixed blocks of
/// 64 (the same result for any thread count), the trailing update one Eigen GEMM per row block.
void cpu_gptq_columns(float* W, const float* Hinv, const int64_t* perm, float* scales, float* zeros,
                      uint8_t* codes, double* row_loss, int64_t rows, int64_t cols,
                      const kernels::GptqColumnsConfig& cfg);

}  // namespace qsweep
