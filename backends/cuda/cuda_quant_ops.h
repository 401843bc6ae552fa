// Issue #16's CUDA twins (cuda_quant_ops.cu), called by CudaBackend (cuda_backend.cu). Only
// .cu files include this header. Every function queues its work on `stream`; scratch memory
// comes from `b` (the CudaBackend itself), so errors say how much was asked for.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/backend.h"

namespace qsweep::cuda_ops {

void gemm_nt_w16(Backend& b, cudaStream_t s, cublasHandle_t blas, const float* A, const uint16_t* W,
                 bool bf16, float* C, int64_t m, int64_t n, int64_t k);
/// gemm_nt_w16 with the caller's buffer for the narrowed activations (a16: m·k entries), so a
/// caller that reuses it allocates nothing per call.
void gemm_nt_w16_with(cudaStream_t s, cublasHandle_t blas, const float* A, const uint16_t* W,
                      bool bf16, float* C, int64_t m, int64_t n, int64_t k, uint16_t* a16);
void hessian_accumulate_f16(Backend& b, cudaStream_t s, cublasHandle_t blas, const uint16_t* X,
                            double* H, int64_t n, int64_t d);
void column_stats(cudaStream_t s, const float* X, int64_t n, int64_t d, double* sum_sq,
                  double* sum_abs);
void topk_logsumexp(cudaStream_t s, const float* logits, int64_t rows, int64_t vocab, int k,
                    int32_t* top_ids, double* lse);
void dequantize_ggml(cudaStream_t s, int type, const uint8_t* blocks, float* y, int64_t n);
void add_diagonal(cudaStream_t s, double* H, int64_t d, double v);
void gptq_columns(Backend& b, cudaStream_t s, cublasHandle_t blas, float* W, const float* Hinv,
                  const int64_t* perm, float* scales, float* zeros, uint8_t* codes,
                  double* row_loss, int64_t rows, int64_t cols,
                  const kernels::GptqColumnsConfig& cfg);
// AWQ's searches (cuda_awq_ops.cu).
void awq_fake_quant_scaled(cudaStream_t s, const float* W, const float* sc, float* Q, int64_t rows,
                           int64_t cols, const kernels::AwqGridConfig& cfg);
double mean_squared_error(Backend& b, cudaStream_t s, const float* x, const float* y, int64_t n);
void awq_clip_search(Backend& b, cudaStream_t s, cublasHandle_t blas, const float* W,
                     const float* Xs, int64_t T, int64_t rows, int64_t cols,
                     const kernels::AwqGridConfig& cfg, int n_grid, int n_shrink, float* best_max);

}  // namespace qsweep::cuda_ops
