// RTN and the min/max grid against hand computations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "common/errors.h"
#include "common/half.h"
#include "quantizers/quantizers.h"
#include "tests/quantizers/quantizer_test_util.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

TEST(QuantGrid, AsymHandComputed) {
  // xmin = -1, xmax = 2: scale = 3/15 = 0.2 -> fp16 0.199951171875; zero = round(5.0012) = 5;
  // x/scale = -5.0012, 2.5006, 10.0024, 1.2503 -> codes 0, 8, 15, 6.
  const float x[4] = {-1.0f, 0.5f, 2.0f, 0.25f};
  const QuantGrid grid{4, false, true};
  const GroupParams p = grid.find_params(x, 4);
  EXPECT_EQ(p.scale, 0.199951171875f);
  EXPECT_EQ(p.zero, 5.0f);
  const uint8_t want[4] = {0, 8, 15, 6};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(grid.quantize(x[i], p), want[i]) << i;
}

TEST(QuantGrid, SymHandComputed) {
  // xmax = max(|-1|, 2) = 2, xmin = -2: scale = 4/15 -> fp16 0.2666015625, zero = 8;
  // x/scale = -3.75, 1.875, 7.50 (clamped: 8 + 8 > 15), 0.94 -> codes 4, 10, 15, 9.
  const float x[4] = {-1.0f, 0.5f, 2.0f, 0.25f};
  const QuantGrid grid{4, true, true};
  const GroupParams p = grid.find_params(x, 4);
  EXPECT_EQ(p.scale, 0.2666015625f);
  EXPECT_EQ(p.zero, 8.0f);
  const uint8_t want[4] = {4, 10, 15, 9};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(grid.quantize(x[i], p), want[i]) << i;
}

TEST(QuantGrid, RoundsHalfToEvenLikeTorch) {
  // 2 bits, [-1, 2]: scale = 1, zero = 1. 0.5 -> 0, 1.5 -> 2, -0.5 -> -0 (half to even).
  const float x[5] = {-1.0f, 2.0f, 0.5f, 1.5f, -0.5f};
  const QuantGrid grid{2, false, false};
  const GroupParams p = grid.find_params(x, 5);
  EXPECT_EQ(p.scale, 1.0f);
  EXPECT_EQ(p.zero, 1.0f);
  const uint8_t want[5] = {0, 3, 1, 3, 1};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(grid.quantize(x[i], p), want[i]) << i;
}

TEST(QuantGrid, DegenerateAndNonNegativeGroups) {
  const float zeros[3] = {0, 0, 0};
  const QuantGrid asym{4, false, true};
  GroupParams p = asym.find_params(zeros, 3);  // xmin = -1, xmax = 1
  EXPECT_EQ(p.scale, half_to_float(float_to_half(2.0f / 15.0f)));
  EXPECT_EQ(p.zero, 8.0f);  // round(1 / 0.1333) = round(7.502)
  EXPECT_EQ(p.scale * (float(asym.quantize(0.0f, p)) - p.zero), 0.0f);

  // Sym with no negative value keeps xmin = 0 (the reference's quirk): scale = xmax / maxq.
  const float pos[2] = {0.5f, 3.0f};
  const QuantGrid sym{4, true, false};
  p = sym.find_params(pos, 2);
  EXPECT_EQ(p.scale, 3.0f / 15.0f);
  EXPECT_EQ(p.zero, 8.0f);
  EXPECT_EQ(sym.quantize(3.0f, p), 15);  // 15 + 8 clamps
}

// The grid formula written out plainly, for every bit width, in float without fp16 rounding.
GroupParams hand_params(const std::vector<float>& x, int bits, bool sym) {
  const float maxq = float((1 << bits) - 1);
  float lo = 0, hi = 0;
  for (float v : x) lo = std::min(lo, v), hi = std::max(hi, v);
  if (sym) {
    hi = std::max(-lo, hi);
    if (lo < 0) lo = -hi;
  }
  if (lo == 0 && hi == 0) lo = -1, hi = 1;
  GroupParams p;
  p.scale = (hi - lo) / maxq;
  p.zero = sym ? (maxq + 1) / 2 : std::nearbyint(-lo / p.scale);
  return p;
}

