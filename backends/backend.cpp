#include "backends/backend.h"

#include <tbb/global_control.h>
#include <tbb/info.h>
#include <tbb/parallel_for.h>

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backends/cpu/cpu_awq_ops.h"
#include "backends/cpu/cpu_gemm.h"
#include "backends/cpu/cpu_gemv_blocks.h"
#include "backends/cpu/cpu_quant_ops.h"
#include "backends/kernels/ggml_decode.h"
#include "common/errors.h"
#include "common/half.h"

namespace qsweep {

#ifdef QSWEEP_WITH_CUDA
// Defined in backends/cuda/cuda_backend.cu.
std::unique_ptr<Backend> make_cuda_backend();
bool cuda_device_present(std::string* why);
int cuda_devices_present();
void cuda_set_device(int index);
#endif

WeightScratch::~WeightScratch() {
  for (void* p : device)
    if (p) owner->release(p);
}

void* WeightScratch::device_buffer(Backend& b, int slot, size_t bytes) {
  if (owner && owner != &b) {  // another backend's buffers: give them all back first
    for (int i = 0; i < 2; ++i)
      if (device[i]) owner->release(device[i]);
    device[0] = device[1] = nullptr;
    device_bytes[0] = device_bytes[1] = 0;
  }
  owner = &b;
  if (device[slot] && device_bytes[slot] < bytes) {
    b.release(device[slot]);
    device[slot] = nullptr;
  }
  if (!device[slot]) {
    device[slot] = b.allocate(bytes);
    device_bytes[slot] = bytes;
  }
  return device[slot];
}

namespace {

// Widens W into scratch.host (parallel over row blocks; each row is decoded exactly as
// decode_rows decodes it, so the values do not depend on the split).
const float* widen(const WeightTensor& W, WeightScratch& s) {
  const size_t n = size_t(W.rows() * W.cols());
  if (s.host.size() < n) s.host.resize(n);
  const int64_t cols = W.cols(), block = std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
  tbb::parallel_for(int64_t(0), (W.rows() + block - 1) / block, [&](int64_t b) {
    const int64_t r0 = b * block, rn = std::min(block, W.rows() - r0);
    W.decode_rows(r0, rn, s.host.data() + r0 * cols);
  });
  return s.host.data();
}

}  // namespace

void Backend::copy(void* dst, const void* src, size_t bytes) {
  std::vector<uint8_t> tmp(bytes);
  if (bytes) to_host(tmp.data(), src, bytes);
  if (bytes) to_device(dst, tmp.data(), bytes);
}

void Backend::gemm_nt_weight(const float* A, const WeightTensor& W, float* C, int64_t m,
                             WeightScratch& s) {
  const float* host = W.f32_data();
  if (!host) host = widen(W, s);
  const size_t bytes = size_t(W.rows() * W.cols()) * sizeof(float);
  void* dev = s.device_buffer(*this, 0, bytes);
  to_device(dev, host, bytes);
  gemm_nt(A, static_cast<const float*>(dev), C, m, W.rows(), W.cols());
}

void Backend::gemm_nt_resident(const float* A, const void* W, WeightDType dtype, float* C,
                               int64_t m, int64_t n, int64_t k, WeightScratch&) {
  QS_ASSERT(dtype != WeightDType::Quantized, "resident weights are fp32 or 16-bit");
  if (dtype == WeightDType::F32)
    gemm_nt(A, static_cast<const float*>(W), C, m, n, k);
  else
    gemm_nt_w16(A, static_cast<const uint16_t*>(W), dtype == WeightDType::BF16, C, m, n, k);
}

void* Backend::allocate_pinned(size_t bytes) {
  void* p = std::malloc(std::max<size_t>(bytes, 1));
  if (!p)
    throw Error(cat("allocating ", double(bytes) / (1 << 20),
                    " MiB of staging memory failed: lower --max-device-memory's streamed share"));
  return p;
}

void Backend::release_pinned(void* p) noexcept {
  std::free(p);
}

void Backend::to_device_async(void* dst, const void* host_src, size_t bytes) {
  to_device(dst, host_src, bytes);
}

void Backend::set_max_device_memory(size_t bytes, std::string origin) {
  QS_THROW_IF_NOT(bytes > 0, origin, ": expected a positive number of bytes");
  max_device_memory_ = bytes;
  max_device_memory_origin_ = std::move(origin);
}

size_t Backend::max_device_memory(std::string* origin) {
  if (max_device_memory_) {
    if (origin) *origin = max_device_memory_origin_;
    return max_device_memory_;
  }
  if (origin)
    *origin =
        "the default device-memory budget (free device memory minus max(10%, 2 GiB); "
        "--max-device-memory sets it)";
  return default_weight_budget();
}

namespace {

// The CPU twin: backend memory is host memory; every op is the code the CPU pipeline runs
// (cpu_gemm / cpu_ops) or, for the fp16 GEMM, Hessian and Cholesky, plain Eigen.
class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  bool host_memory() const override { return true; }
  void copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void gemm_nt_weight(const float* A, const WeightTensor& W, float* C, int64_t m,
                      WeightScratch& s) override {
    // Decode (m small) on GGUF blocks: fused block GEMV, no fp32 copy of W (#18). Same weights
    // bit for bit; the fp32 sum is ordered differently from cpu_gemm_nt's (reordering only).
    if (const GgmlBlocks& g = W.ggml_blocks();
        m <= kGemmNtGgmlMaxM && g.data && cpu_gemm_nt_ggml_supports(g.ggml_type, W.cols()))
      return cpu_gemm_nt_ggml(A, g.ggml_type, g.data, C, m, W.rows(), W.cols(), g.row_of);
    if (const void* h = W.half_data(); h && m <= kGemvW16MaxM)  // decode: cpu_gemv_w16 (#18)
      return gemm_nt_w16(A, static_cast<const uint16_t*>(h), W.dtype() == WeightDType::BF16, C, m,
                         W.rows(), W.cols());
    // The same for 16-bit GGUF q/k, whose rows the file permutes: read through the row map.
    if (const GgmlBlocks& g = W.ggml_blocks();
        m <= kGemvW16MaxM && g.row_of &&
        (g.ggml_type == ggml::kF16 || g.ggml_type == ggml::kBF16)) {
      for (int64_t i = 0; i < m; ++i)
        cpu_gemv_w16(A + i * W.cols(), static_cast<const uint16_t*>(g.data),
                     g.ggml_type == ggml::kBF16, C + i * W.rows(), W.rows(), W.cols(), g.row_of);
      return;
    }
    const float* w = W.f32_data();
    if (!w && m <= kGemmNtRowsMaxM)  // decode tiles of W where they are multiplied (#18)
      return cpu_gemm_nt_rows(A, C, m, W.rows(), W.cols(), [&](int64_t r0, int64_t n, float* out) {
        W.decode_rows(r0, n, out);
      });
    cpu_gemm_nt(A, w ? w : widen(W, s), C, m, W.rows(), W.cols());
  }
  void matmul_nt(const float* A, const float* B, float* C, int64_t m, int64_t n,
                 int64_t k) override {
    cpu_gemm_nt(A, B, C, m, n, k);
  }

