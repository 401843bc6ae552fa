// The compute backend interface: the heavy operations the model, calibration and quantizers
// need, with a CPU implementation (Eigen + oneTBB) that is always present and a CUDA twin
// (cuBLAS, cuSOLVER and our kernels) that is detected at run time.
//
// Memory: the ops work on *backend memory* — host memory for the CPU, device memory for CUDA
// — obtained with allocate() (or BackendArray) and filled with to_device()/to_host(), so a
// model can stay resident on the GPU across calls. Small metadata (positions, attention spans)
// is passed as host std::vectors. Every array is row-major. The CPU ops are the twins and the
// referees: tests/backends/ops_test.cpp runs one test body on every available backend against
// an independent double-precision reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/kernels/awq_math.h"
#include "backends/kernels/gptq_math.h"
#include "common/weight_tensor.h"

namespace qsweep {

class Backend;

/// What gemm_nt_weight reuses between calls: the host buffer a weight not stored as fp32 is
/// widened into, and (off-host backends) the backend buffer it is uploaded to. One per forward
/// pass in flight; never shared between threads.
struct WeightScratch {
  WeightScratch() = default;
  WeightScratch(const WeightScratch&) = delete;
  WeightScratch& operator=(const WeightScratch&) = delete;
  ~WeightScratch();
  /// A backend buffer of at least `bytes` in `slot` (0: the weight, 1: the narrowed
  /// activations), reused across calls: allocated only when it grows or the backend changes.
  void* device_buffer(Backend& b, int slot, size_t bytes);
  std::vector<float> host;
  Backend* owner = nullptr;  ///< the backend `device` belongs to
  void* device[2] = {nullptr, nullptr};
  size_t device_bytes[2] = {0, 0};
};

class Backend {
 public:
  virtual ~Backend() = default;
  /// "cpu" or "cuda:<device index>:<device name>".
  virtual std::string name() const = 0;

  /// C[m, n] = A[m, k] · B[n, k]ᵀ on fp32 *host* pointers (copies in and out on CUDA).
  /// B is laid out like a Hugging Face linear weight [out, in], so matmul_nt(x, W) computes
  /// the linear layer x·Wᵀ.
  virtual void matmul_nt(const float* A, const float* B, float* C, int64_t m, int64_t n,
                         int64_t k) = 0;

  // --- Backend memory -------------------------------------------------------------------
  /// Throws Error naming the size asked for (and what to lower) when memory runs out.
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* p) noexcept = 0;
  virtual void to_device(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void to_host(void* host_dst, const void* src, size_t bytes) = 0;
  /// Waits for queued work; errors of asynchronous kernels surface here at the latest.
  virtual void synchronize() = 0;

  // --- Ops on backend memory ------------------------------------------------------------
  /// C = A·Bᵀ as matmul_nt, fp32 throughout (no TF32).
  virtual void gemm_nt(const float* A, const float* B, float* C, int64_t m, int64_t n,
                       int64_t k) = 0;
  /// C = A·Bᵀ with fp16 inputs (IEEE binary16 bit patterns), fp32 accumulation and output:
  /// the tensor-core path on CUDA.
  virtual void gemm_nt_f16(const uint16_t* A, const uint16_t* B, float* C, int64_t m, int64_t n,
                           int64_t k) = 0;
  virtual void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim,
                        float eps) = 0;
  /// cpu_rope: inv_freq (head_dim / 2 entries, model/rope.h) and row_pos are host vectors.
  virtual void rope(float* x, int64_t rows, int n_heads, int head_dim,
                    const std::vector<float>& inv_freq, const std::vector<int64_t>& row_pos) = 0;
  virtual void attention(const float* q, const float* k, const float* v, float* out,
                         const std::vector<AttentionSpan>& spans, const AttentionShape& shape) = 0;
  virtual void swiglu(float* gate, const float* up, int64_t n) = 0;
  /// y[i] += x[i] over n elements (the residual connections).
  virtual void add(float* y, const float* x, int64_t n) = 0;
  /// y[r, c] += bias[c] for y[rows, cols] (q/k/v/o biases).
  virtual void add_row_bias(float* y, const float* bias, int64_t rows, int64_t cols) = 0;
  /// nll[r] = −log softmax(logits[r])[targets[r]]; targets are in backend memory.
  virtual void token_nll(const float* logits, const int32_t* targets, float* nll, int64_t rows,
                         int64_t vocab) = 0;
  /// H[d, d] += Xᵀ·X for X[n, d] fp32, H fp64 (GPTQ's Hessian before its 2/n scaling).
  virtual void hessian_accumulate(const float* X, double* H, int64_t n, int64_t d) = 0;
  /// GPTQ's Hinv: the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU) for a symmetric positive
  /// definite H[d, d] (fp64, overwritten), written to Hinv[d, d] fp32 with zeros below the
  /// diagonal. Returns false when H is not positive definite (the caller adds damping).
  virtual bool upper_cholesky_of_inverse(double* H, float* Hinv, int64_t d) = 0;
  /// W[r, c] = scales[g·rows + r] · (codes[r·cols + c] − zeros[g·rows + r]), g = g_idx[c]:
  /// QTensor::dequantize on backend memory.
  virtual void dequantize_groups(const uint8_t* codes, const float* scales, const float* zeros,
                                 const int32_t* g_idx, float* W, int64_t rows, int64_t cols) = 0;

