// CUDA twins of issue #16's ops (backend.h's last block). The per-element math is the CPU
// twins' own (backends/kernels/*.h, compiled here with --fmad=false so it rounds alike);
// GEMMs are cuBLAS (fp32 SGEMM without TF32 for GPTQ's trailing update, cublasGemmEx with
// fp16/bf16 inputs and fp32 accumulation for the 16-bit weight GEMM and the fp16 Hessian).
// Kernels favour being obviously the CPU arithmetic over speed.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "backends/cuda/cuda_check.cuh"
#include "backends/cuda/cuda_quant_ops.h"
#include "backends/kernels/ggml_decode.h"
#include "backends/kernels/gptq_math.h"
#include "common/errors.h"

namespace qsweep::cuda_ops {

namespace {

// fp32 → fp16 / bf16 bits (round to nearest even, the same as common/half.h).
__global__ void narrow_kernel(const float* x, uint16_t* y, int64_t n, bool bf16) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < n) y[t] = bf16 ? float_to_bf16(x[t]) : float_to_half(x[t]);
}

__global__ void add_f32_to_f64_kernel(const float* tile, double* H, int64_t n) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < n) H[t] += double(tile[t]);
}

// One thread per column, tokens in order: the CPU twin's sums.
__global__ void column_stats_kernel(const float* X, int64_t n, int64_t d, double* sum_sq,
                                    double* sum_abs) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= d) return;
  double sq = sum_sq[j], ab = sum_abs[j];
  for (int64_t t = 0; t < n; ++t) {
    const double v = X[t * d + j];
    ab += fabs(v);
    sq = fma(v, v, sq);  // explicit: --fmad=false does not apply
  }
  sum_sq[j] = sq;
  sum_abs[j] = ab;
}

// One row per block (kThreads threads). lse: max, then Σ exp in fp64. Top-k: k rounds of a
// block arg-max over the ids ordered after the previous pick ("better" = larger value, ties
// to the lower id, as the CPU's partial_sort comparator; NaN never qualifies).
__global__ void topk_lse_kernel(const float* logits, int64_t vocab, int k, int32_t* top_ids,
                                double* lse) {
  __shared__ float sv[kThreads];
  __shared__ int64_t si[kThreads];
  __shared__ double sd[kThreads];
  const float* z = logits + int64_t(blockIdx.x) * vocab;
  const int t = threadIdx.x;
  float mx = -INFINITY;
  for (int64_t j = t; j < vocab; j += blockDim.x) mx = fmaxf(mx, z[j]);
  sv[t] = mx;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (t < o) sv[t] = fmaxf(sv[t], sv[t + o]);
    __syncthreads();
  }
  mx = sv[0];
  __syncthreads();
  double s = 0;
  for (int64_t j = t; j < vocab; j += blockDim.x) s += exp(double(z[j]) - double(mx));
  sd[t] = s;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (t < o) sd[t] += sd[t + o];
    __syncthreads();
  }
  if (t == 0) lse[blockIdx.x] = double(mx) + log(sd[0]);
  float pv = INFINITY;
  int64_t pi = -1;
  for (int r = 0; r < k; ++r) {
    float bv = -INFINITY;
    int64_t bi = -1;
    for (int64_t j = t; j < vocab; j += blockDim.x) {
      const float v = z[j];
      const bool after = !isnan(v) && (pi < 0 || v < pv || (v == pv && j > pi));
      if (after && (bi < 0 || v > bv)) {  // j ascending: ties keep the lower id
        bv = v;
        bi = j;
      }
    }
    sv[t] = bv;
    si[t] = bi;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
      if (t < o) {
        const float v2 = sv[t + o];
        const int64_t i2 = si[t + o];
        const bool take = i2 >= 0 && (si[t] < 0 || v2 > sv[t] || (v2 == sv[t] && i2 < si[t]));
        if (take) {
          sv[t] = v2;
          si[t] = i2;
        }
      }
      __syncthreads();
    }
    pv = sv[0];
    pi = si[0];
    if (t == 0) top_ids[int64_t(blockIdx.x) * k + r] = int32_t(pi);
    __syncthreads();
  }
}