  void* allocate(size_t bytes) override {
    void* p = std::malloc(std::max<size_t>(bytes, 1));
    if (!p)
      throw Error(cat("allocating ", double(bytes) / (1 << 20),
                      " MiB of host memory failed: lower the batch size, context or model size"));
    return p;
  }
  void release(void* p) noexcept override { std::free(p); }
  void to_device(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void synchronize() override {}

  void gemm_nt(const float* A, const float* B, float* C, int64_t m, int64_t n, int64_t k) override {
    cpu_gemm_nt(A, B, C, m, n, k);
  }
  void gemm_nt_f16(const uint16_t* A, const uint16_t* B, float* C, int64_t m, int64_t n,
                   int64_t k) override {
    // Widened to fp32 (exact) and multiplied in fp32: what the tensor cores compute, up to
    // the order of the fp32 additions.
    std::vector<float> a(size_t(m * k)), b(size_t(n * k));
    for (size_t i = 0; i < a.size(); ++i) a[i] = half_to_float(A[i]);
    for (size_t i = 0; i < b.size(); ++i) b[i] = half_to_float(B[i]);
    cpu_gemm_nt(a.data(), b.data(), C, m, n, k);
  }
  void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim,
                float eps) override {
    cpu_rms_norm(x, w, y, rows, dim, eps);
  }
  void rope(float* x, int64_t rows, int n_heads, int head_dim, const std::vector<float>& inv_freq,
            const std::vector<int64_t>& row_pos) override {
    cpu_rope(x, rows, n_heads, head_dim, inv_freq, row_pos);
  }
  void attention(const float* q, const float* k, const float* v, float* out,
                 const std::vector<AttentionSpan>& spans, const AttentionShape& shape) override {
    cpu_attention(q, k, v, out, spans, shape);
  }
  void swiglu(float* gate, const float* up, int64_t n) override { cpu_swiglu(gate, up, n); }
  void add(float* y, const float* x, int64_t n) override {
    Eigen::Map<Eigen::VectorXf>(y, n) += Eigen::Map<const Eigen::VectorXf>(x, n);
  }
  void add_row_bias(float* y, const float* bias, int64_t rows, int64_t cols) override {
    // The same expression as the forward pass's bias add (model/transformer.cpp).
    Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(y, rows, cols)
        .rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias, cols);
  }
  void token_nll(const float* logits, const int32_t* targets, float* nll, int64_t rows,
                 int64_t vocab) override {
    cpu_token_nll(logits, targets, nll, rows, vocab);
  }
  void hessian_accumulate(const float* X, double* H, int64_t n, int64_t d) override {
    const Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> x(
        X, n, d);
    Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> h(H, d, d);
    const Eigen::MatrixXd xd = x.cast<double>();
    h.selfadjointView<Eigen::Lower>().rankUpdate(xd.transpose());
    h.triangularView<Eigen::StrictlyUpper>() = h.transpose();  // keep H full
  }
  bool upper_cholesky_of_inverse(double* H, float* Hinv, int64_t d) override {
    // H⁻¹ = UᵀU with U upper ⇔ U = chol-factor of H⁻¹; computed as chol(H⁻¹) directly.
    using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<MatD> h(H, d, d);
    Eigen::LLT<MatD> llt(h);
    if (llt.info() != Eigen::Success) return false;
    const MatD inv = llt.solve(MatD::Identity(d, d));
    Eigen::LLT<MatD> llt_inv(inv);
    if (llt_inv.info() != Eigen::Success) return false;
    const MatD U = llt_inv.matrixU();
    for (int64_t i = 0; i < d * d; ++i) {
      Hinv[i] = float(U.data()[i]);
      if (!std::isfinite(Hinv[i])) return false;
    }
    return true;
  }
  void dequantize_groups(const uint8_t* codes, const float* scales, const float* zeros,
                         const int32_t* g_idx, float* W, int64_t rows, int64_t cols) override {
    tbb::parallel_for(int64_t(0), rows, [&](int64_t r) {
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t g = g_idx[c];
        W[r * cols + c] = scales[g * rows + r] * (float(codes[r * cols + c]) - zeros[g * rows + r]);
      }
    });
  }

  // Issue #16's ops: the CPU pipeline's own code (cpu/cpu_quant_ops.h).
  void gemm_nt_w16(const float* A, const uint16_t* W, bool bf16, float* C, int64_t m, int64_t n,
                   int64_t k) override {
    cpu_gemm_nt_w16(A, W, bf16, C, m, n, k);
  }
  void hessian_accumulate_f16(const uint16_t* X, double* H, int64_t n, int64_t d) override {
    cpu_hessian_accumulate_f16(X, H, n, d);
  }
  void column_stats(const float* X, int64_t n, int64_t d, double* sum_sq,
                    double* sum_abs) override {
    cpu_column_stats(X, n, d, sum_sq, sum_abs);
  }
  void topk_logsumexp(const float* logits, int64_t rows, int64_t vocab, int k, int32_t* top_ids,
                      double* lse) override {
    cpu_topk_logsumexp(logits, rows, vocab, k, top_ids, lse);
  }
  void dequantize_ggml(int type, const uint8_t* blocks, float* y, int64_t n) override {
    cpu_dequantize_ggml(type, blocks, y, n);
  }
  void add_diagonal(double* H, int64_t d, double v) override {
    for (int64_t i = 0; i < d; ++i) H[i * d + i] += v;
  }
  void gptq_columns(float* W, const float* Hinv, const int64_t* perm, float* scales, float* zeros,
                    uint8_t* codes, double* row_loss, int64_t rows, int64_t cols,
                    const kernels::GptqColumnsConfig& cfg) override {
    cpu_gptq_columns(W, Hinv, perm, scales, zeros, codes, row_loss, rows, cols, cfg);
  }
  void awq_fake_quant_scaled(const float* W, const float* s, float* Q, int64_t rows, int64_t cols,
                             const kernels::AwqGridConfig& cfg) override {
    cpu_awq_fake_quant_scaled(W, s, Q, rows, cols, cfg);
  }
  double mean_squared_error(const float* a, const float* b, int64_t n) override {
    return cpu_mean_squared_error(a, b, n);
  }
  void awq_clip_search(const float* W, const float* Xs, int64_t T, int64_t rows, int64_t cols,
                       const kernels::AwqGridConfig& cfg, int n_grid, int n_shrink,
                       float* best_max) override {
    cpu_awq_clip_search(W, Xs, T, rows, cols, cfg, n_grid, n_shrink, best_max);
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
  return "this qsweep was built without CUDA (nvcc not found at configure time, "
         "-DQSWEEP_CUDA=OFF, or a sanitizer build, which leaves CUDA out)";
#endif
}