  // --- Weights in their stored form (issue #15) -----------------------------------------
  /// True when backend memory is host memory (the CPU): host pointers are backend pointers.
  virtual bool host_memory() const { return false; }
  /// dst[0, bytes) = src[0, bytes), both in backend memory (default: through the host).
  virtual void copy(void* dst, const void* src, size_t bytes);
  /// C[m, W.rows()] = A[m, W.cols()] · Wᵀ for a weight in its stored form (A, C in backend
  /// memory): fp32 weights are multiplied in place; others are widened row-exactly
  /// (WeightTensor::decode_rows) into `scratch` and then multiplied by gemm_nt, so the result
  /// is what gemm_nt gives on the widened matrix. Default: widen on the host, upload, gemm_nt.
  /// CUDA: F16/BF16 weights upload their 2-byte form and multiply with gemm_nt_w16 (so the
  /// activations are rounded to the weight's type: gemm_nt_w16's bound, not gemm_nt's).
  virtual void gemm_nt_weight(const float* A, const WeightTensor& W, float* C, int64_t m,
                              WeightScratch& scratch);

  /// C[m, n] = A[m, k] · Wᵀ for a weight W[n, k] already in backend memory in its stored form
  /// (issue #16's resident weights): `dtype` F32 (fp32) or F16/BF16 (raw bits); what
  /// gemm_nt_weight gives for the same host weight, bit for bit. Default: gemm_nt or
  /// gemm_nt_w16; CUDA narrows the activations into `scratch` as its gemm_nt_weight does.
  virtual void gemm_nt_resident(const float* A, const void* W, WeightDType dtype, float* C,
                                int64_t m, int64_t n, int64_t k, WeightScratch& scratch);

  // --- Layer streaming (issue #16): a copy stream beside the compute stream ---------------
  // Work on one stream runs in order; the two streams are ordered only by events. Host-memory
  // backends (the CPU) never stream: the defaults are synchronous and trivial.
  using Event = void*;
  enum class Stream { Compute, Copy };
  /// Host memory the copy stream reads asynchronously (CUDA: cudaHostAlloc). Default: malloc.
  virtual void* allocate_pinned(size_t bytes);
  virtual void release_pinned(void* p) noexcept;
  /// Queues dst (backend memory) ← host_src (pinned) on the copy stream. host_src must stay
  /// unchanged, and dst unread, until an event recorded on the copy stream after this call has
  /// completed. Default: to_device (synchronous).
  virtual void to_device_async(void* dst, const void* host_src, size_t bytes);
  /// An event (nullptr on the defaults); destroy_event after the last use.
  virtual Event create_event() { return nullptr; }
  virtual void destroy_event(Event) noexcept {}
  /// Records `e` on `s`: it completes when the work queued on `s` so far has.
  virtual void record_event(Event, Stream) {}
  /// Work queued on `s` after this call starts after `e` completes (a never-recorded event is
  /// complete).
  virtual void wait_event(Stream, Event) {}
  /// Blocks the calling thread until `e` completes.
  virtual void host_wait_event(Event) {}
  /// Bytes a model's weights may take in backend memory when no budget is set (CUDA: the free
  /// device memory minus a margin for activations and the KV cache). Default: unlimited.
  virtual size_t default_weight_budget() { return SIZE_MAX; }
  /// The budget for each model's resident weights on this backend (`--max-device-memory`,
  /// sweep `max_device_memory:`): `bytes` > 0, `origin` names the knob in errors.
  void set_max_device_memory(size_t bytes, std::string origin);
  /// The budget set, else default_weight_budget(); `origin` receives what set it.
  size_t max_device_memory(std::string* origin);

