#include "backends/cpu/cpu_ops.h"

#include <tbb/parallel_for.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "common/errors.h"

namespace qsweep {

namespace {
using MatRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const MatRM, Eigen::Unaligned, Eigen::OuterStride<>>;
using RowMap = Eigen::Map<MatRM, Eigen::Unaligned, Eigen::OuterStride<>>;

double row_lse(const float* r, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, r[j]);
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += std::exp(double(r[j] - mx));
  return double(mx + float(std::log(sum)));
}
}  // namespace

void cpu_rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) {
  const Eigen::Map<const Eigen::RowVectorXf> wv(w, dim);
  tbb::parallel_for(int64_t(0), rows, [&](int64_t i) {
    const Eigen::Map<const Eigen::RowVectorXf> xr(x + i * dim, dim);
    const float ms = xr.squaredNorm() / float(dim);
    const float r = 1.0f / std::sqrt(ms + eps);
    Eigen::Map<Eigen::RowVectorXf>(y + i * dim, dim) = (xr * r).cwiseProduct(wv);
  });
}

// The angle table covers only [min, max] of the positions, so a decode step at position 200
// does not recompute 200 rows of angles (each entry depends on its position only, so a
// prefill and a decode step agree exactly).
void cpu_rope(float* x, int64_t rows, int n_heads, int head_dim, const std::vector<float>& inv_freq,
              const std::vector<int64_t>& row_pos) {
  QS_ASSERT(int64_t(row_pos.size()) == rows && int64_t(inv_freq.size()) == head_dim / 2);
  if (rows == 0) return;
  const int half = head_dim / 2;
  const auto [min_it, max_it] = std::minmax_element(row_pos.begin(), row_pos.end());
  const int64_t p0 = *min_it, n_pos = *max_it - p0 + 1;
  std::vector<float> cos_t(size_t(n_pos * half)), sin_t(size_t(n_pos * half));
  for (int i = 0; i < half; ++i) {
    for (int64_t p = 0; p < n_pos; ++p) {
      const float angle = float(p0 + p) * inv_freq[size_t(i)];
      cos_t[size_t(p) * half + i] = float(std::cos(double(angle)));
      sin_t[size_t(p) * half + i] = float(std::sin(double(angle)));
    }
  }
  const int64_t width = int64_t(n_heads) * head_dim;
  tbb::parallel_for(int64_t(0), rows, [&](int64_t row) {
    const float* c = &cos_t[size_t(row_pos[size_t(row)] - p0) * half];
    const float* s = &sin_t[size_t(row_pos[size_t(row)] - p0) * half];
    float* xr = x + row * width;
    for (int h = 0; h < n_heads; ++h) {
      float* v = xr + h * head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i] + a * s[i];
      }
    }
  });
}

void cpu_attention(const float* q, const float* k, const float* v, float* out,
                   const std::vector<AttentionSpan>& spans, const AttentionShape& shape) {
  const int hd = shape.head_dim, nh = shape.n_heads, group = shape.n_heads / shape.n_kv_heads;
  const int64_t q_width = int64_t(nh) * hd, kv_width = int64_t(shape.n_kv_heads) * hd;
  const float scale = 1.0f / std::sqrt(float(hd));
  const int64_t tasks = int64_t(spans.size()) * nh;
  tbb::parallel_for(int64_t(0), tasks, [&](int64_t t) {
    const AttentionSpan& sp = spans[size_t(t / nh)];
    const int h = int(t % nh), kvh = h / group;
    const int64_t T = sp.p0 + sp.n;  // keys visible to the last query
    const ConstMap Q(q + sp.q_off * q_width + int64_t(h) * hd, sp.n, hd,
                     Eigen::OuterStride<>(q_width));
    const ConstMap K(k + sp.kv_off * kv_width + int64_t(kvh) * hd, T, hd,
                     Eigen::OuterStride<>(kv_width));
    const ConstMap V(v + sp.kv_off * kv_width + int64_t(kvh) * hd, T, hd,
                     Eigen::OuterStride<>(kv_width));
    MatRM S = (Q * K.transpose()) * scale;
    for (int64_t i = 0; i < sp.n; ++i) {
      const int64_t pos = sp.p0 + i;
      const int64_t lo =
          shape.sliding_window > 0 ? std::max<int64_t>(0, pos - shape.sliding_window + 1) : 0;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = lo; j <= pos; ++j) mx = std::max(mx, S(i, j));
      float sum = 0;
      for (int64_t j = 0; j < T; ++j) {
        const float e = (j >= lo && j <= pos) ? std::exp(S(i, j) - mx) : 0.0f;
        S(i, j) = e;
        sum += e;
      }
      S.row(i) /= sum;
    }
    RowMap O(out + sp.q_off * q_width + int64_t(h) * hd, sp.n, hd, Eigen::OuterStride<>(q_width));
    O.noalias() = S * V;
  });
}

void cpu_swiglu(float* gate, const float* up, int64_t n) {
  constexpr int64_t kChunk = 4096;
  tbb::parallel_for(int64_t(0), (n + kChunk - 1) / kChunk, [&](int64_t b) {
    const int64_t end = std::min(n, (b + 1) * kChunk);
    for (int64_t j = b * kChunk; j < end; ++j)
      gate[j] = gate[j] / (1.0f + std::exp(-gate[j])) * up[j];
  });
}

void cpu_log_softmax_rows(float* logits, int64_t rows, int64_t cols) {
  tbb::parallel_for(int64_t(0), rows, [&](int64_t i) {
    float* r = logits + i * cols;
    const float lse = float(row_lse(r, cols));
    for (int64_t j = 0; j < cols; ++j) r[j] -= lse;
  });
}

void cpu_token_nll(const float* logits, const int32_t* targets, float* nll, int64_t rows,
                   int64_t cols) {
  tbb::parallel_for(int64_t(0), rows, [&](int64_t i) {
    const float* r = logits + i * cols;
    QS_ASSERT(targets[i] >= 0 && targets[i] < cols);
    nll[i] = -(r[targets[i]] - float(row_lse(r, cols)));
  });
}

}  // namespace qsweep
