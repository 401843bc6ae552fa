// CUDA twin of the CPU backend. Small for now (issue 7 grows it): device
// detection and the fp32 GEMM through cuBLAS, with every call's status checked.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "backends/backend.h"
#include "common/errors.h"

#define QS_CUDA_CHECK(expr)                                                             \
  do {                                                                                  \
    cudaError_t e_ = (expr);                                                            \
    if (e_ != cudaSuccess)                                                              \
      throw ::qsweep::Error(::qsweep::cat(#expr, " failed: ", cudaGetErrorString(e_))); \
  } while (0)
#define QS_CUBLAS_CHECK(expr)                                                          \
  do {                                                                                 \
    cublasStatus_t s_ = (expr);                                                        \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                   \
      throw ::qsweep::Error(::qsweep::cat(#expr, " failed: cuBLAS status ", int(s_))); \
  } while (0)

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

namespace {

/// Device buffer that frees itself; an allocation failure says how much was asked.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    const cudaError_t e = cudaMalloc(&ptr_, bytes);
    if (e != cudaSuccess)
      throw Error(cat("cudaMalloc of ", bytes / (1024.0 * 1024.0), " MiB failed (",
                      cudaGetErrorString(e),
                      "): lower the batch size or context, or use --device cpu"));
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  float* f() { return static_cast<float*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    QS_CUBLAS_CHECK(cublasCreate(&handle_));
    cudaDeviceProp prop{};
    QS_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    name_ = cat("cuda:", prop.name);
  }
  ~CudaBackend() override { cublasDestroy(handle_); }
  std::string name() const override { return name_; }

  void matmul_nt(const float* A, const float* B, float* C, int64_t m, int64_t n,
                 int64_t k) override {
    DeviceBuffer a(sizeof(float) * m * k), b(sizeof(float) * n * k), c(sizeof(float) * m * n);
    QS_CUDA_CHECK(cudaMemcpy(a.f(), A, sizeof(float) * m * k, cudaMemcpyHostToDevice));
    QS_CUDA_CHECK(cudaMemcpy(b.f(), B, sizeof(float) * n * k, cudaMemcpyHostToDevice));
    // Row-major C[m,n] = A·Bᵀ is column-major Cᵀ[n,m] = B·Aᵀ: cuBLAS sees B as a
    // column-major [k, n] matrix, so op(B) = Bᵀ gives [n, k]; A likewise is [k, m].
    const float one = 1.0f, zero = 0.0f;
    QS_CUBLAS_CHECK(cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &one,
                                b.f(), int(k), a.f(), int(k), &zero, c.f(), int(n)));
    QS_CUDA_CHECK(cudaMemcpy(C, c.f(), sizeof(float) * m * n, cudaMemcpyDeviceToHost));
  }

 private:
  cublasHandle_t handle_ = nullptr;
  std::string name_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() {
  return std::make_unique<CudaBackend>();
}

}  // namespace qsweep
