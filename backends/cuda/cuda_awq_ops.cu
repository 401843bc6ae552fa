// CUDA twins of AWQ's search ops (backend.h's AWQ block). The per-(row, group) math is the CPU
// twins' own (kernels/awq_math.h, built here with --fmad=false); the GEMMs are cuBLAS fp32
// SGEMMs (no TF32), strided-batched over groups of equal width for the clip search.
#include <algorithm>
#include <cmath>

#include "backends/cuda/cuda_check.cuh"
#include "backends/cuda/cuda_quant_ops.h"
#include "backends/kernels/awq_math.h"
#include "common/errors.h"

namespace qsweep::cuda_ops {

namespace {

// Device bytes the clip search's per-chunk buffers (two [T, rows] outputs and the clipped
// weights per group) may take; groups are processed in chunks that fit.
constexpr size_t kClipChunkBytes = size_t(512) << 20;

// One thread per (row, group).
__global__ void fake_quant_kernel(const float* W, const float* s, float* Q, int64_t rows,
                                  int64_t cols, kernels::AwqGridConfig cfg) {
  const int64_t groups = (cols + cfg.group_size - 1) / cfg.group_size;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= rows * groups) return;
  const int64_t r = t / groups, c0 = (t % groups) * cfg.group_size;
  const int64_t n = cols - c0 < cfg.group_size ? cols - c0 : cfg.group_size;
  kernels::awq_fake_quant_group(W + r * cols + c0, s + c0, n, cfg, Q + r * cols + c0);
}

// One block: per-thread fp64 partial sums over a fixed stride, then a fixed tree.
__global__ void mse_kernel(const float* a, const float* b, int64_t n, double* out) {
  __shared__ double sd[kThreads];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double d = double(a[i]) - double(b[i]);
    acc += d * d;
  }
  sd[threadIdx.x] = acc;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (int(threadIdx.x) < o) sd[threadIdx.x] += sd[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = n > 0 ? sd[0] / double(n) : 0.0;
}

// Clip search, one thread per (group b of the chunk, row r). W_g starts at column c0 + b·gs.
__global__ void clip_init_kernel(const float* W, int64_t rows, int64_t cols, int64_t c0, int64_t gs,
                                 int64_t n, int64_t nb, float* org_max, float* best_max,
                                 double* min_err) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= nb * rows) return;
  const int64_t b = t / rows, r = t % rows;
  const float* w = W + r * cols + c0 + b * gs;
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = fmaxf(m, fabsf(w[i]));
  org_max[t] = m;
  best_max[t] = m;
  min_err[t] = 1e9;
}

__global__ void clip_candidate_kernel(const float* W, int64_t rows, int64_t cols, int64_t c0,
                                      int64_t gs, int64_t n, int64_t nb, const float* org_max,
                                      float ratio, kernels::AwqGridConfig cfg, float* Q) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= nb * rows) return;
  const int64_t b = t / rows, r = t % rows;
  kernels::awq_clip_group(W + r * cols + c0 + b * gs, n, org_max[t] * ratio, cfg,
                          Q + (b * rows + r) * n);
}

__global__ void clip_error_kernel(const float* cur, const float* org, int64_t T, int64_t rows,
                                  int64_t nb, const float* org_max, float ratio, double* min_err,
                                  float* best_max) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= nb * rows) return;
  const int64_t b = t / rows, r = t % rows;
  const float* c = cur + b * T * rows + r;
  const float* o = org + b * T * rows + r;
  double e = 0.0;
  for (int64_t i = 0; i < T; ++i) {
    const float d = c[i * rows] - o[i * rows];
    e += double(d) * double(d);
  }
  e /= double(T);
  if (e < min_err[t]) {
    min_err[t] = e;
    best_max[t] = org_max[t] * ratio;
  }
}

// out[b][T, rows] = X[:, c0 + b·gs : +n] · B_bᵀ, B_b = [rows, n] at B + b·strideB (ld ldb).
void batched_gemm_nt(cublasHandle_t blas, const float* X, int64_t T, int64_t cols, int64_t c0,
                     int64_t gs, int64_t n, const float* B, int64_t ldb, int64_t strideB,
                     int64_t rows, int64_t nb, float* out) {
  const float one = 1.0f, zero = 0.0f;
  QS_CUBLAS_CHECK(cublasSgemmStridedBatched(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(rows), int(T),
                                            int(n), &one, B, int(ldb), strideB, X + c0, int(cols),
                                            gs, &zero, out, int(rows), T * rows, int(nb)));
}

}  // namespace