bool cuda_available() {
  return cuda_unavailable_reason().empty();
}

int cuda_device_count() {
#ifdef QSWEEP_WITH_CUDA
  return cuda_devices_present();
#else
  return 0;
#endif
}

void use_cuda_device(int index) {
  const int n = cuda_device_count();
  QS_THROW_IF_NOT(index >= 0 && index < n, "CUDA device ", index, " is not there (", n,
                  " usable): schedule at most ", n, " GPU nodes at once");
#ifdef QSWEEP_WITH_CUDA
  cuda_set_device(index);
#endif
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

namespace {
std::unique_ptr<tbb::global_control>& thread_limit() {
  static std::unique_ptr<tbb::global_control> limit;
  return limit;
}
}  // namespace

int backend_threads() {
  return std::min<int>(
      tbb::info::default_concurrency(),
      int(tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism)));
}

void set_backend_threads(int n, const std::string& origin) {
  QS_THROW_IF_NOT(n >= 0, origin, " ", n, ": expected a positive number of threads");
  // Two live controls take the minimum, so drop the old one before setting the new one.
  thread_limit().reset();
  if (n > 0)
    thread_limit() = std::make_unique<tbb::global_control>(
        tbb::global_control::max_allowed_parallelism, size_t(n));
}

void apply_thread_env() {
  const char* env = std::getenv("QSWEEP_THREADS");
  if (!env || !*env) return;
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(env, &end, 10);
  QS_THROW_IF_NOT(*end == '\0' && errno == 0 && n >= 1 && n <= 4096, "QSWEEP_THREADS='", env,
                  "': expected a positive integer (unset it to use every core)");
  set_backend_threads(int(n), "QSWEEP_THREADS");
}

}  // namespace qsweep