  // --- Quantization and evaluation ops (issue #16) --------------------------------------
  // CPU twins: cpu/cpu_quant_ops.h (the code the CPU pipeline runs); CUDA twins:
  // cuda/cuda_quant_ops.cu; per-element math shared through kernels/*.h. One shared test each
  // in tests/backends/quant_ops_test.cpp.
  /// C[m, n] = A[m, k]·W[n, k]ᵀ: fp32 activations times an fp16 (bf16 = false) or bf16 weight
  /// [out, in] (raw bits), fp32 accumulation (tensor cores on CUDA).
  virtual void gemm_nt_w16(const float* A, const uint16_t* W, bool bf16, float* C, int64_t m,
                           int64_t n, int64_t k) = 0;
  /// H[d, d] += XᵀX for X[n, d] fp16 bits, H fp64. The products are exact in fp32; the CPU
  /// sums them in fp64, CUDA in fp32 per slab of ≤ 512 rows, then adds the slab into H.
  virtual void hessian_accumulate_f16(const uint16_t* X, double* H, int64_t n, int64_t d) = 0;
  /// sum_sq[j] += Σ_t X[t, j]² and sum_abs[j] += Σ_t |X[t, j]| (fp64, tokens in order, each
  /// square added by an fma) for X[n, d] fp32: the importance matrix's and AWQ's statistics.
  virtual void column_stats(const float* X, int64_t n, int64_t d, double* sum_sq,
                            double* sum_abs) = 0;
  /// For each row of logits[rows, vocab]: top_ids[r, 0..k) = the ids of the k largest logits,
  /// largest first, ties to the lower id (NaN never chosen); lse[r] = log Σ exp(logits[r])
  /// (max-shifted, summed in fp64): the KL baseline's top-k log-probabilities are z − lse.
  virtual void topk_logsumexp(const float* logits, int64_t rows, int64_t vocab, int k,
                              int32_t* top_ids, double* lse) = 0;
  /// y[0..n) = the weights of ggml blocks of `type` (a ggml type id, kernels/ggml_decode.h);
  /// n a multiple of the type's block size (else Error).
  virtual void dequantize_ggml(int type, const uint8_t* blocks, float* y, int64_t n) = 0;
  /// H[i, i] += v for i < d (GPTQ's damping).
  virtual void add_diagonal(double* H, int64_t d, double v) = 0;
  /// GPTQ's lazy-batch column loop (quantizers.h gptq_quantize) on backend memory: W[rows,
  /// cols] fp32 in processing order (overwritten), Hinv[cols, cols] the upper Cholesky factor
  /// of the damped H⁻¹ in processing order, perm[cols] processing column → original column,
  /// scales/zeros [groups, rows] (given, or written for dynamic groups), codes[rows, cols]
  /// written in original column order, row_loss[rows] += each row's loss. Per block of
  /// cfg.block_size columns: every row's columns quantized with error propagation
  /// (kernels::gptq_row_block), then W[:, i2:] −= Err·Hinv[i1:i2, i2:] (one GEMM).
  virtual void gptq_columns(float* W, const float* Hinv, const int64_t* perm, float* scales,
                            float* zeros, uint8_t* codes, double* row_loss, int64_t rows,
                            int64_t cols, const kernels::GptqColumnsConfig& cfg) = 0;

