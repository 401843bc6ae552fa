// Every backend op against an independent double-precision reference, one test body per op run
// on each backend: "cpu" always, "cuda" when a device is usable (skipped, saying why, when not).
// The CPU ops are the ones the forward pass runs (cpu_ops.h), so this also pins the CUDA twins
// to the CPU pipeline within the bounds below.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "common/errors.h"
#include "common/half.h"
#include "tests/backends/twins.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

class BackendOps : public test::Twins {
 protected:
  BackendOps() : Twins(11) {}
};

// max |got − ref| / max(|ref|, floor) over all entries.
double max_rel(const std::vector<float>& got, const std::vector<double>& ref, double floor = 1.0) {
  EXPECT_EQ(got.size(), ref.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(got.size(), ref.size()); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    worst = std::max(worst, std::abs(double(got[i]) - ref[i]) / std::max(std::abs(ref[i]), floor));
  }
  return worst;
}

TEST_P(BackendOps, GemmFp32AndFp16Inputs) {
  const int64_t m = 37, n = 70, k = 129;
  const auto A = randn(size_t(m * k)), B = randn(size_t(n * k));
  std::vector<uint16_t> Ah(A.size()), Bh(B.size());
  for (size_t i = 0; i < A.size(); ++i) Ah[i] = float_to_half(A[i]);
  for (size_t i = 0; i < B.size(); ++i) Bh[i] = float_to_half(B[i]);
  std::vector<double> ref(size_t(m * n)), ref_h(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t t = 0; t < k; ++t) {
        ref[size_t(i * n + j)] += double(A[size_t(i * k + t)]) * B[size_t(j * k + t)];
        ref_h[size_t(i * n + j)] +=
            double(half_to_float(Ah[size_t(i * k + t)])) * half_to_float(Bh[size_t(j * k + t)]);
      }
  BackendArray<float> a(b(), A), bb(b(), B), c(b(), size_t(m * n));
  b().gemm_nt(a.get(), bb.get(), c.get(), m, n, k);
  EXPECT_LT(max_rel(c.download(), ref), 1e-5);
  BackendArray<uint16_t> ah(b(), Ah), bh(b(), Bh);
  b().gemm_nt_f16(ah.get(), bh.get(), c.get(), m, n, k);
  // fp16 inputs are exact in fp32; only the fp32 accumulation differs from the reference.
  EXPECT_LT(max_rel(c.download(), ref_h), 1e-5);
}

TEST_P(BackendOps, RmsNorm) {
  const int64_t rows = 5, dim = 300;
  const auto x = randn(size_t(rows * dim), 3.0f), w = randn(size_t(dim));
  std::vector<double> ref(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < dim; ++j) ss += double(x[size_t(r * dim + j)]) * x[size_t(r * dim + j)];
    const double inv = 1.0 / std::sqrt(ss / double(dim) + 1e-5);
    for (int64_t j = 0; j < dim; ++j)
      ref[size_t(r * dim + j)] = x[size_t(r * dim + j)] * inv * w[size_t(j)];
  }
  BackendArray<float> xd(b(), x), wd(b(), w), y(b(), x.size());
  b().rms_norm(xd.get(), wd.get(), y.get(), rows, dim, 1e-5f);
  EXPECT_LT(max_rel(y.download(), ref), 1e-5);
}

TEST_P(BackendOps, RopeRotatesEachHalfPairByItsPositionsAngle) {
  const int heads = 3, hd = 16, half = hd / 2;
  const std::vector<int64_t> pos = {0, 1, 2, 250, 7, 0};
  const int64_t rows = int64_t(pos.size()), width = int64_t(heads) * hd;
  // θ^(−2i/d) with the low frequencies divided by 8 (as a llama3 rope_scaling does): the op
  // must use the table it is given, pair by pair.
  const double theta = 10000.0;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i)
    inv_freq[size_t(i)] = float(std::pow(theta, -2.0 * i / hd) / (i >= half / 2 ? 8.0 : 1.0));
  const auto x = randn(size_t(rows * width));
  std::vector<double> ref(x.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < half; ++i) {
        const double ang = double(pos[size_t(r)]) * double(inv_freq[size_t(i)]);
        const size_t o = size_t(r * width + h * hd);
        const double a = x[o + size_t(i)], c = x[o + size_t(i + half)];
        ref[o + size_t(i)] = a * std::cos(ang) - c * std::sin(ang);
        ref[o + size_t(i + half)] = c * std::cos(ang) + a * std::sin(ang);
      }
  BackendArray<float> xd(b(), x);
  b().rope(xd.get(), rows, heads, hd, inv_freq, pos);
  // fp32 angles at position 250: ~250 · 2⁻²⁴ rad of rounding.
  EXPECT_LT(max_rel(xd.download(), ref), 1e-4);
}