__global__ void dequantize_ggml_kernel(int type, int bw, int bb, const uint8_t* blocks, float* y,
                                       int64_t n) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < n) y[t] = ggml::decode(type, blocks + (t / bw) * bb, int(t % bw));
}

__global__ void add_diagonal_kernel(double* H, int64_t d, double v) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < d) H[i * d + i] += v;
}

// One thread per weight row through one GPTQ block; w1/err1 are column-major [count, rows].
__global__ void gptq_block_kernel(float* W, const float* Hinv, const int64_t* perm, float* scales,
                                  float* zeros, uint8_t* codes, double* row_loss, float* w1,
                                  float* err1, int64_t rows, int64_t cols, int64_t i1,
                                  int64_t count, kernels::GptqColumnsConfig cfg) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  for (int64_t i = 0; i < count; ++i) w1[i * rows + r] = W[r * cols + i1 + i];
  row_loss[r] += kernels::gptq_row_block(w1 + r, err1 + r, rows, W + r * cols, Hinv, perm, scales,
                                         zeros, codes + r * cols, r, rows, cols, i1, count, cfg);
}

}  // namespace

void gemm_nt_w16_with(cudaStream_t s, cublasHandle_t blas, const float* A, const uint16_t* W,
                      bool bf16, float* C, int64_t m, int64_t n, int64_t k, uint16_t* a16) {
  if (m == 0 || n == 0) return;
  // cublasGemmEx takes A and B of one type: the activations are rounded to the weight's type
  // (the tensor-core path), products accumulated in fp32.
  narrow_kernel<<<blocks_for(m * k), kThreads, 0, s>>>(A, a16, m * k, bf16);
  QS_CUDA_CHECK(cudaGetLastError());
  const cudaDataType_t t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
  const float one = 1.0f, zero = 0.0f;
  // Row-major C[m, n] = A·Wᵀ is column-major Cᵀ[n, m] = W·Aᵀ: W col-major [k, n] transposed.
  QS_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &one, W, t,
                               int(k), a16, t, int(k), &zero, C, CUDA_R_32F, int(n),
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void gemm_nt_w16(Backend& b, cudaStream_t s, cublasHandle_t blas, const float* A, const uint16_t* W,
                 bool bf16, float* C, int64_t m, int64_t n, int64_t k) {
  if (m == 0 || n == 0) return;
  BackendArray<uint16_t> a16(b, size_t(m * k));
  gemm_nt_w16_with(s, blas, A, W, bf16, C, m, n, k, a16.get());
  QS_CUDA_CHECK(cudaStreamSynchronize(s));  // a16 is released on return
}

void hessian_accumulate_f16(Backend& b, cudaStream_t s, cublasHandle_t blas, const uint16_t* X,
                            double* H, int64_t n, int64_t d) {
  if (n == 0 || d == 0) return;
  constexpr int64_t kSlab = 512;
  BackendArray<float> tile(b, size_t(d * d));
  const float one = 1.0f, zero = 0.0f;
  for (int64_t t0 = 0; t0 < n; t0 += kSlab) {
    const int64_t ns = std::min(kSlab, n - t0);
    // Row-major X[ns, d] is column-major Xc[d, ns]; XᵀX = Xc·Xcᵀ (symmetric: either layout).
    QS_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_T, int(d), int(d), int(ns), &one,
                                 X + t0 * d, CUDA_R_16F, int(d), X + t0 * d, CUDA_R_16F, int(d),
                                 &zero, tile.get(), CUDA_R_32F, int(d), CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
    add_f32_to_f64_kernel<<<blocks_for(d * d), kThreads, 0, s>>>(tile.get(), H, d * d);
    QS_CUDA_CHECK(cudaGetLastError());
  }
  QS_CUDA_CHECK(cudaStreamSynchronize(s));
}

void column_stats(cudaStream_t s, const float* X, int64_t n, int64_t d, double* sum_sq,
                  double* sum_abs) {
  if (d == 0) return;
  column_stats_kernel<<<blocks_for(d), kThreads, 0, s>>>(X, n, d, sum_sq, sum_abs);
  QS_CUDA_CHECK(cudaGetLastError());
}

void topk_logsumexp(cudaStream_t s, const float* logits, int64_t rows, int64_t vocab, int k,
                    int32_t* top_ids, double* lse) {
  QS_THROW_IF_NOT(k >= 1 && k <= vocab, "top-k: k ", k, " must be in [1, vocab ", vocab, "]");
  QS_THROW_IF_NOT(rows < (int64_t(1) << 31), "top-k: ", rows, " rows in one call; split them");
  if (rows == 0) return;
  topk_lse_kernel<<<unsigned(rows), kThreads, 0, s>>>(logits, vocab, k, top_ids, lse);
  QS_CUDA_CHECK(cudaGetLastError());
}

void dequantize_ggml(cudaStream_t s, int type, const uint8_t* blocks, float* y, int64_t n) {
  const int bw = ggml::block_weights(type), bb = ggml::block_bytes(type);
  QS_THROW_IF_NOT(bw > 0, "dequantize: ggml type ", type, " is not one qsweep decodes");
  QS_THROW_IF_NOT(n >= 0 && n % bw == 0, "dequantize: ", n,
                  " weights are not a whole number of blocks of ", bw);
  if (n == 0) return;
  dequantize_ggml_kernel<<<blocks_for(n), kThreads, 0, s>>>(type, bw, bb, blocks, y, n);
  QS_CUDA_CHECK(cudaGetLastError());
}

void add_diagonal(cudaStream_t s, double* H, int64_t d, double v) {
  if (d == 0) return;
  add_diagonal_kernel<<<blocks_for(d), kThreads, 0, s>>>(H, d, v);
  QS_CUDA_CHECK(cudaGetLastError());
}

void gptq_columns(Backend& b, cudaStream_t s, cublasHandle_t blas, float* W, const float* Hinv,
                  const int64_t* perm, float* scales, float* zeros, uint8_t* codes,
                  double* row_loss, int64_t rows, int64_t cols,
                  const kernels::GptqColumnsConfig& cfg) {
  if (rows == 0 || cols == 0) return;
  const int64_t bs = std::min<int64_t>(cfg.block_size, cols);
  BackendArray<float> w1(b, size_t(bs * rows)), err1(b, size_t(bs * rows));
  const float minus_one = -1.0f, one = 1.0f;
  for (int64_t i1 = 0; i1 < cols; i1 += cfg.block_size) {
    const int64_t i2 = std::min(i1 + int64_t(cfg.block_size), cols), count = i2 - i1;
    gptq_block_kernel<<<blocks_for(rows, 128), 128, 0, s>>>(W, Hinv, perm, scales, zeros, codes,
                                                            row_loss, w1.get(), err1.get(), rows,
                                                            cols, i1, count, cfg);
    QS_CUDA_CHECK(cudaGetLastError());
    if (i2 < cols) {
      // Row-major W[:, i2:] −= Err[rows, count]·Hinv[i1:i2, i2:]; column-major:
      // W[:, i2:]ᵀ (rest × rows, ld cols) −= Hinv-blockᵀ (rest × count, ld cols) · Errᵀ, with
      // Err stored column-major [rows, count] (ld rows), hence OP_T.
      QS_CUBLAS_CHECK(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_T, int(cols - i2), int(rows),
                                  int(count), &minus_one, Hinv + i1 * cols + i2, int(cols),
                                  err1.get(), int(rows), &one, W + i2, int(cols)));
    }
  }
  QS_CUDA_CHECK(cudaStreamSynchronize(s));  // w1/err1 are released on return
}

}  // namespace qsweep::cuda_ops
