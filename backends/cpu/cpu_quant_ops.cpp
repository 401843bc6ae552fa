#include "backends/cpu/cpu_quant_ops.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "backends/cpu/cpu_gemm.h"
#include "backends/kernels/ggml_decode.h"
#include "common/errors.h"
#include "common/half.h"

namespace qsweep {

namespace {
using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// GPTQ's rows per task: fixed, so the GEMM shapes (and their rounding) do not depend on the
// thread count.
constexpr int64_t kGptqRowsPerTask = 64;
}  // namespace

void cpu_gemm_nt_w16(const float* A, const uint16_t* W, bool bf16, float* C, int64_t m, int64_t n,
                     int64_t k) {
  if (m <= kGemvW16MaxM) {  // decode (#18): the 2-byte weights are read once per row of A
    for (int64_t i = 0; i < m; ++i) cpu_gemv_w16(A + i * k, W, bf16, C + i * n, n, k);
    return;
  }
  std::vector<float> w(size_t(n * k));
  for (size_t i = 0; i < w.size(); ++i) w[i] = bf16 ? bf16_to_float(W[i]) : half_to_float(W[i]);
  cpu_gemm_nt(A, w.data(), C, m, n, k);
}

void cpu_hessian_accumulate_f16(const uint16_t* X, double* H, int64_t n, int64_t d) {
  MatD xd(n, d);
  for (int64_t i = 0; i < n * d; ++i) xd.data()[i] = double(half_to_float(X[i]));
  Eigen::Map<MatD> h(H, d, d);
  h.selfadjointView<Eigen::Lower>().rankUpdate(xd.transpose());
  h.triangularView<Eigen::StrictlyUpper>() = h.transpose();  // keep H full
}

void cpu_column_stats(const float* X, int64_t n, int64_t d, double* sum_sq, double* sum_abs) {
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, d, 64),
      [&](const tbb::blocked_range<int64_t>& cols) {
        for (int64_t t = 0; t < n; ++t)
          for (int64_t j = cols.begin(); j < cols.end(); ++j) {
            const double v = X[t * d + j];
            sum_abs[j] += std::abs(v);
            sum_sq[j] = std::fma(v, v, sum_sq[j]);  // one rounding, as the imatrix always had
          }
      },
      tbb::simple_partitioner());
}

void cpu_topk_logsumexp_row(const float* z, int64_t vocab, int k, int32_t* ids, double* lse,
                            std::vector<int>& idx) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, z[j]);
  double s = 0;
  for (int64_t j = 0; j < vocab; ++j) s += std::exp(double(z[j]) - double(mx));
  *lse = double(mx) + std::log(s);
  idx.resize(size_t(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  const auto better = [z](int a, int c) { return z[a] > z[c] || (z[a] == z[c] && a < c); };
  std::partial_sort(idx.begin(), idx.begin() + std::ptrdiff_t(k), idx.end(), better);
  for (int i = 0; i < k; ++i) ids[i] = idx[size_t(i)];
}

void cpu_topk_logsumexp(const float* logits, int64_t rows, int64_t vocab, int k, int32_t* top_ids,
                        double* lse) {
  QS_THROW_IF_NOT(k >= 1 && k <= vocab, "top-k: k ", k, " must be in [1, vocab ", vocab, "]");
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows), [&](const auto& rr) {
    std::vector<int> scratch;
    for (int64_t r = rr.begin(); r < rr.end(); ++r)
      cpu_topk_logsumexp_row(logits + r * vocab, vocab, k, top_ids + r * k, lse + r, scratch);
  });
}

void cpu_dequantize_ggml(int type, const uint8_t* blocks, float* y, int64_t n) {
  const int bw = ggml::block_weights(type), bb = ggml::block_bytes(type);
  QS_THROW_IF_NOT(bw > 0, "dequantize: ggml type ", type, " is not one qsweep decodes");
  QS_THROW_IF_NOT(n >= 0 && n % bw == 0, "dequantize: ", n,
                  " weights are not a whole number of blocks of ", bw);
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n / bw, 64), [&](const auto& br) {
    for (int64_t i = br.begin(); i < br.end(); ++i)
      for (int e = 0; e < bw; ++e) y[i * bw + e] = ggml::decode(type, blocks + i * bb, e);
  });
}

void cpu_gptq_columns(float* W_, const float* Hinv_, const int64_t* perm, float* scales,
                      float* zeros, uint8_t* codes, double* row_loss, int64_t rows, int64_t cols,
                      const kernels::GptqColumnsConfig& cfg) {
  Eigen::Map<MatF> W(W_, rows, cols);
  const Eigen::Map<const MatF> Hinv(Hinv_, cols, cols);
  for (int64_t i1 = 0; i1 < cols; i1 += cfg.block_size) {
    const int64_t i2 = std::min(i1 + int64_t(cfg.block_size), cols), count = i2 - i1;
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, rows, kGptqRowsPerTask),
        [&](const tbb::blocked_range<int64_t>& rr) {
          const int64_t r0 = rr.begin(), nr = int64_t(rr.size());
          MatF W1 = W.block(r0, i1, nr, count);
          MatF Err1(nr, count);
          for (int64_t rl = 0; rl < nr; ++rl) {
            const int64_t r = r0 + rl;
            row_loss[r] += kernels::gptq_row_block(W1.row(rl).data(), Err1.row(rl).data(), 1,
                                                   W_ + r * cols, Hinv_, perm, scales, zeros,
                                                   codes + r * cols, r, rows, cols, i1, count, cfg);
          }
          if (i2 < cols)
            W.block(r0, i2, nr, cols - i2).noalias() -= Err1 * Hinv.block(i1, i2, count, cols - i2);
        },
        tbb::simple_partitioner());
  }
}

}  // namespace qsweep