TEST_P(BackendOps, CausalGqaAttentionWithWindowPackedAndCachedSpans) {
  for (int window : {0, 3}) {
    const AttentionShape s{4, 2, 8, window};
    const int64_t qw = int64_t(s.n_heads) * s.head_dim, kw = int64_t(s.n_kv_heads) * s.head_dim;
    // Two packed sequences (5 and 3 rows) and a decode-style span: 2 queries at positions
    // 6, 7 over 8 cached keys stored from row 8.
    const std::vector<AttentionSpan> spans = {{0, 0, 5, 0}, {5, 5, 3, 0}, {8, 8, 2, 6}};
    const int64_t q_rows = 10, kv_rows = 16;
    const auto q = randn(size_t(q_rows * qw)), k = randn(size_t(kv_rows * kw)),
               v = randn(size_t(kv_rows * kw));
    std::vector<double> ref(q.size(), 0.0);
    for (const auto& sp : spans)
      for (int64_t i = 0; i < sp.n; ++i)
        for (int h = 0; h < s.n_heads; ++h) {
          const int kvh = h / (s.n_heads / s.n_kv_heads);
          const int64_t p = sp.p0 + i, lo = window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
          std::vector<double> sc;
          double mx = -INFINITY;
          for (int64_t j = lo; j <= p; ++j) {
            double d = 0;
            for (int t = 0; t < s.head_dim; ++t)
              d += double(q[size_t((sp.q_off + i) * qw + h * s.head_dim + t)]) *
                   k[size_t((sp.kv_off + j) * kw + kvh * s.head_dim + t)];
            sc.push_back(d / std::sqrt(double(s.head_dim)));
            mx = std::max(mx, sc.back());
          }
          double z = 0;
          for (double& e : sc) z += (e = std::exp(e - mx));
          for (int t = 0; t < s.head_dim; ++t) {
            double o = 0;
            for (int64_t j = lo; j <= p; ++j)
              o += sc[size_t(j - lo)] / z * v[size_t((sp.kv_off + j) * kw + kvh * s.head_dim + t)];
            ref[size_t((sp.q_off + i) * qw + h * s.head_dim + t)] = o;
          }
        }
    BackendArray<float> qd(b(), q), kd(b(), k), vd(b(), v), out(b(), q.size());
    b().attention(qd.get(), kd.get(), vd.get(), out.get(), spans, s);
    EXPECT_LT(max_rel(out.download(), ref), 1e-5) << "window " << window;
  }
}

TEST_P(BackendOps, SwigluAndTokenNll) {
  const auto g = randn(1000, 4.0f), u = randn(1000);
  std::vector<double> ref(g.size());
  for (size_t i = 0; i < g.size(); ++i)
    ref[i] = double(g[i]) / (1 + std::exp(-double(g[i]))) * u[i];
  BackendArray<float> gd(b(), g), ud(b(), u);
  b().swiglu(gd.get(), ud.get(), int64_t(g.size()));
  EXPECT_LT(max_rel(gd.download(), ref), 1e-5);

  const int64_t rows = 7, vocab = 5003;
  const auto logits = randn(size_t(rows * vocab), 5.0f);
  std::vector<int32_t> targets = {0, 5002, 17, 4000, 1, 2500, 99};
  std::vector<double> nll(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double mx = -INFINITY, z = 0;
    for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, double(logits[size_t(r * vocab + j)]));
    for (int64_t j = 0; j < vocab; ++j) z += std::exp(logits[size_t(r * vocab + j)] - mx);
    nll[size_t(r)] = -(logits[size_t(r * vocab + targets[size_t(r)])] - mx - std::log(z));
  }
  BackendArray<float> ld(b(), logits), out(b(), size_t(rows));
  BackendArray<int32_t> td(b(), targets);
  b().token_nll(ld.get(), td.get(), out.get(), rows, vocab);
  EXPECT_LT(max_rel(out.download(), nll), 1e-5);
}

TEST_P(BackendOps, ResidualAddAndRowBias) {
  const int64_t rows = 9, cols = 31;
  const auto y = randn(size_t(rows * cols)), x = randn(size_t(rows * cols)), bias = randn(31);
  std::vector<double> ref(y.size());
  for (size_t i = 0; i < y.size(); ++i) ref[i] = double(y[i]) + x[i] + bias[i % size_t(cols)];
  BackendArray<float> yd(b(), y), xd(b(), x), bd(b(), bias);
  b().add(yd.get(), xd.get(), rows * cols);
  b().add_row_bias(yd.get(), bd.get(), rows, cols);
  EXPECT_LT(max_rel(yd.download(), ref), 1e-6);
}

