// fp16/bf16 conversions against the CPU's own F16C instructions (an independent
// reference) and exhaustive round trips.
#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <random>

#include "common/errors.h"
#include "common/half.h"
#include "common/half_convert.h"
#include "tests/support/test_support.h"

namespace qsweep {

TEST(Half, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = half_to_float(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f))));
      continue;
    }
    ASSERT_EQ(float_to_half(f), h) << "half 0x" << std::hex << h;
  }
}

#if defined(__F16C__)
TEST(Half, MatchesHardwareConversion) {
  std::mt19937 rng(uint32_t(test::test_seed(7)));
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    const float f = bits_to_float(bits(rng));
    if (std::isnan(f)) continue;
    const uint16_t hw = uint16_t(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
    ASSERT_EQ(float_to_half(f), hw) << "float bits 0x" << std::hex << float_to_bits(f);
  }
  for (uint32_t h = 0; h < 65536; ++h) {
    const float hw = _cvtsh_ss(uint16_t(h));
    if (std::isnan(hw)) continue;
    ASSERT_EQ(float_to_bits(half_to_float(uint16_t(h))), float_to_bits(hw));
  }
}
#endif

TEST(BFloat16, RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly half way between two bf16 values: ties to even (down).
  EXPECT_EQ(float_to_bf16(1.0f + 1.0f / 256), 0x3f80);
  EXPECT_EQ(float_to_bf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_EQ(bf16_to_float(0x3f82), 1.0f + 2.0f / 128);
}

TEST(CheckedArithmetic, OverflowIsAnError) {
  EXPECT_EQ(mul_checked(1 << 20, 1 << 20, "x"), int64_t(1) << 40);
  EXPECT_THROW(mul_checked(int64_t(1) << 40, int64_t(1) << 40, "x"), Error);
  EXPECT_THROW(add_checked(INT64_MAX, 1, "x"), Error);
  EXPECT_THROW(mul_checked(-1, 2, "x"), Error);
}

// The bulk conversions (common/half_convert.h) against the scalar ones, element by element,
// at lengths that exercise both the 8-wide and the tail path.
TEST(HalfConvert, BulkEqualsScalar) {
  std::mt19937 rng(uint32_t(test::test_seed(11)));
  std::uniform_int_distribution<uint32_t> bits;
  for (size_t n : {size_t(0), size_t(5), size_t(8), size_t(4099)}) {
    std::vector<float> x(n), back(n);
    std::vector<uint16_t> h(n), from(n);
    for (size_t i = 0; i < n; ++i) {
      x[i] = bits_to_float(bits(rng));
      from[i] = uint16_t(bits(rng));
    }
    floats_to_halves(x.data(), h.data(), n);
    halves_to_floats(from.data(), back.data(), n);
    for (size_t i = 0; i < n; ++i) {
      if (std::isnan(x[i]))
        EXPECT_TRUE(std::isnan(half_to_float(h[i]))) << i;
      else
        ASSERT_EQ(h[i], float_to_half(x[i])) << "n " << n << " i " << i << " x " << x[i];
      const float want = half_to_float(from[i]);
      if (std::isnan(want))
        EXPECT_TRUE(std::isnan(back[i]));
      else
        ASSERT_EQ(float_to_bits(back[i]), float_to_bits(want)) << i;
    }
  }
}

// Overflow is reported for a finite value that rounds beyond 65504, in the 8-wide part and in
// the tail; ±inf and NaN inputs are not overflow.
TEST(HalfConvert, ReportsOverflowOnlyForFiniteValuesBeyondTheRange) {
  const float largest = bits_to_float(0x477fefffu);     // 65519.996: rounds down to 65504
  const float first_over = bits_to_float(0x477ff000u);  // 65520: rounds to inf
  for (size_t at : {size_t(3), size_t(9)}) {            // 8-wide part, tail
    std::vector<float> x(10, 1.0f);
    std::vector<uint16_t> h(10);
    x[at] = -largest;
    EXPECT_TRUE(floats_to_halves(x.data(), h.data(), x.size()));
    EXPECT_EQ(h[at], 0xfbffu);  // -65504
    x[at] = INFINITY;
    x[0] = NAN;
    EXPECT_TRUE(floats_to_halves(x.data(), h.data(), x.size()));
    x[at] = first_over;
    EXPECT_FALSE(floats_to_halves(x.data(), h.data(), x.size())) << at;
    EXPECT_EQ(h[at], 0x7c00u);
  }
}

}  // namespace qsweep
