// The compute backend interface: the few heavy operations that the model,
// calibration and quantizers need, with a CPU implementation (Eigen + oneTBB)
// that is always present and a CUDA twin (cuBLAS) that is detected at run time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace qsweep {

class Backend {
 public:
  virtual ~Backend() = default;
  /// "cpu" or "cuda:<device name>".
  virtual std::string name() const = 0;

  /// C[m, n] = A[m, k] · B[n, k]ᵀ, all row-major fp32 host pointers.
  /// B is laid out like a Hugging Face linear weight [out, in], so
  /// matmul_nt(x, W) computes the linear layer x·Wᵀ.
  virtual void matmul_nt(const float* A, const float* B, float* C, int64_t m, int64_t n,
                         int64_t k) = 0;
};

/// The CPU backend (process-wide, stateless apart from TBB's thread pool).
Backend& cpu_backend();

/// True when this binary was built with CUDA and a CUDA device is usable now.
bool cuda_available();
/// Why CUDA is not available ("built without CUDA", "no CUDA device", ...), or "".
std::string cuda_unavailable_reason();

/// "cpu", "cuda" or "auto" (CUDA when available, else CPU). Throws Error for
/// "cuda" when no device is usable, saying why.
std::unique_ptr<Backend> make_backend(const std::string& device);

/// Number of worker threads TBB will use (respects QSWEEP_THREADS when set).
int backend_threads();

}  // namespace qsweep
