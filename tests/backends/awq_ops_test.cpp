// AWQ's search ops (backend.h's AWQ block), one test body per op run on each backend: "cpu"
// always, "cuda" when a device is usable (skipped, saying why, when not). References are
// written here from the definitions (AutoAWQ's pseudo_quantize_tensor on the GPTQ min/max
// grid with fp16 scales), not from kernels/awq_math.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "common/half.h"
#include "tests/backends/twins.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

// The grid over x[0..n): quantize-dequantize each value (fp16 scale, round half to even).
std::vector<float> ref_grid(const std::vector<float>& x, int bits, bool sym) {
  const float maxq = float((1 << bits) - 1);
  float lo = 0, hi = 0;
  for (float v : x) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (sym) {
    hi = std::max(std::abs(lo), hi);
    if (lo < 0) lo = -hi;
  }
  if (lo == 0 && hi == 0) {
    lo = -1;
    hi = 1;
  }
  float scale = half_to_float(float_to_half((hi - lo) / maxq));
  if (scale == 0) scale = half_to_float(1);
  const float zero = sym ? (maxq + 1) / 2 : std::clamp(std::nearbyint(-lo / scale), 0.0f, maxq);
  std::vector<float> q(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float c = std::clamp(std::nearbyint(x[i] / scale) + zero, 0.0f, maxq);
    q[i] = scale * (c - zero);
  }
  return q;
}

class AwqOps : public test::Twins {
 protected:
  AwqOps() : Twins(17) {}
};

// 200 columns in groups of 64: three full groups and a narrower last one (8 columns).
constexpr int64_t kRows = 13, kCols = 200, kGroup = 64;

TEST_P(AwqOps, FakeQuantOfScaledWeightIsTheGridOnWTimesSDividedByS) {
  const auto W = randn(size_t(kRows * kCols), 0.05f);
  std::vector<float> s(static_cast<size_t>(kCols));
  std::uniform_real_distribution<float> u(0.25f, 4.0f);
  for (auto& v : s) v = u(rng_);
  for (bool sym : {false, true})
    for (int bits : {3, 4}) {
      const kernels::AwqGridConfig cfg{bits, sym, kGroup};
      BackendArray<float> w(b(), W), sd(b(), s), q(b(), W.size());
      b().awq_fake_quant_scaled(w.get(), sd.get(), q.get(), kRows, kCols, cfg);
      const auto got = q.download();
      for (int64_t r = 0; r < kRows; ++r)
        for (int64_t c0 = 0; c0 < kCols; c0 += kGroup) {
          const int64_t n = std::min(kGroup, kCols - c0);
          std::vector<float> x(static_cast<size_t>(n));
          for (int64_t i = 0; i < n; ++i)
            x[size_t(i)] = W[size_t(r * kCols + c0 + i)] * s[size_t(c0 + i)];
          const auto dq = ref_grid(x, bits, sym);
          for (int64_t i = 0; i < n; ++i)  // the same fp32 operations: exact on both twins
            ASSERT_EQ(got[size_t(r * kCols + c0 + i)], dq[size_t(i)] / s[size_t(c0 + i)])
                << "row " << r << " column " << c0 + i << " bits " << bits << " sym " << sym;
        }
    }
}

TEST_P(AwqOps, MeanSquaredErrorIsTheFp64Mean) {
  const int64_t n = 5000;
  const auto A = randn(size_t(n)), B = randn(size_t(n));
  double ref = 0;
  for (int64_t i = 0; i < n; ++i) ref += std::pow(double(A[size_t(i)]) - double(B[size_t(i)]), 2);
  ref /= double(n);
  BackendArray<float> a(b(), A), c(b(), B);
  EXPECT_NEAR(b().mean_squared_error(a.get(), c.get(), n), ref, 1e-12 * ref);
  EXPECT_EQ(b().mean_squared_error(a.get(), c.get(), 0), 0.0);
}

// The clip search against the textbook loop in fp64. The twins sum each candidate's error in
// fp32 products (CPU) or fp64 (CUDA), so a candidate within 1e-5 relative of the reference's
// best counts as the best (a near tie); most must match exactly.
TEST_P(AwqOps, ClipSearchPicksTheMaxRatioWithTheSmallestOutputError) {
  const int64_t T = 48;
  const int n_grid = 20, n_shrink = 10;
  const auto W = randn(size_t(kRows * kCols), 0.05f), X = randn(size_t(T * kCols));
  const kernels::AwqGridConfig cfg{4, false, kGroup};
  BackendArray<float> w(b(), W), x(b(), X);
  const int64_t groups = (kCols + kGroup - 1) / kGroup;
  BackendArray<float> best(b(), size_t(groups * kRows));
  b().awq_clip_search(w.get(), x.get(), T, kRows, kCols, cfg, n_grid, n_shrink, best.get());
  const auto got = best.download();
  int exact = 0;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t r = 0; r < kRows; ++r) {
      const int64_t c0 = g * kGroup, n = std::min(kGroup, kCols - c0);
      std::vector<float> wg(W.begin() + r * kCols + c0, W.begin() + r * kCols + c0 + n);
      float org_max = 0;
      for (float v : wg) org_max = std::max(org_max, std::abs(v));
      std::vector<double> err(static_cast<size_t>(n_shrink));
      std::vector<float> max_val(static_cast<size_t>(n_shrink));
      for (int i = 0; i < n_shrink; ++i) {
        max_val[size_t(i)] = org_max * (1.0f - float(i) / float(n_grid));
        std::vector<float> cl(wg);
        for (auto& v : cl) v = std::clamp(v, -max_val[size_t(i)], max_val[size_t(i)]);
        const auto q = ref_grid(cl, 4, false);
        double e = 0;
        for (int64_t t = 0; t < T; ++t) {
          double d = 0;
          for (int64_t j = 0; j < n; ++j)
            d += double(X[size_t(t * kCols + c0 + j)]) *
                 (double(q[size_t(j)]) - double(wg[size_t(j)]));
          e += d * d;
        }
        err[size_t(i)] = e / double(T);
      }
      const size_t arg = size_t(std::min_element(err.begin(), err.end()) - err.begin());
      const float m = got[size_t(g * kRows + r)];
      const auto it = std::find(max_val.begin(), max_val.end(), m);
      ASSERT_NE(it, max_val.end())
          << "group " << g << " row " << r << ": " << m << " is not a candidate";
      const double e = err[size_t(it - max_val.begin())];
      EXPECT_LE(e, err[arg] * (1 + 1e-5)) << "group " << g << " row " << r;
      exact += size_t(it - max_val.begin()) == arg;
    }
  EXPECT_GE(exact, int(groups * kRows) * 9 / 10);
}

QSWEEP_INSTANTIATE_TWINS(AwqOps);

}  // namespace
}  // namespace qsweep
