// A test backend that runs every op on the CPU but says its memory is not host memory
// (host_memory() false), so the code paths written for an off-host backend (CUDA) — uploads,
// device-resident KV cache, layer streaming — run on a machine without a GPU. Its results are
// the CPU's bit for bit: each op is the CPU twin on the same bytes.
//
// Layer streaming's copy stream is simulated so that a wrong order shows in the logits: an
// async copy poisons its destination (all bits set: NaN as fp32 and as fp16/bf16) at once and
// copies the source only when an event recorded after it is waited on (wait_event(Compute) or
// host_wait_event) or recorded again. So a layer read without waiting for its copy, or a copy
// queued into the slot a layer is still using, gives NaN logits. Work on the compute stream
// is synchronous, so a copy queued before the compute it should wait for is not detected.
#pragma once

#include <cstring>
#include <memory>
#include <vector>

#include "backends/backend.h"

namespace qsweep::test {

class OffHostCpuBackend final : public Backend {
 public:
  std::string name() const override { return "off-host-cpu"; }
  bool host_memory() const override { return false; }
  void matmul_nt(const float* A, const float* B, float* C, int64_t m, int64_t n,
                 int64_t k) override {
    c().matmul_nt(A, B, C, m, n, k);
  }
  void* allocate(size_t bytes) override { return c().allocate(bytes); }
  void release(void* p) noexcept override { c().release(p); }
  void to_device(void* d, const void* s, size_t n) override { c().to_device(d, s, n); }
  void to_host(void* d, const void* s, size_t n) override { c().to_host(d, s, n); }
  void synchronize() override {}
  // --- The simulated copy stream (see the top of this file).
  void to_device_async(void* d, const void* s, size_t n) override {
    std::memset(d, 0xFF, n);
    queued_.push_back({d, s, n});
  }
  Event create_event() override {
    events_.push_back(std::make_unique<Pending>());
    return events_.back().get();
  }
  void record_event(Event e, Stream s) override {
    if (s != Stream::Copy) return;
    auto* p = static_cast<Pending*>(e);
    run(*p);  // its earlier copies are long done by the time it is recorded again
    p->copies = std::move(queued_);
    queued_.clear();
  }
  void wait_event(Stream s, Event e) override {
    if (s == Stream::Compute) run(*static_cast<Pending*>(e));
  }
  void host_wait_event(Event e) override { run(*static_cast<Pending*>(e)); }
  /// Async copies queued so far (for tests that count the streamed bytes).
  size_t async_copies() const { return async_copies_; }
  void gemm_nt(const float* A, const float* B, float* C, int64_t m, int64_t n, int64_t k) override {
    c().gemm_nt(A, B, C, m, n, k);
  }
  void gemm_nt_f16(const uint16_t* A, const uint16_t* B, float* C, int64_t m, int64_t n,
                   int64_t k) override {
    c().gemm_nt_f16(A, B, C, m, n, k);
  }
  void rms_norm(const float* x, const float* w, float* y, int64_t r, int64_t d, float e) override {
    c().rms_norm(x, w, y, r, d, e);
  }
  void rope(float* x, int64_t rows, int nh, int hd, const std::vector<float>& f,
            const std::vector<int64_t>& p) override {
    c().rope(x, rows, nh, hd, f, p);
  }
  void attention(const float* q, const float* k, const float* v, float* out,
                 const std::vector<AttentionSpan>& s, const AttentionShape& sh) override {
    c().attention(q, k, v, out, s, sh);
  }
  void swiglu(float* g, const float* u, int64_t n) override { c().swiglu(g, u, n); }
  void add(float* y, const float* x, int64_t n) override { c().add(y, x, n); }
  void add_row_bias(float* y, const float* b, int64_t r, int64_t cols) override {
    c().add_row_bias(y, b, r, cols);
  }
  void token_nll(const float* l, const int32_t* t, float* nll, int64_t r, int64_t v) override {
    c().token_nll(l, t, nll, r, v);
  }
  void hessian_accumulate(const float* X, double* H, int64_t n, int64_t d) override {
    c().hessian_accumulate(X, H, n, d);
  }
  bool upper_cholesky_of_inverse(double* H, float* Hinv, int64_t d) override {
    return c().upper_cholesky_of_inverse(H, Hinv, d);
  }
  void dequantize_groups(const uint8_t* q, const float* s, const float* z, const int32_t* g,
                         float* W, int64_t r, int64_t cols) override {
    c().dequantize_groups(q, s, z, g, W, r, cols);
  }
  void gemm_nt_w16(const float* A, const uint16_t* W, bool bf16, float* C, int64_t m, int64_t n,
                   int64_t k) override {
    c().gemm_nt_w16(A, W, bf16, C, m, n, k);
  }
  void hessian_accumulate_f16(const uint16_t* X, double* H, int64_t n, int64_t d) override {
    c().hessian_accumulate_f16(X, H, n, d);
  }
  void column_stats(const float* X, int64_t n, int64_t d, double* sq, double* ab) override {
    c().column_stats(X, n, d, sq, ab);
  }
  void topk_logsumexp(const float* l, int64_t r, int64_t v, int k, int32_t* ids,
                      double* lse) override {
    c().topk_logsumexp(l, r, v, k, ids, lse);
  }
  void dequantize_ggml(int type, const uint8_t* b, float* y, int64_t n) override {
    c().dequantize_ggml(type, b, y, n);
  }
  void add_diagonal(double* H, int64_t d, double v) override { c().add_diagonal(H, d, v); }
  void gptq_columns(float* W, const float* Hinv, const int64_t* perm, float* s, float* z,
                    uint8_t* codes, double* loss, int64_t r, int64_t cols,
                    const kernels::GptqColumnsConfig& cfg) override {
    c().gptq_columns(W, Hinv, perm, s, z, codes, loss, r, cols, cfg);
  }
  void awq_fake_quant_scaled(const float* W, const float* s, float* Q, int64_t r, int64_t cols,
                             const kernels::AwqGridConfig& cfg) override {
    c().awq_fake_quant_scaled(W, s, Q, r, cols, cfg);
  }
  double mean_squared_error(const float* a, const float* b, int64_t n) override {
    return c().mean_squared_error(a, b, n);
  }
  void awq_clip_search(const float* W, const float* Xs, int64_t T, int64_t r, int64_t cols,
                       const kernels::AwqGridConfig& cfg, int n_grid, int n_shrink,
                       float* best) override {
    c().awq_clip_search(W, Xs, T, r, cols, cfg, n_grid, n_shrink, best);
  }

 private:
  struct Copy {
    void* dst;
    const void* src;
    size_t bytes;
  };
  struct Pending {
    std::vector<Copy> copies;
  };
  void run(Pending& p) {
    for (const Copy& c : p.copies) std::memcpy(c.dst, c.src, c.bytes);
    async_copies_ += p.copies.size();
    p.copies.clear();
  }
  static Backend& c() { return cpu_backend(); }
  std::vector<Copy> queued_;  ///< on the copy stream since its last record_event
  std::vector<std::unique_ptr<Pending>> events_;
  size_t async_copies_ = 0;
};

}  // namespace qsweep::test