void awq_fake_quant_scaled(cudaStream_t s, const float* W, const float* sc, float* Q, int64_t rows,
                           int64_t cols, const kernels::AwqGridConfig& cfg) {
  QS_THROW_IF_NOT(cfg.group_size > 0, "AWQ fake quantization: group size ", cfg.group_size,
                  " must be > 0");
  const int64_t n = rows * ((cols + cfg.group_size - 1) / cfg.group_size);
  if (n == 0) return;
  fake_quant_kernel<<<blocks_for(n), kThreads, 0, s>>>(W, sc, Q, rows, cols, cfg);
  QS_CUDA_CHECK(cudaGetLastError());
}

double mean_squared_error(Backend& b, cudaStream_t s, const float* x, const float* y, int64_t n) {
  BackendArray<double> out(b, 1);
  mse_kernel<<<1, kThreads, 0, s>>>(x, y, n, out.get());
  QS_CUDA_CHECK(cudaGetLastError());
  return out.download()[0];  // to_host synchronizes the stream
}

void awq_clip_search(Backend& bk, cudaStream_t s, cublasHandle_t blas, const float* W,
                     const float* Xs, int64_t T, int64_t rows, int64_t cols,
                     const kernels::AwqGridConfig& cfg, int n_grid, int n_shrink, float* best_max) {
  QS_THROW_IF_NOT(cfg.group_size > 0 && T >= 1 && n_grid >= 1,
                  "AWQ clip search: group size, tokens and grid must be >= 1");
  const int64_t gs = cfg.group_size, groups = (cols + gs - 1) / gs, full = cols / gs;
  const size_t per_group = size_t(2 * T * rows + rows * gs) * sizeof(float);
  const int64_t chunk = std::max<int64_t>(1, int64_t(kClipChunkBytes / per_group));
  for (int64_t g0 = 0; g0 < groups;) {
    // Equal-width groups batch together; the narrower last group (cols % gs) goes alone.
    const int64_t n = g0 < full ? gs : cols - g0 * gs;
    const int64_t nb = g0 < full ? std::min(chunk, full - g0) : 1;
    const int64_t c0 = g0 * gs;
    BackendArray<float> org(bk, size_t(nb * T * rows)), cur(bk, size_t(nb * T * rows)),
        Q(bk, size_t(nb * rows * n)), org_max(bk, size_t(nb * rows));
    BackendArray<double> min_err(bk, size_t(nb * rows));
    float* best = best_max + g0 * rows;  // [nb, rows] of best_max[groups, rows]
    const unsigned blocks = blocks_for(nb * rows);
    clip_init_kernel<<<blocks, kThreads, 0, s>>>(W, rows, cols, c0, gs, n, nb, org_max.get(), best,
                                                 min_err.get());
    QS_CUDA_CHECK(cudaGetLastError());
    batched_gemm_nt(blas, Xs, T, cols, c0, gs, n, W + c0, cols, gs, rows, nb, org.get());
    for (int i_s = 0; i_s < n_shrink; ++i_s) {
      const float ratio = 1.0f - float(i_s) / float(n_grid);
      clip_candidate_kernel<<<blocks, kThreads, 0, s>>>(W, rows, cols, c0, gs, n, nb, org_max.get(),
                                                        ratio, cfg, Q.get());
      QS_CUDA_CHECK(cudaGetLastError());
      batched_gemm_nt(blas, Xs, T, cols, c0, gs, n, Q.get(), n, rows * n, rows, nb, cur.get());
      clip_error_kernel<<<blocks, kThreads, 0, s>>>(cur.get(), org.get(), T, rows, nb,
                                                    org_max.get(), ratio, min_err.get(), best);
      QS_CUDA_CHECK(cudaGetLastError());
    }
    QS_CUDA_CHECK(cudaStreamSynchronize(s));  // the chunk's buffers are released next
    g0 += nb;
  }
}

}  // namespace qsweep::cuda_ops
