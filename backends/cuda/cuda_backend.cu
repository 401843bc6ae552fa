// CUDA twin of the CPU backend (backend.h): device memory, one stream, cuBLAS GEMMs
// (fp32, and fp16 inputs with fp32 accumulation on tensor cores), cuSOLVER Cholesky, and
// kernels for RMSNorm, RoPE, attention, SwiGLU, the NLL reduction, the Hessian and
// dequantization. Every call's status is checked; an allocation failure says how much was
// asked for, how much is free, and what to lower. The kernels favour being obviously the
// CPU twin's arithmetic over speed; tests/backends/ops_test.cpp compares them on random inputs.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/cuda_check.cuh"
#include "backends/cuda/cuda_quant_ops.h"
#include "common/errors.h"

namespace qsweep {

bool cuda_device_present(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    *why = cat("no usable CUDA device (", cudaGetErrorString(e), ")");
    cudaGetLastError();  // clear the sticky error so later calls are not poisoned
    return false;
  }
  if (n == 0) {
    *why = "no CUDA device found";
    return false;
  }
  return true;
}

int cuda_devices_present() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // as above: no device is 0 devices, and nothing stays poisoned
    return 0;
  }
  return n;
}

void cuda_set_device(int index) {
  QS_CUDA_CHECK(cudaSetDevice(index));
}

namespace {

using cuda_ops::blocks_for;
using cuda_ops::kThreads;

// Sum of v over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets it.
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T partial[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // partial[] may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < int(blockDim.x >> 5); ++w) total += partial[w];
  return total;
}

__device__ float block_max(float v) {
  __shared__ float partial[32];
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float m = -INFINITY;
  for (int w = 0; w < int(blockDim.x >> 5); ++w) m = fmaxf(m, partial[w]);
  return m;
}

__global__ void rms_norm_kernel(const float* x, const float* w, float* y, int64_t dim, float eps) {
  const float* xr = x + blockIdx.x * dim;
  float ss = 0;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) ss += xr[j] * xr[j];
  ss = block_sum(ss);
  const float r = 1.0f / sqrtf(ss / float(dim) + eps);
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
    y[blockIdx.x * dim + j] = xr[j] * r * w[j];
}

// One thread per (row, head, i < half): the CPU twin's angle arithmetic (fp32 angle from the
// host's fp32 inv_freq table, cos/sin in double).
__global__ void rope_kernel(float* x, const int64_t* pos, const float* inv_freq, int64_t rows,
                            int n_heads, int head_dim) {
  const int half = head_dim / 2;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= rows * n_heads * half) return;
  const int i = int(t % half);
  const int64_t h = (t / half) % n_heads, row = t / (int64_t(half) * n_heads);
  const float angle = float(pos[row]) * inv_freq[i];
  const float c = float(cos(double(angle))), s = float(sin(double(angle)));
  float* v = x + row * int64_t(n_heads) * head_dim + h * head_dim;
  const float a = v[i], b = v[i + half];
  v[i] = a * c - b * s;
  v[i + half] = b * c + a * s;
}

// One query row of one head per block, one thread per head dimension (blockDim.x ≥ head_dim,
// a multiple of 32): scores one key at a time with an online softmax (running max and sum),
// so no score matrix is stored. query = {q_row, kv_off, position}.
__global__ void attention_kernel(const float* q, const float* k, const float* v, float* out,
                                 const int64_t* queries, int n_heads, int n_kv_heads, int head_dim,
                                 int sliding_window, float scale) {
  const int64_t q_row = queries[3 * blockIdx.x], kv_off = queries[3 * blockIdx.x + 1],
                pos = queries[3 * blockIdx.x + 2];
  const int h = blockIdx.y, kvh = h / (n_heads / n_kv_heads), t = threadIdx.x;
  const int64_t q_width = int64_t(n_heads) * head_dim, kv_width = int64_t(n_kv_heads) * head_dim;
  const bool mine = t < head_dim;
  const float qt = mine ? q[q_row * q_width + h * head_dim + t] : 0.0f;
  const int64_t lo = sliding_window > 0 ? max(int64_t(0), pos - sliding_window + 1) : 0;
  float m = -INFINITY, l = 0, acc = 0;
  for (int64_t j = lo; j <= pos; ++j) {
    const int64_t kv = (kv_off + j) * kv_width + kvh * head_dim + t;
    const float s = block_sum(mine ? qt * k[kv] : 0.0f) * scale;
    const float m_new = fmaxf(m, s);
    const float keep = expf(m - m_new), p = expf(s - m_new);
    l = l * keep + p;
    acc = acc * keep + (mine ? p * v[kv] : 0.0f);
    m = m_new;
  }
  if (mine) out[q_row * q_width + h * head_dim + t] = acc / l;
}

