// fp16/bf16 conversions against the CPU's own F16C instructions (an independent
// reference) and exhaustive round trips.
#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <random>

#include "common/errors.h"
#include "common/half.h"
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

}  // namespace qsweep
