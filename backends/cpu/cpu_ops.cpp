#include "backends/cpu/cpu_ops.h"

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/errors.h"

namespace qsweep {

namespace {
using MatRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const MatRM, Eigen::Unaligned, Eigen::OuterStride<>>;
using RowMap = Eigen::Map<MatRM, Eigen::Unaligned, Eigen::OuterStride<>>;
// Eigen's widest float SIMD packet for this build (16 lanes with AVX-512).
using Packet = Eigen::internal::packet_traits<float>::type;
constexpr int kPacket = Eigen::internal::packet_traits<float>::size;

// x[i] = f(x[i]) over n floats one packet at a time, the tail through a zero-padded packet: every
// element gets the same arithmetic wherever it sits. (Eigen's array expressions peel an unaligned
// head with scalar code, so a value's exp depended on its address, and the batched and cached
// forward passes disagreed in the last bit.)
template <typename F>
void for_each_packet(float* x, int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + kPacket <= n; i += kPacket)
    Eigen::internal::pstoreu(x + i, f(Eigen::internal::ploadu<Packet>(x + i)));
  if (i < n) {
    alignas(64) float tail[kPacket] = {};
    std::copy(x + i, x + n, tail);
    Eigen::internal::pstore(tail, f(Eigen::internal::pload<Packet>(tail)));
    std::copy(tail, tail + (n - i), x + i);
  }
}

// Softmax of one score row over its visible columns [lo, hi], the rest of its `cols` set to 0.
// exp goes through Eigen's SIMD kernel (scalar expf was 7% of a prefill); the sum and the
// division stay sequential, so a row's result does not depend on where it sits.
void softmax_visible(float* r, int64_t lo, int64_t hi, int64_t cols) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = lo; j <= hi; ++j) mx = std::max(mx, r[j]);
  float* visible = r + lo;
  const int64_t count = hi - lo + 1;
  const Packet shift = Eigen::internal::pset1<Packet>(mx);
  for_each_packet(visible, count, [&](const Packet& x) {
    return Eigen::internal::pexp(Eigen::internal::psub(x, shift));
  });
  float sum = 0;
  for (int64_t j = 0; j < count; ++j) sum += visible[j];
  for (int64_t j = 0; j < count; ++j) visible[j] /= sum;
  std::fill(r, r + lo, 0.0f);
  std::fill(r + hi + 1, r + cols, 0.0f);
}

// Queries per block in cpu_attention: a 64 x 512 score block is 128 KiB (L2).
constexpr int64_t kAttentionQueryBlock = 64;

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
  // Scores of one query block, per thread (function-static, not thread_local: LeakSanitizer does
  // not see TBB workers' thread-local storage at exit; and a fresh 128 KiB matrix per block was
  // an mmap plus page faults).
  static tbb::enumerable_thread_specific<std::vector<float>> score_buffers;
  tbb::parallel_for(int64_t(0), tasks, [&](int64_t t) {
    const AttentionSpan& sp = spans[size_t(t / nh)];
    const int h = int(t % nh), kvh = h / group;
    std::vector<float>& scores = score_buffers.local();
    // The first key position `pos` sees (all before it with no sliding window).
    const auto first_key = [&](int64_t pos) {
      return shape.sliding_window > 0 ? std::max<int64_t>(0, pos - shape.sliding_window + 1) : 0;
    };
    // Queries go in blocks of kAttentionQueryBlock so that a block multiplies only the keys its
    // last query can see: causal masking then skips ~45% of a 512-token span's products instead
    // of computing and zeroing them (#18). Masked keys inside a block's range still get weight 0.
    for (int64_t i0 = 0; i0 < sp.n; i0 += kAttentionQueryBlock) {
      const int64_t rows = std::min(kAttentionQueryBlock, sp.n - i0);
      const int64_t T = sp.p0 + i0 + rows;  // keys visible to the block's last query
      const int64_t first_pos = sp.p0 + i0;
      const int64_t k0 = first_key(first_pos);  // no query of the block sees an earlier key
      const int64_t cols = T - k0;
      const ConstMap Q(q + (sp.q_off + i0) * q_width + int64_t(h) * hd, rows, hd,
                       Eigen::OuterStride<>(q_width));
      const ConstMap K(k + (sp.kv_off + k0) * kv_width + int64_t(kvh) * hd, cols, hd,
                       Eigen::OuterStride<>(kv_width));
      const ConstMap V(v + (sp.kv_off + k0) * kv_width + int64_t(kvh) * hd, cols, hd,
                       Eigen::OuterStride<>(kv_width));
      if (scores.size() < size_t(rows * cols)) scores.resize(size_t(rows * cols));
      Eigen::Map<MatRM> S(scores.data(), rows, cols);
      S.noalias() = Q * K.transpose();
      S *= scale;
      for (int64_t i = 0; i < rows; ++i)
        softmax_visible(S.row(i).data(), first_key(first_pos + i) - k0, first_pos + i - k0, cols);
      RowMap O(out + (sp.q_off + i0) * q_width + int64_t(h) * hd, rows, hd,
               Eigen::OuterStride<>(q_width));
      O.noalias() = S * V;
    }
  });
}

void cpu_swiglu(float* gate, const float* up, int64_t n) {
  constexpr int64_t kChunk = 4096;
  tbb::parallel_for(int64_t(0), (n + kChunk - 1) / kChunk, [&](int64_t b) {
    const int64_t end = std::min(n, (b + 1) * kChunk);
    // silu through Eigen's SIMD exp (scalar expf was 3% of a prefill), packet by packet.
    const int64_t len = end - b * kChunk;
    const float* u = up + b * kChunk;
    float* g = gate + b * kChunk;
    const Packet one = Eigen::internal::pset1<Packet>(1.0f);
    for_each_packet(g, len, [&](const Packet& x) {
      return Eigen::internal::pdiv(
          x, Eigen::internal::padd(one, Eigen::internal::pexp(Eigen::internal::pnegate(x))));
    });
    for (int64_t j = 0; j < len; ++j) g[j] *= u[j];
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