__global__ void swiglu_kernel(float* g, const float* u, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] += x[i];
}

__global__ void add_row_bias_kernel(float* y, const float* bias, int64_t n, int64_t cols) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] += bias[i % cols];
}

// One row per block: max in fp32, Σ exp in fp64, as the CPU twin.
__global__ void token_nll_kernel(const float* logits, const int32_t* targets, float* nll,
                                 int64_t vocab) {
  const float* r = logits + blockIdx.x * vocab;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, r[j]);
  mx = block_max(mx);
  double sum = 0;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) sum += exp(double(r[j] - mx));
  sum = block_sum(sum);
  if (threadIdx.x == 0) {
    const int32_t t = targets[blockIdx.x];  // out of range: NaN, never a read outside the row
    nll[blockIdx.x] = t >= 0 && t < vocab ? -(r[t] - (mx + float(log(sum)))) : NAN;
  }
}

__global__ void widen_kernel(const float* x, double* y, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = double(x[i]);
}

// Column-major d×d: copy the lower triangle onto the upper one.
__global__ void mirror_lower_kernel(double* H, int64_t d) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= d * d) return;
  const int64_t i = t % d, j = t / d;  // element (i, j) at i + j·d
  if (i < j) H[i + j * d] = H[j + i * d];
}

// L (column-major lower Cholesky factor of H⁻¹) → U = Lᵀ row-major fp32: the same memory
// index, zero below the diagonal; flags a non-finite value.
__global__ void upper_from_lower_kernel(const double* L, float* U, int64_t d, int* bad) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= d * d) return;
  const int64_t i = t / d, j = t % d;  // row-major U(i, j)
  const float v = j >= i ? float(L[t]) : 0.0f;
  if (!isfinite(v)) atomicExch(bad, 1);
  U[t] = v;
}