TEST_P(BackendOps, HessianAccumulatesXtX) {
  const int64_t n = 50, d = 33;
  const auto X = randn(size_t(n * d));
  std::vector<double> H0(size_t(d * d));
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j <= i; ++j) H0[size_t(i * d + j)] = H0[size_t(j * d + i)] = 0.25 * (i + j);
  std::vector<double> ref = H0;
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j)
      for (int64_t t = 0; t < n; ++t)
        ref[size_t(i * d + j)] += double(X[size_t(t * d + i)]) * X[size_t(t * d + j)];
  BackendArray<float> xd(b(), X);
  BackendArray<double> h(b(), H0);
  b().hessian_accumulate(xd.get(), h.get(), n, d);
  const auto got = h.download();
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], ref[i], 1e-9 * (1 + std::abs(ref[i])));
}

TEST_P(BackendOps, UpperCholeskyOfTheInverseSatisfiesUtUEqualsHInverse) {
  const int64_t d = 40, n = 200;
  const auto X = randn(size_t(n * d));
  std::vector<double> H(size_t(d * d));
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j) {
      for (int64_t t = 0; t < n; ++t)
        H[size_t(i * d + j)] += double(X[size_t(t * d + i)]) * X[size_t(t * d + j)];
      if (i == j) H[size_t(i * d + j)] += 0.1;
    }
  BackendArray<double> hd(b(), H);
  BackendArray<float> u(b(), size_t(d * d));
  ASSERT_TRUE(b().upper_cholesky_of_inverse(hd.get(), u.get(), d));
  const auto U = u.download();
  // U upper with a positive diagonal, and (UᵀU)·H = I.
  double worst = 0;
  for (int64_t i = 0; i < d; ++i) {
    EXPECT_GT(U[size_t(i * d + i)], 0.0f);
    for (int64_t j = 0; j < i; ++j) ASSERT_EQ(U[size_t(i * d + j)], 0.0f) << i << "," << j;
  }
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j) {
      double s = 0;
      for (int64_t a = 0; a < d; ++a) {
        double inv_ia = 0;  // (UᵀU)(i, a)
        for (int64_t t = 0; t <= std::min(i, a); ++t)
          inv_ia += double(U[size_t(t * d + i)]) * U[size_t(t * d + a)];
        s += inv_ia * H[size_t(a * d + j)];
      }
      worst = std::max(worst, std::abs(s - (i == j ? 1.0 : 0.0)));
    }
  EXPECT_LT(worst, 1e-4);  // U is fp32

  // Not positive definite: refused, so GPTQ can add damping.
  std::vector<double> bad(size_t(d * d), 0.0);
  for (int64_t i = 0; i < d; ++i) bad[size_t(i * d + i)] = i == 7 ? -1.0 : 1.0;
  BackendArray<double> bd(b(), bad);
  EXPECT_FALSE(b().upper_cholesky_of_inverse(bd.get(), u.get(), d));
}

TEST_P(BackendOps, DequantizeGroupsWithActOrder) {
  const int64_t rows = 6, cols = 40, gs = 8, groups = cols / gs;
  std::vector<uint8_t> codes(size_t(rows * cols));
  std::uniform_int_distribution<int> code(0, 15);
  for (auto& c : codes) c = uint8_t(code(rng_));
  const auto scales = randn(size_t(groups * rows));
  std::vector<float> zeros(size_t(groups * rows));
  for (auto& z : zeros) z = float(code(rng_));
  std::vector<int32_t> g_idx(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) g_idx[size_t(c)] = int32_t(c / gs);
  std::shuffle(g_idx.begin(), g_idx.end(), rng_);  // act-order: groups are not column runs
  BackendArray<uint8_t> cd(b(), codes);
  BackendArray<float> sd(b(), scales), zd(b(), zeros), W(b(), size_t(rows * cols));
  BackendArray<int32_t> gd(b(), g_idx);
  b().dequantize_groups(cd.get(), sd.get(), zd.get(), gd.get(), W.get(), rows, cols);
  const auto w = W.download();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t g = g_idx[size_t(c)];
      ASSERT_EQ(w[size_t(r * cols + c)],
                scales[size_t(g * rows + r)] *
                    (float(codes[size_t(r * cols + c)]) - zeros[size_t(g * rows + r)]));
    }
}

QSWEEP_INSTANTIATE_TWINS(BackendOps);

// The device count the executor schedules on: 0 exactly when CUDA is not usable; a device
// index that is not there is an Error naming it and the count.
TEST(CudaDevices, CountIsZeroExactlyWithoutCudaAndAMissingIndexIsAnError) {
  const int n = cuda_device_count();
  EXPECT_GE(n, 0);
  EXPECT_EQ(n > 0, cuda_available());
  try {
    use_cuda_device(n);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(cat("CUDA device ", n, " is not there (", n, " usable)")),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(use_cuda_device(-1), Error);
}

}  // namespace
}  // namespace qsweep