  // --- AWQ's searches (quantize/awq.cpp): CPU twins cpu/cpu_awq_ops.h, CUDA twins
  // cuda/cuda_awq_ops.cu, per-element math kernels/awq_math.h; tests/backends/awq_ops_test.cpp.
  /// Q[rows, cols] = AWQ's fake quantization of W·diag(s) per (row, group), divided by s again
  /// (kernels::awq_fake_quant_group); s[cols]. All in backend memory. The CPU twin throws Error
  /// when W·s is not finite or a scale overflows fp16; the CUDA twin writes NaN/Inf through.
  virtual void awq_fake_quant_scaled(const float* W, const float* s, float* Q, int64_t rows,
                                     int64_t cols, const kernels::AwqGridConfig& cfg) = 0;
  /// Σ (a[i] − b[i])² / n in fp64 over backend memory (CPU: in order; CUDA: a fixed tree).
  virtual double mean_squared_error(const float* a, const float* b, int64_t n) = 0;
  /// AWQ's clip search (cpu_awq_clip_search) on backend memory: W[rows, cols], sampled inputs
  /// Xs[T, cols]; best_max[groups, rows] written. CUDA: each candidate's error summed in fp64
  /// instead of fp32, so a near-tie may pick the neighbouring ratio.
  virtual void awq_clip_search(const float* W, const float* Xs, int64_t T, int64_t rows,
                               int64_t cols, const kernels::AwqGridConfig& cfg, int n_grid,
                               int n_shrink, float* best_max) = 0;

 private:
  size_t max_device_memory_ = 0;  ///< 0: default_weight_budget()
  std::string max_device_memory_origin_;
};

/// GPTQ's damping escalation, the one copy: attempt(pct) for pct = start, then ×10 per
/// failure, capped at max_pct. Returns {true, pct} for the first success, else {false, the
/// last pct tried}.
struct DampingOutcome {
  bool ok = false;
  double pct = 0.0;
};
DampingOutcome escalate_damping(double start, double max_pct,
                                const std::function<bool(double pct)>& attempt);

/// Hinv[d, d] (fp32, backend memory) = upper Cholesky factor of (H + pct·mean(diag H)·I)⁻¹ for
/// H[d, d] fp64 in backend memory (unchanged), with escalate_damping from pct to max_pct.
/// Returns the pct used; Error naming `who` when even max_pct fails.
double damped_upper_cholesky_of_inverse(Backend& b, const double* H, float* Hinv, int64_t d,
                                        double pct, double max_pct, const std::string& who);

/// An array in a backend's memory that releases itself.
template <typename T>
class BackendArray {
 public:
  BackendArray(Backend& b, size_t n)
      : backend_(&b), n_(n), p_(static_cast<T*>(b.allocate(n * sizeof(T)))) {}
  BackendArray(Backend& b, const std::vector<T>& host) : BackendArray(b, host.size()) {
    upload(host);
  }
  ~BackendArray() { backend_->release(p_); }
  BackendArray(const BackendArray&) = delete;
  BackendArray& operator=(const BackendArray&) = delete;
  T* get() { return p_; }
  const T* get() const { return p_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& host) {
    if (!host.empty()) backend_->to_device(p_, host.data(), host.size() * sizeof(T));
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    if (n_) backend_->to_host(h.data(), p_, n_ * sizeof(T));
    return h;
  }

 private:
  Backend* backend_;
  size_t n_;
  T* p_;
};

/// The CPU backend (process-wide, stateless apart from TBB's thread pool).
Backend& cpu_backend();

/// True when this binary was built with CUDA and a CUDA device is usable now.
bool cuda_available();
/// Why CUDA is not available ("built without CUDA", "no CUDA device", ...), or "".
std::string cuda_unavailable_reason();
/// CUDA devices usable now: 0 without one, or in a build without CUDA.
int cuda_device_count();
/// Makes CUDA device `index` (0 .. cuda_device_count() − 1) the one this thread's CUDA
/// backends are made on (cudaSetDevice); an Error when it is not there.
void use_cuda_device(int index);

/// "cpu", "cuda" or "auto" (CUDA when available, else CPU). Throws Error for
/// "cuda" when no device is usable, saying why.
std::unique_ptr<Backend> make_backend(const std::string& device);

/// Number of worker threads the process's parallel work uses: the limit set by
/// set_backend_threads (else QSWEEP_THREADS, once apply_thread_env has run), else every core
/// oneTBB sees.
int backend_threads();

/// Limits oneTBB's parallelism for the whole process to `n` threads (a process-wide
/// tbb::global_control, replacing any earlier limit); n = 0 lifts the limit. Work is split the
/// same way whatever the limit, so results are bit-identical across thread counts.
/// Throws Error for n < 0, naming `origin` ("--threads", "QSWEEP_THREADS").
void set_backend_threads(int n, const std::string& origin = "--threads");

/// The environment variable QSWEEP_THREADS=N (a positive integer) limits every command to N
/// threads, as --threads N does (the flag wins). Applies it when set; Error when it is not a
/// positive integer.
void apply_thread_env();

}  // namespace qsweep