__global__ void dequantize_kernel(const uint8_t* codes, const float* scales, const float* zeros,
                                  const int32_t* g_idx, float* W, int64_t rows, int64_t cols) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= rows * cols) return;
  const int64_t r = t / cols, c = t % cols, g = g_idx[c];
  W[t] = scales[g * rows + r] * (float(codes[t]) - zeros[g * rows + r]);
}

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    QS_CUDA_CHECK(cudaStreamCreate(&stream_));
    QS_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    QS_CUBLAS_CHECK(cublasCreate(&blas_));
    QS_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
    QS_CUSOLVER_CHECK(cusolverDnCreate(&solver_));
    QS_CUSOLVER_CHECK(cusolverDnSetStream(solver_, stream_));
    // The device current on this thread (the executor binds a GPU node's thread to its own
    // device with use_cuda_device), not device 0.
    int device = 0;
    QS_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    QS_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    name_ = cat("cuda:", device, ":", prop.name);
  }
  ~CudaBackend() override {
    cusolverDnDestroy(solver_);
    cublasDestroy(blas_);
    cudaStreamSynchronize(copy_stream_);
    cudaStreamDestroy(copy_stream_);
    cudaStreamDestroy(stream_);
  }
  std::string name() const override { return name_; }

  void* allocate(size_t bytes) override {
    void* p = nullptr;
    // Stream-ordered (cudaMallocAsync on the compute stream): cudaFree synchronizes the whole
    // device, which would serialize layer streaming's copies with every layer's temporaries.
    const cudaError_t e = cudaMallocAsync(&p, std::max<size_t>(bytes, 1), stream_);
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw Error(cat("cudaMallocAsync of ", double(bytes) / (1 << 20), " MiB failed (",
                      cudaGetErrorString(e), "; ", double(free_b) / (1 << 20), " of ",
                      double(total_b) / (1 << 20),
                      " MiB free): lower the batch size, context or calibration samples, or use "
                      "--device cpu"));
    }
    return p;
  }
  void release(void* p) noexcept override {
    if (p) cudaFreeAsync(p, stream_);
  }
  void to_device(void* dst, const void* src, size_t bytes) override {
    QS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    QS_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host buffer may go away after return
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    QS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    QS_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void synchronize() override { QS_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  void matmul_nt(const float* A, const float* B, float* C, int64_t m, int64_t n,
                 int64_t k) override {
    BackendArray<float> a(*this, size_t(m * k)), b(*this, size_t(n * k)), c(*this, size_t(m * n));
    to_device(a.get(), A, sizeof(float) * m * k);
    to_device(b.get(), B, sizeof(float) * n * k);
    gemm_nt(a.get(), b.get(), c.get(), m, n, k);
    to_host(C, c.get(), sizeof(float) * m * n);
  }

  void gemm_nt(const float* A, const float* B, float* C, int64_t m, int64_t n, int64_t k) override {
    // Row-major C[m,n] = A·Bᵀ is column-major Cᵀ[n,m] = B·Aᵀ: cuBLAS sees B as a
    // column-major [k, n] matrix, so op(B) = Bᵀ gives [n, k]; A likewise is [k, m].
    const float one = 1.0f, zero = 0.0f;
    QS_CUBLAS_CHECK(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &one, B,
                                int(k), A, int(k), &zero, C, int(n)));
  }
  void gemm_nt_f16(const uint16_t* A, const uint16_t* B, float* C, int64_t m, int64_t n,
                   int64_t k) override {
    const float one = 1.0f, zero = 0.0f;
    QS_CUBLAS_CHECK(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &one, B,
                                 CUDA_R_16F, int(k), A, CUDA_R_16F, int(k), &zero, C, CUDA_R_32F,
                                 int(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim,
                float eps) override {
    if (rows == 0) return;
    rms_norm_kernel<<<unsigned(rows), kThreads, 0, stream_>>>(x, w, y, dim, eps);
    QS_KERNEL_CHECK(rms_norm_kernel);
  }
  void rope(float* x, int64_t rows, int n_heads, int head_dim, const std::vector<float>& inv_freq,
            const std::vector<int64_t>& row_pos) override {
    QS_ASSERT(int64_t(row_pos.size()) == rows && int64_t(inv_freq.size()) == head_dim / 2);
    if (rows == 0) return;
    BackendArray<int64_t> pos(*this, row_pos);
    BackendArray<float> freq(*this, inv_freq);
    const int64_t n = rows * n_heads * (head_dim / 2);
    rope_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(x, pos.get(), freq.get(), rows, n_heads,
                                                         head_dim);
    QS_KERNEL_CHECK(rope_kernel);
    synchronize();  // `pos` and `freq` are freed on return
  }
  void attention(const float* q, const float* k, const float* v, float* out,
                 const std::vector<AttentionSpan>& spans, const AttentionShape& s) override {
    QS_THROW_IF_NOT(s.head_dim <= 1024, "attention: head_dim ", s.head_dim,
                    " is above the CUDA kernel's 1024");
    std::vector<int64_t> queries;
    for (const auto& sp : spans)
      for (int64_t i = 0; i < sp.n; ++i)
        queries.insert(queries.end(), {sp.q_off + i, sp.kv_off, sp.p0 + i});
    if (queries.empty()) return;
    BackendArray<int64_t> qd(*this, queries);
    const dim3 grid(unsigned(queries.size() / 3), unsigned(s.n_heads));
    const int threads = (s.head_dim + 31) / 32 * 32;
    attention_kernel<<<grid, threads, 0, stream_>>>(q, k, v, out, qd.get(), s.n_heads, s.n_kv_heads,
                                                    s.head_dim, s.sliding_window,
                                                    1.0f / std::sqrt(float(s.head_dim)));
    QS_KERNEL_CHECK(attention_kernel);
    synchronize();
  }
  void swiglu(float* gate, const float* up, int64_t n) override {
    if (n == 0) return;
    swiglu_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(gate, up, n);
    QS_KERNEL_CHECK(swiglu_kernel);
  }
  void add(float* y, const float* x, int64_t n) override {
    if (n == 0) return;
    add_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(y, x, n);
    QS_KERNEL_CHECK(add_kernel);
  }
  void add_row_bias(float* y, const float* bias, int64_t rows, int64_t cols) override {
    if (rows * cols == 0) return;
    add_row_bias_kernel<<<blocks_for(rows * cols), kThreads, 0, stream_>>>(y, bias, rows * cols,
                                                                           cols);
    QS_KERNEL_CHECK(add_row_bias_kernel);
  }
  void token_nll(const float* logits, const int32_t* targets, float* nll, int64_t rows,
                 int64_t vocab) override {
    if (rows == 0) return;
    token_nll_kernel<<<unsigned(rows), kThreads, 0, stream_>>>(logits, targets, nll, vocab);
    QS_KERNEL_CHECK(token_nll_kernel);
  }
  void hessian_accumulate(const float* X, double* H, int64_t n, int64_t d) override {
    if (n == 0) return;
    BackendArray<double> xd(*this, size_t(n * d));
    widen_kernel<<<blocks_for(n * d), kThreads, 0, stream_>>>(X, xd.get(), n * d);
    QS_KERNEL_CHECK(widen_kernel);
    // Row-major X[n, d] is column-major Xc[d, n] = Xᵀ; XᵀX = Xc·Xcᵀ, lower triangle.
    const double one = 1.0;
    QS_CUBLAS_CHECK(cublasDsyrk(blas_, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, int(d), int(n), &one,
                                xd.get(), int(d), &one, H, int(d)));
    mirror_lower_kernel<<<blocks_for(d * d), kThreads, 0, stream_>>>(H, d);
    QS_KERNEL_CHECK(mirror_lower_kernel);
    synchronize();
  }
  bool upper_cholesky_of_inverse(double* H, float* Hinv, int64_t d) override {
    // potrf (H = LLᵀ) → potri (H⁻¹, lower) → potrf (H⁻¹ = L₂L₂ᵀ); U = L₂ᵀ. Symmetric
    // matrices are the same row- or column-major, and column-major L₂ read row-major is L₂ᵀ.
    const int n = int(d);
    int lwork = 0, lwork2 = 0;
    QS_CUSOLVER_CHECK(
        cusolverDnDpotrf_bufferSize(solver_, CUBLAS_FILL_MODE_LOWER, n, H, n, &lwork));
    QS_CUSOLVER_CHECK(
        cusolverDnDpotri_bufferSize(solver_, CUBLAS_FILL_MODE_LOWER, n, H, n, &lwork2));
    BackendArray<double> work(*this, size_t(std::max({lwork, lwork2, 1})));
    BackendArray<int> info(*this, 2);
    auto failed = [&]() {
      int h[2] = {0, 0};
      to_host(h, info.get(), sizeof(int));
      return h[0] != 0;
    };
    QS_CUSOLVER_CHECK(cusolverDnDpotrf(solver_, CUBLAS_FILL_MODE_LOWER, n, H, n, work.get(),
                                       int(work.size()), info.get()));
    if (failed()) return false;
    QS_CUSOLVER_CHECK(cusolverDnDpotri(solver_, CUBLAS_FILL_MODE_LOWER, n, H, n, work.get(),
                                       int(work.size()), info.get()));
    if (failed()) return false;
    QS_CUSOLVER_CHECK(cusolverDnDpotrf(solver_, CUBLAS_FILL_MODE_LOWER, n, H, n, work.get(),
                                       int(work.size()), info.get()));
    if (failed()) return false;
    const int zero = 0;
    to_device(info.get() + 1, &zero, sizeof(int));
    upper_from_lower_kernel<<<blocks_for(d * d), kThreads, 0, stream_>>>(H, Hinv, d,
                                                                         info.get() + 1);
    QS_KERNEL_CHECK(upper_from_lower_kernel);
    int bad = 0;
    to_host(&bad, info.get() + 1, sizeof(int));
    return bad == 0;
  }
  void dequantize_groups(const uint8_t* codes, const float* scales, const float* zeros,
                         const int32_t* g_idx, float* W, int64_t rows, int64_t cols) override {
    if (rows * cols == 0) return;
    dequantize_kernel<<<blocks_for(rows * cols), kThreads, 0, stream_>>>(codes, scales, zeros,
                                                                         g_idx, W, rows, cols);
    QS_KERNEL_CHECK(dequantize_kernel);
  }

  // Issue #16's ops (cuda_quant_ops.cu).
  void copy(void* dst, const void* src, size_t bytes) override {
    QS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void gemm_nt_w16(const float* A, const uint16_t* W, bool bf16, float* C, int64_t m, int64_t n,
                   int64_t k) override {
    cuda_ops::gemm_nt_w16(*this, stream_, blas_, A, W, bf16, C, m, n, k);
  }
  // F16/BF16 weights travel in their 2-byte form (half the bytes of fp32) into the scratch's
  // reused buffers; F32 and quantized weights take the default (widen on the host, fp32).
  void gemm_nt_weight(const float* A, const WeightTensor& W, float* C, int64_t m,
                      WeightScratch& s) override {
    const bool bf16 = W.dtype() == WeightDType::BF16;
    if (!bf16 && W.dtype() != WeightDType::F16) {
      Backend::gemm_nt_weight(A, W, C, m, s);
      return;
    }
    const int64_t n = W.rows(), k = W.cols();
    auto* w = static_cast<uint16_t*>(s.device_buffer(*this, 0, size_t(n * k) * 2));
    auto* a16 = static_cast<uint16_t*>(s.device_buffer(*this, 1, size_t(m * k) * 2));
    to_device(w, W.half_data(), size_t(n * k) * 2);  // any host alignment; synchronous
    cuda_ops::gemm_nt_w16_with(stream_, blas_, A, w, bf16, C, m, n, k, a16);
  }
  void gemm_nt_resident(const float* A, const void* W, WeightDType dtype, float* C, int64_t m,
                        int64_t n, int64_t k, WeightScratch& s) override {
    if (dtype == WeightDType::F32) {
      gemm_nt(A, static_cast<const float*>(W), C, m, n, k);
      return;
    }
    // As gemm_nt_weight: the activations narrowed into the scratch's reused buffer.
    auto* a16 = static_cast<uint16_t*>(s.device_buffer(*this, 1, size_t(m * k) * 2));
    cuda_ops::gemm_nt_w16_with(stream_, blas_, A, static_cast<const uint16_t*>(W),
                               dtype == WeightDType::BF16, C, m, n, k, a16);
  }

  // Layer streaming: copies on copy_stream_, ordered against stream_ by events.
  void* allocate_pinned(size_t bytes) override {
    void* p = nullptr;
    const cudaError_t e = cudaHostAlloc(&p, std::max<size_t>(bytes, 1), cudaHostAllocDefault);
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw Error(cat("cudaHostAlloc of ", double(bytes) / (1 << 20),
                      " MiB of pinned staging "
                      "memory failed (",
                      cudaGetErrorString(e),
                      "): lower --max-device-memory's streamed share or use --device cpu"));
    }
    return p;
  }
  void release_pinned(void* p) noexcept override {
    if (p) cudaFreeHost(p);
  }
  void to_device_async(void* dst, const void* src, size_t bytes) override {
    QS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, copy_stream_));
  }
  Event create_event() override {
    cudaEvent_t e = nullptr;
    QS_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return static_cast<Event>(e);
  }
  void destroy_event(Event e) noexcept override {
    if (e) cudaEventDestroy(static_cast<cudaEvent_t>(e));
  }
  void record_event(Event e, Stream s) override {
    QS_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(e), on(s)));
  }
  void wait_event(Stream s, Event e) override {
    QS_CUDA_CHECK(cudaStreamWaitEvent(on(s), static_cast<cudaEvent_t>(e), 0));
  }
  void host_wait_event(Event e) override {
    QS_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(e)));
  }
  // Free memory now minus a margin for activations, logits and the KV cache: 10 % of the
  // device's memory, at least 2 GiB.
  size_t default_weight_budget() override {
    size_t free_b = 0, total_b = 0;
    QS_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const size_t margin = std::max<size_t>(total_b / 10, size_t(2) << 30);
    return free_b > margin ? free_b - margin : 1;
  }

  void hessian_accumulate_f16(const uint16_t* X, double* H, int64_t n, int64_t d) override {
    cuda_ops::hessian_accumulate_f16(*this, stream_, blas_, X, H, n, d);
  }
  void column_stats(const float* X, int64_t n, int64_t d, double* sum_sq,
                    double* sum_abs) override {
    cuda_ops::column_stats(stream_, X, n, d, sum_sq, sum_abs);
  }
  void topk_logsumexp(const float* logits, int64_t rows, int64_t vocab, int k, int32_t* top_ids,
                      double* lse) override {
    cuda_ops::topk_logsumexp(stream_, logits, rows, vocab, k, top_ids, lse);
  }
  void dequantize_ggml(int type, const uint8_t* blocks, float* y, int64_t n) override {
    cuda_ops::dequantize_ggml(stream_, type, blocks, y, n);
  }
  void add_diagonal(double* H, int64_t d, double v) override {
    cuda_ops::add_diagonal(stream_, H, d, v);
  }
  void gptq_columns(float* W, const float* Hinv, const int64_t* perm, float* scales, float* zeros,
                    uint8_t* codes, double* row_loss, int64_t rows, int64_t cols,
                    const kernels::GptqColumnsConfig& cfg) override {
    cuda_ops::gptq_columns(*this, stream_, blas_, W, Hinv, perm, scales, zeros, codes, row_loss,
                           rows, cols, cfg);
  }
  void awq_fake_quant_scaled(const float* W, const float* s, float* Q, int64_t rows, int64_t cols,
                             const kernels::AwqGridConfig& cfg) override {
    cuda_ops::awq_fake_quant_scaled(stream_, W, s, Q, rows, cols, cfg);
  }
  double mean_squared_error(const float* a, const float* b, int64_t n) override {
    return cuda_ops::mean_squared_error(*this, stream_, a, b, n);
  }
  void awq_clip_search(const float* W, const float* Xs, int64_t T, int64_t rows, int64_t cols,
                       const kernels::AwqGridConfig& cfg, int n_grid, int n_shrink,
                       float* best_max) override {
    cuda_ops::awq_clip_search(*this, stream_, blas_, W, Xs, T, rows, cols, cfg, n_grid, n_shrink,
                              best_max);
  }

 private:
  cudaStream_t on(Stream s) const { return s == Stream::Copy ? copy_stream_ : stream_; }
  cudaStream_t stream_ = nullptr;
  cudaStream_t copy_stream_ = nullptr;  ///< layer streaming's host→device copies
  cublasHandle_t blas_ = nullptr;
  cusolverDnHandle_t solver_ = nullptr;
  std::string name_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() {
  return std::make_unique<CudaBackend>();
}

}  // namespace qsweep