TEST(Rtn, MatchesHandComputationAllBitsGroupsAndSym) {
  std::mt19937_64 rng(test::test_seed(11));
  const MatrixRM W = test::random_weight(5, 70, rng);
  for (int bits = 2; bits <= 8; ++bits)
    for (bool sym : {false, true})
      for (int gs : {-1, 32, 70, 16, 24, 100}) {  // 24 leaves a short last group of 22
        SCOPED_TRACE(testing::Message() << "bits " << bits << " sym " << sym << " gs " << gs);
        const QTensor q = quantize_rtn(W, RtnConfig{bits, gs, sym});
        const int64_t g_cols = gs == -1 ? 70 : gs;
        const int64_t ng = (70 + g_cols - 1) / g_cols;
        ASSERT_EQ(q.n_groups(), ng);
        ASSERT_NO_THROW(q.validate());
        for (int64_t c = 0; c < 70; ++c) ASSERT_EQ(q.g_idx[size_t(c)], c / g_cols);
        for (int64_t r = 0; r < 5; ++r)
          for (int64_t g = 0; g < ng; ++g) {
            const int64_t c0 = g * g_cols, c1 = std::min<int64_t>(c0 + g_cols, 70);
            std::vector<float> x;
            for (int64_t c = c0; c < c1; ++c) x.push_back(W(r, c));
            GroupParams p = hand_params(x, bits, sym);
            p.scale = half_to_float(float_to_half(p.scale));  // then zero from that scale
            if (!sym)
              p.zero =
                  std::nearbyint(-std::min(0.0f, *std::min_element(x.begin(), x.end())) / p.scale);
            p.zero = std::clamp(p.zero, 0.0f, float((1 << bits) - 1));
            ASSERT_EQ(q.scale(g, r), p.scale);
            ASSERT_EQ(q.zero(g, r), p.zero);
            for (int64_t c = c0; c < c1; ++c) {
              const float v = std::nearbyint(W(r, c) / p.scale) + p.zero;
              ASSERT_EQ(q.code(r, c), uint8_t(std::clamp(v, 0.0f, float((1 << bits) - 1))));
            }
          }
        // Inside the grid's range the error is at most half a step.
        const MatrixRM D = q.dequantize();
        for (int64_t r = 0; r < 5; ++r)
          for (int64_t c = 0; c < 70; ++c) {
            const int64_t g = q.g_idx[size_t(c)];
            const float lo = q.scale(g, r) * (0 - q.zero(g, r));
            const float hi = q.scale(g, r) * (q.maxq() - q.zero(g, r));
            if (W(r, c) >= lo && W(r, c) <= hi) {
              ASSERT_LE(std::fabs(D(r, c) - W(r, c)), q.scale(g, r) * 0.5f * 1.0001f);
            }
          }
      }
}

TEST(Rtn, ScalesAreFp16Exact) {
  std::mt19937_64 rng(test::test_seed(12));
  const QTensor q = quantize_rtn(test::random_weight(8, 64, rng), RtnConfig{3, 16, false});
  for (float s : q.scales) EXPECT_EQ(half_to_float(float_to_half(s)), s);
}

TEST(Rtn, RejectsBadConfigAndInput) {
  const MatrixRM W = MatrixRM::Ones(4, 8);
  EXPECT_THROW(quantize_rtn(W, RtnConfig{1, -1, false}), Error);
  EXPECT_THROW(quantize_rtn(W, RtnConfig{9, -1, false}), Error);
  EXPECT_THROW(quantize_rtn(W, RtnConfig{4, 0, false}), Error);
  EXPECT_THROW(quantize_rtn(W, RtnConfig{4, -2, false}), Error);
  MatrixRM bad = W;
  bad(1, 2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantize_rtn(bad, RtnConfig{}), Error);
  for (int bits = 2; bits <= 8; ++bits) EXPECT_NO_THROW(quantize_rtn(W, RtnConfig{bits, 4, true}));
}

}  // namespace
}  // namespace qsweep
