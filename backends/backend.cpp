#include "backends/backend.h"

#include <tbb/info.h>

#include <cstdlib>

#include "backends/cpu/cpu_gemm.h"
#include "common/errors.h"

namespace qsweep {

#ifdef QSWEEP_WITH_CUDA
// Defined in backends/cuda/cuda_backend.cu.
std::unique_ptr<Backend> make_cuda_backend();
bool cuda_device_present(std::string* why);
#endif

namespace {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  void matmul_nt(const float* A, const float* B, float* C, int64_t m, int64_t n,
                 int64_t k) override {
    cpu_gemm_nt(A, B, C, m, n, k);
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

std::string cuda_unavailable_reason() {
#ifdef QSWEEP_WITH_CUDA
  std::string why;
  return cuda_device_present(&why) ? std::string() : why;
#else
  return "this qsweep was built without CUDA (nvcc was not found at configure time)";
#endif
}

bool cuda_available() {
  return cuda_unavailable_reason().empty();
}

std::unique_ptr<Backend> make_backend(const std::string& device) {
  if (device == "cpu") return std::make_unique<CpuBackend>();
  if (device == "auto" || device == "cuda") {
#ifdef QSWEEP_WITH_CUDA
    if (cuda_available()) return make_cuda_backend();
#endif
    if (device == "cuda")
      throw Error(cat("--device cuda: ", cuda_unavailable_reason(), "; use --device cpu or auto"));
    return std::make_unique<CpuBackend>();
  }
  throw Error(cat("unknown device '", device, "': expected auto, cpu or cuda"));
}

int backend_threads() {
  return tbb::info::default_concurrency();
}

}  // namespace qsweep
