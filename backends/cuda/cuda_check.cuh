// The CUDA/cuBLAS/cuSOLVER status checks and launch helpers shared by the CUDA backend's .cu
// files (cuda_backend.cu, cuda_quant_ops.cu, cuda_awq_ops.cu). Only .cu files include this
// header. A failed call becomes a qsweep::Error naming the call, its file:line, the status,
// and what to try.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cstdint>

#include "common/errors.h"

#define QS_CUDA_FAILED_(expr, ...)                                      \
  ::qsweep::Error(::qsweep::cat(                                        \
      #expr, " failed at ", __FILE__, ":", __LINE__, ": ", __VA_ARGS__, \
      " (check the GPU with nvidia-smi, or run on the CPU: --device cpu, device: cpu)"))

#define QS_CUDA_CHECK(expr)                                                     \
  do {                                                                          \
    cudaError_t e_ = (expr);                                                    \
    if (e_ != cudaSuccess) throw QS_CUDA_FAILED_(expr, cudaGetErrorString(e_)); \
  } while (0)
#define QS_CUBLAS_CHECK(expr)                                                                \
  do {                                                                                       \
    cublasStatus_t s_ = (expr);                                                              \
    if (s_ != CUBLAS_STATUS_SUCCESS) throw QS_CUDA_FAILED_(expr, "cuBLAS status ", int(s_)); \
  } while (0)
#define QS_CUSOLVER_CHECK(expr)                                                                  \
  do {                                                                                           \
    cusolverStatus_t s_ = (expr);                                                                \
    if (s_ != CUSOLVER_STATUS_SUCCESS) throw QS_CUDA_FAILED_(expr, "cuSOLVER status ", int(s_)); \
  } while (0)
// A kernel launch reports configuration errors at once and execution errors at the next
// synchronizing call; both end up as an Error naming the launch site.
#define QS_KERNEL_CHECK(name) QS_CUDA_CHECK(cudaGetLastError())

namespace qsweep::cuda_ops {

/// Threads per block of the element-wise and one-row-per-block kernels.
constexpr int kThreads = 256;

/// Blocks of `threads` covering n elements (capped at 2^30, the grid's x limit).
inline int blocks_for(int64_t n, int threads = kThreads) {
  return int(std::min<int64_t>((n + threads - 1) / threads, int64_t(1) << 30));
}

}  // namespace qsweep::cuda_ops
