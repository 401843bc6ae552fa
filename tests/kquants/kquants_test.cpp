// Properties of the ggml block formats that do not need ggml itself: table facts, layout
// (dequantizing hand-built blocks), hand-derived quantization of small blocks, round-trip
// error bounds, the effect of the importance matrix, and input validation.
// Byte-exactness against ggml is in kquants_golden_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common/errors.h"
#include "common/half.h"
#include "quantizers/kquants/kquants.h"
#include "tests/support/test_support.h"

namespace qsweep::kquants {

// gtest prints parameters with this (found by ADL) instead of raw bytes.
void PrintTo(QuantType t, std::ostream* os) {
  *os << traits(t).name;
}

namespace {

std::vector<QuantType> all_types() {
  std::vector<QuantType> v;
  for (const TypeTraits& t : kTypeTraits) v.push_back(t.type);
  return v;
}

std::string type_name(const ::testing::TestParamInfo<QuantType>& info) {
  return traits(info.param).name;
}

std::vector<float> gaussian(uint64_t seed, size_t n, float sigma = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

// ---- the traits table -------------------------------------------------------------------

TEST(KQuantTraits, TableIsInEnumOrderAndConsistentWithTheStructs) {
  for (int i = 0; i < kQuantTypeCount; ++i) {
    const TypeTraits& t = kTypeTraits[i];
    EXPECT_EQ(int(t.type), i) << t.name;
    EXPECT_DOUBLE_EQ(t.bpw, 8.0 * t.type_size / t.block_size) << t.name;
    EXPECT_EQ(t.k_quant, t.block_size == 256) << t.name;
    EXPECT_EQ(type_from_name(t.name), t.type);
    EXPECT_EQ(type_from_ggml(t.ggml_type), t.type);
    EXPECT_NE(t.quantize_ref, nullptr);
    EXPECT_NE(t.quantize, nullptr);
    EXPECT_NE(t.dequantize, nullptr);
  }
  EXPECT_EQ(type_from_name("Q4_K_M"), std::nullopt);  // a mix, not a block type
  EXPECT_EQ(type_from_ggml(ggml_type::F16), std::nullopt);
}

TEST(KQuantTraits, BitsPerWeightAndSizesAreGgmls) {
  struct Known {
    QuantType type;
    int block_size, bytes, ggml_id;
    double bpw;
  };
  // From ggml-common.h and ggml.h.
  const Known known[] = {
      {QuantType::Q4_0, 32, 18, 2, 4.5},       {QuantType::Q4_1, 32, 20, 3, 5.0},
      {QuantType::Q5_0, 32, 22, 6, 5.5},       {QuantType::Q5_1, 32, 24, 7, 6.0},
      {QuantType::Q8_0, 32, 34, 8, 8.5},       {QuantType::Q2_K, 256, 84, 10, 2.625},
      {QuantType::Q3_K, 256, 110, 11, 3.4375}, {QuantType::Q4_K, 256, 144, 12, 4.5},
      {QuantType::Q5_K, 256, 176, 13, 5.5},    {QuantType::Q6_K, 256, 210, 14, 6.5625},
      {QuantType::Q8_K, 256, 292, 15, 9.125},
  };
  ASSERT_EQ(std::size(known), size_t(kQuantTypeCount));
  for (const Known& k : known) {
    const TypeTraits& t = traits(k.type);
    EXPECT_EQ(t.block_size, k.block_size) << t.name;
    EXPECT_EQ(t.type_size, k.bytes) << t.name;
    EXPECT_EQ(t.ggml_type, k.ggml_id) << t.name;
    EXPECT_EQ(t.bpw, k.bpw) << t.name;
    EXPECT_EQ(row_size(k.type, 4096), size_t(4096 / k.block_size * k.bytes)) << t.name;
  }
  EXPECT_EQ(sizeof(block_q4_K), 144u);
  EXPECT_EQ(sizeof(block_q6_K), 210u);
  EXPECT_EQ(sizeof(block_q2_K), 84u);
  EXPECT_EQ(sizeof(block_q3_K), 110u);
  EXPECT_EQ(sizeof(block_q5_K), 176u);
  EXPECT_EQ(sizeof(block_q8_0), 34u);
}

// ---- input validation -------------------------------------------------------------------

class KQuantTypeTest : public ::testing::TestWithParam<QuantType> {};

TEST_P(KQuantTypeTest, RowLengthNotAMultipleOfTheBlockIsAnError) {
  const TypeTraits& t = traits(GetParam());
  const int64_t bad = t.block_size + 16;
  std::vector<float> x(size_t(2 * t.block_size), 0.5f), w(x.size(), 1.0f), y(x.size());
  std::vector<uint8_t> q(row_size(t.type, 2 * t.block_size));
  EXPECT_THROW(row_size(t.type, bad), Error);
  EXPECT_THROW(row_size(t.type, -t.block_size), Error);
  EXPECT_THROW(quantize_row_ref(t.type, x.data(), q.data(), bad), Error);
  EXPECT_THROW(quantize_row(t.type, x.data(), q.data(), bad, w.data()), Error);
  EXPECT_THROW(quantize_row(t.type, x.data(), q.data(), bad, nullptr), Error);
  EXPECT_THROW(dequantize_row(t.type, q.data(), y.data(), bad), Error);
  EXPECT_THROW(quantize_tensor(t.type, x.data(), 1, bad), Error);
  EXPECT_THROW(dequantize_tensor(t.type, q, 1, bad), Error);
  // Right row length, wrong byte count.
  EXPECT_THROW(dequantize_tensor(t.type, std::span(q.data(), q.size() - 1), 1, 2 * t.block_size),
               Error);
  // The message names the type and the length.
  try {
    quantize_row_ref(t.type, x.data(), q.data(), bad);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(t.name), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(std::to_string(bad)), std::string::npos) << e.what();
  }
  // Zero-length rows and empty tensors are fine.
  EXPECT_NO_THROW(quantize_row_ref(t.type, x.data(), q.data(), 0));
  EXPECT_TRUE(quantize_tensor(t.type, x.data(), 0, t.block_size).empty());
}

// ---- round trip -------------------------------------------------------------------------

// llama.cpp tests/test-quantize-fns.cpp: data 0.1 + 2 cos(i + offset), 32*128 values, error
// sqrt(sum (x - x')^2) / n, limits by bit width.
constexpr float kMaxTotalError = 0.002f;
constexpr float kMaxTotalError2Bits = 0.0075f;
constexpr float kMaxTotalError3Bits = 0.0040f;

float llama_total_error(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = a[i] - b[i];
    sum += d * d;
  }
  return std::sqrt(float(sum)) / float(a.size());
}

double relative_rmse(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += double(a[i] - b[i]) * double(a[i] - b[i]);
    den += double(a[i]) * double(a[i]);
  }
  return std::sqrt(num / den);
}

std::vector<float> round_trip(QuantType t, const std::vector<float>& x, const float* imatrix,
                              int64_t rows) {
  const int64_t cols = int64_t(x.size()) / rows;
  const auto q = quantize_tensor(t, x.data(), rows, cols, imatrix);
  return dequantize_tensor(t, q, rows, cols);
}

TEST_P(KQuantTypeTest, RoundTripErrorWithinLlamaCppLimits) {
  const QuantType t = GetParam();
  std::vector<float> x(32 * 128);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.1f + 2 * std::cos(float(i) + 0.0f);
  const float limit = t == QuantType::Q2_K   ? kMaxTotalError2Bits
                      : t == QuantType::Q3_K ? kMaxTotalError3Bits
                                             : kMaxTotalError;
  const float err_ref = llama_total_error(x, round_trip(t, x, nullptr, 1));
  EXPECT_LT(err_ref, limit) << traits(t).name;
  const std::vector<float> ones(x.size(), 1.0f);
  const float err_imx = llama_total_error(x, round_trip(t, x, ones.data(), 1));
  EXPECT_LT(err_imx, limit) << traits(t).name << " (imatrix path)";
}

// Relative RMSE on 8 x 4096 N(0, 1) weights. Measured (seed 7): Q4_0 0.0856, Q4_1 0.0781,
// Q5_0 0.0424, Q5_1 0.0378, Q8_0 0.00533, Q2_K 0.297, Q3_K 0.151, Q4_K 0.0714, Q5_K 0.0360,
// Q6_K 0.0177, Q8_K 0.00688. Limits are ~15-20% above, so a real regression fails.
double max_relative_rmse(QuantType t) {
  switch (t) {
    case QuantType::Q4_0:
      return 0.10;
    case QuantType::Q4_1:
      return 0.09;
    case QuantType::Q5_0:
      return 0.05;
    case QuantType::Q5_1:
      return 0.045;
    case QuantType::Q8_0:
      return 0.0065;
    case QuantType::Q2_K:
      return 0.34;
    case QuantType::Q3_K:
      return 0.18;
    case QuantType::Q4_K:
      return 0.085;
    case QuantType::Q5_K:
      return 0.043;
    case QuantType::Q6_K:
      return 0.021;
    case QuantType::Q8_K:
      return 0.0085;
  }
  return 0;
}

TEST_P(KQuantTypeTest, RelativeRmseOnGaussianWeights) {
  const QuantType t = GetParam();
  const auto x = gaussian(test::test_seed(7), 8 * 4096);
  const double rel = relative_rmse(x, round_trip(t, x, nullptr, 8));
  EXPECT_LT(rel, max_relative_rmse(t)) << traits(t).name;
  EXPECT_GT(rel, 0.0) << traits(t).name;
  RecordProperty("relative_rmse", std::to_string(rel));
}

TEST_P(KQuantTypeTest, ZerosStayZeroAndDequantizeIsDeterministic) {
  const QuantType t = GetParam();
  const int64_t n = 512;
  const std::vector<float> z(n, 0.0f);
  std::vector<uint8_t> q(row_size(t, n), 0xAB);
  quantize_row_ref(t, z.data(), q.data(), n);
  std::vector<float> y(n, 1.0f);
  dequantize_row(t, q.data(), y.data(), n);
  for (float v : y) ASSERT_EQ(v, 0.0f) << traits(t).name;

  const auto x = gaussian(3, n);
  std::vector<uint8_t> q1(row_size(t, n)), q2(row_size(t, n), 0x5A);
  quantize_row_ref(t, x.data(), q1.data(), n);
  quantize_row_ref(t, x.data(), q2.data(), n);  // no dependence on the output's old contents
  EXPECT_EQ(q1, q2);
}

TEST_P(KQuantTypeTest, TensorApiEqualsRowByRowCalls) {
  const QuantType t = GetParam();
  const int64_t rows = 37, cols = 768;
  const auto x = gaussian(11, size_t(rows * cols), 0.02f);
  std::vector<float> w(cols);
  for (int64_t c = 0; c < cols; ++c) w[size_t(c)] = 0.5f + float(c % 13);
  for (const float* imx :
       {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
    const auto q = quantize_tensor(t, x.data(), rows, cols, imx);
    const size_t rs = row_size(t, cols);
    ASSERT_EQ(q.size(), size_t(rows) * rs);
    std::vector<uint8_t> one(rs);
    for (int64_t r = 0; r < rows; ++r) {
      quantize_row(t, x.data() + r * cols, one.data(), cols, imx);
      ASSERT_EQ(0, std::memcmp(one.data(), q.data() + size_t(r) * rs, rs)) << "row " << r;
    }
    const auto y = dequantize_tensor(t, q, rows, cols);
    std::vector<float> yr(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(t, q.data() + size_t(r) * rs, yr.data(), cols);
      ASSERT_EQ(0, std::memcmp(yr.data(), y.data() + r * cols, size_t(cols) * sizeof(float)));
    }
  }
  // Without an imatrix a whole tensor is one _ref call (blocks are independent).
  const auto q = quantize_tensor(t, x.data(), rows, cols, nullptr);
  std::vector<uint8_t> whole(q.size());
  quantize_row_ref(t, x.data(), whole.data(), rows * cols);
  EXPECT_EQ(q, whole);
}

// ---- the importance matrix ----------------------------------------------------------------

double weighted_sq_error(const std::vector<float>& x, const std::vector<float>& y,
                         const std::vector<float>& w) {
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = x[i] - y[i];
    s += w[i % w.size()] * d * d;
  }
  return s;
}

bool uses_imatrix(QuantType t) {
  return t != QuantType::Q8_0 && t != QuantType::Q8_K;
}

TEST_P(KQuantTypeTest, ImatrixOfOnesIsAsGoodAsNoImatrix) {
  const QuantType t = GetParam();
  const int64_t rows = 8, cols = 4096;
  const auto x = gaussian(test::test_seed(21), size_t(rows * cols));
  const std::vector<float> ones(cols, 1.0f);
  const double e_ref = weighted_sq_error(x, round_trip(t, x, nullptr, rows), ones);
  const double e_ones = weighted_sq_error(x, round_trip(t, x, ones.data(), rows), ones);
  // The imatrix paths use a different (usually better) search; "comparable" = within 10%.
  EXPECT_LT(e_ones, 1.10 * e_ref) << traits(t).name;
  EXPECT_GT(e_ones, 0.70 * e_ref) << traits(t).name;
}

TEST_P(KQuantTypeTest, SkewedImatrixLowersTheWeightedError) {
  const QuantType t = GetParam();
  if (!uses_imatrix(t)) GTEST_SKIP() << "ggml ignores the imatrix for this type";
  const int64_t rows = 8, cols = 4096;
  const auto x = gaussian(test::test_seed(22), size_t(rows * cols));
  // A few columns matter a lot (as with outlier activation channels), the rest little.
  std::mt19937_64 rng(23);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> w(cols);
  for (float& v : w) v = u(rng) < 0.05f ? 100.0f * (1.0f + u(rng)) : 0.01f + u(rng);
  const double e_ref = weighted_sq_error(x, round_trip(t, x, nullptr, rows), w);
  const double e_imx = weighted_sq_error(x, round_trip(t, x, w.data(), rows), w);
  // Measured ratios 0.15 (Q2_K, Q4_1, Q5_1) .. 0.41 (Q4_0, Q5_0).
  EXPECT_LT(e_imx, 0.6 * e_ref) << traits(t).name;
  RecordProperty("weighted_error_ratio", std::to_string(e_imx / e_ref));
}

TEST(KQuantImatrix, Q8TypesIgnoreTheImatrixLikeGgml) {
  const auto x = gaussian(5, 1024);
  std::vector<float> w(1024, 3.0f);
  w[7] = 1000.0f;
  for (QuantType t : {QuantType::Q8_0, QuantType::Q8_K}) {
    std::vector<uint8_t> a(row_size(t, 1024)), b(a.size());
    quantize_row(t, x.data(), a.data(), 1024, w.data());
    quantize_row_ref(t, x.data(), b.data(), 1024);
    EXPECT_EQ(a, b) << traits(t).name;
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, KQuantTypeTest, ::testing::ValuesIn(all_types()), type_name);

// ---- hand-derived quantization ------------------------------------------------------------
// Small cases worked out on paper from ggml's algorithm (independent of the golden data).

TEST(KQuantHandDerived, Q8_0) {
  // amax = 31.75 -> d = 31.75 / 127 = 0.25 (fp16 0x3400), id = 4; q = roundf(4x), ties away
  // from zero.
  float x[32] = {};
  x[0] = 31.75f;
  x[1] = -1.0f;    // -4
  x[2] = 0.125f;   // 0.5 -> 1
  x[3] = -0.125f;  // -0.5 -> -1
  x[4] = 0.375f;   // 1.5 -> 2
  x[5] = 0.1f;     // 0.4 -> 0
  x[6] = -31.75f;  // -127
  block_q8_0 b;
  quantize_row_q8_0_ref(x, &b, 32);
  EXPECT_EQ(b.d, 0x3400);
  const int want[7] = {127, -4, 1, -1, 2, 0, -127};
  for (int j = 0; j < 7; ++j) EXPECT_EQ(b.qs[j], want[j]) << j;
  for (int j = 7; j < 32; ++j) EXPECT_EQ(b.qs[j], 0);
}

TEST(KQuantHandDerived, Q4_0) {
  // The signed max is -4 -> d = -4 / -8 = 0.5, id = 2; q = min(15, trunc(2x + 8.5)).
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = 0.25f * float(j % 8) - 1.0f;  // -1 .. 0.75
  x[5] = -4.0f;
  x[20] = 3.9f;  // 2*3.9 + 8.5 = 16.3 -> clamped to 15
  block_q4_0 b;
  quantize_row_q4_0_ref(x, &b, 32);
  EXPECT_EQ(b.d, float_to_half(0.5f));
  auto q = [&](int j) { return j < 16 ? (b.qs[j] & 0xF) : (b.qs[j - 16] >> 4); };
  EXPECT_EQ(q(5), 0);    // 2*-4 + 8.5 = 0.5 -> 0
  EXPECT_EQ(q(20), 15);  // clamp
  EXPECT_EQ(q(0), 6);    // 2*-1 + 8.5 = 6.5 -> 6
  EXPECT_EQ(q(1), 7);    // -0.75 -> 7.0 -> 7
  EXPECT_EQ(q(7), 10);   // 0.75 -> 10.0 -> 10
  EXPECT_EQ(q(31), 10);  // j%8 == 7
}

// ---- dequantizing hand-built blocks (the layouts) ------------------------------------------

// A level pattern in [0, mod) with no short period, so that a wrong byte, nibble or bit
// position in the layout always changes some value.
int pattern(int e, int mod) {
  return int(((uint32_t(e) + 1u) * 2654435761u) >> 11) % mod;
}

// Element e of a K-quant 2-bit plane: byte 32*(e/128) + e%32, bits 2*((e%128)/32).
void put_2bit(uint8_t* qs, int e, int v) {
  qs[32 * (e / 128) + e % 32] |= uint8_t(v << (2 * ((e % 128) / 32)));
}
// Element e of a Q4_K/Q5_K nibble plane: byte 32*(e/64) + e%32, high nibble if e%64 >= 32.
void put_nibble(uint8_t* qs, int e, int v) {
  qs[32 * (e / 64) + e % 32] |= uint8_t(v << (e % 64 >= 32 ? 4 : 0));
}

TEST(KQuantLayout, Q8_0AndQ4_0AndQ4_1) {
  block_q8_0 b8{};
  b8.d = float_to_half(0.25f);
  for (int j = 0; j < 32; ++j) b8.qs[j] = int8_t(j - 16);
  float y[32];
  dequantize_row_q8_0(&b8, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.25f * float(j - 16));

  block_q4_0 b4{};
  b4.d = float_to_half(-2.0f);
  for (int j = 0; j < 16; ++j) b4.qs[j] = uint8_t(j | ((15 - j) << 4));
  dequantize_row_q4_0(&b4, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], -2.0f * float(j - 8));
    EXPECT_EQ(y[j + 16], -2.0f * float(15 - j - 8));
  }

  block_q4_1 b41{};
  b41.d = float_to_half(0.5f);
  b41.m = float_to_half(-3.0f);
  for (int j = 0; j < 16; ++j) b41.qs[j] = uint8_t(j | (j << 4));
  dequantize_row_q4_1(&b41, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * float(j) - 3.0f);
    EXPECT_EQ(y[j + 16], 0.5f * float(j) - 3.0f);
  }
}

TEST(KQuantLayout, Q5_0AndQ5_1HighBits) {
  // q(j) = j: weights 16..31 need bit 4, stored as bits 16..31 of the little-endian qh.
  block_q5_0 b{};
  b.d = float_to_half(1.0f);
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | (j << 4));  // low nibbles of j and j+16
  b.qh[2] = 0xFF;
  b.qh[3] = 0xFF;
  float y[32];
  dequantize_row_q5_0(&b, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], float(j - 16)) << j;

  block_q5_1 b1{};
  b1.d = float_to_half(0.5f);
  b1.m = float_to_half(1.0f);
  std::memcpy(b1.qs, b.qs, 16);
  b1.qh[0] = 0x01;  // only weight 0 gets bit 4
  dequantize_row_q5_1(&b1, y, 32);
  EXPECT_EQ(y[0], 0.5f * 16 + 1.0f);
  for (int j = 1; j < 32; ++j) EXPECT_EQ(y[j], 0.5f * float(j % 16) + 1.0f) << j;
}

TEST(KQuantLayout, Q2_K) {
  block_q2_K b{};
  b.d = float_to_half(0.5f);
  b.dmin = float_to_half(0.25f);
  for (int s = 0; s < 16; ++s) b.scales[s] = uint8_t(s | ((15 - s) << 4));
  for (int e = 0; e < 256; ++e) put_2bit(b.qs, e, pattern(e, 4));
  std::vector<float> y(256);
  dequantize_row_q2_K(&b, y.data(), 256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 16;
    EXPECT_EQ(y[e], 0.5f * float(s) * float(pattern(e, 4)) - 0.25f * float(15 - s)) << e;
  }
}

TEST(KQuantLayout, Q3_K_ScalesAndHmask) {
  block_q3_K b{};
  b.d = float_to_half(0.25f);
  int sc6[16];
  for (int s = 0; s < 16; ++s) {
    sc6[s] = (s * 37 + 5) % 64;  // all 64 values reachable, both nibbles and the 2 high bits
    const int low = sc6[s] & 0xF, high = sc6[s] >> 4;
    if (s < 8)
      b.scales[s] |= uint8_t(low);
    else
      b.scales[s - 8] |= uint8_t(low << 4);
    b.scales[8 + s % 4] |= uint8_t(high << (2 * (s / 4)));
  }
  auto q3 = [](int e) { return pattern(e, 8); };
  for (int e = 0; e < 256; ++e) {
    put_2bit(b.qs, e, q3(e) & 3);
    if (q3(e) & 4) b.hmask[e % 32] |= uint8_t(1 << (e / 32));
  }
  std::vector<float> y(256);
  dequantize_row_q3_K(&b, y.data(), 256);
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(y[e], 0.25f * float(sc6[e / 16] - 32) * float(q3(e) - 4)) << e;
  }
}

// Q4_K / Q5_K 6-bit (scale, min) pairs, packed as in ggml-common.h.
void pack_k4_scales(const int* sc, const int* m, uint8_t* out) {
  for (int j = 0; j < 4; ++j) {
    out[j] = uint8_t(sc[j] | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = uint8_t(m[j] | ((m[j + 4] >> 4) << 6));
    out[j + 8] = uint8_t((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

TEST(KQuantLayout, Q4_K_PackedScales) {
  const int sc[8] = {1, 2, 17, 63, 5, 33, 48, 63};
  const int m[8] = {0, 9, 31, 62, 16, 7, 40, 63};
  block_q4_K b{};
  b.d = float_to_half(0.125f);
  b.dmin = float_to_half(0.0625f);
  pack_k4_scales(sc, m, b.scales);
  for (int e = 0; e < 256; ++e) put_nibble(b.qs, e, pattern(e, 16));
  std::vector<float> y(256);
  dequantize_row_q4_K(&b, y.data(), 256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 32;
    EXPECT_EQ(y[e], 0.125f * float(sc[s]) * float(pattern(e, 16)) - 0.0625f * float(m[s])) << e;
  }
}

TEST(KQuantLayout, Q5_K_HighBit) {
  const int sc[8] = {3, 60, 1, 32, 47, 16, 8, 2};
  const int m[8] = {63, 0, 15, 16, 1, 2, 50, 33};
  block_q5_K b{};
  b.d = float_to_half(0.5f);
  b.dmin = float_to_half(0.25f);
  pack_k4_scales(sc, m, b.scales);
  auto q5 = [](int e) { return pattern(e, 32); };
  for (int e = 0; e < 256; ++e) {
    put_nibble(b.qs, e, q5(e) & 0xF);
    if (q5(e) & 16) b.qh[e % 32] |= uint8_t(1 << (e / 32));
  }
  std::vector<float> y(256);
  dequantize_row_q5_K(&b, y.data(), 256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 32;
    EXPECT_EQ(y[e], 0.5f * float(sc[s]) * float(q5(e)) - 0.25f * float(m[s])) << e;
  }
}

TEST(KQuantLayout, Q6_K_QlQh) {
  block_q6_K b{};
  b.d = float_to_half(0.5f);
  for (int s = 0; s < 16; ++s) b.scales[s] = int8_t(s * 17 - 128);  // -128 .. 127
  auto q6 = [](int e) { return pattern(e, 64); };
  for (int e = 0; e < 256; ++e) {
    const int c = e / 128, g = (e % 128) / 32, l = e % 32;
    b.ql[64 * c + 32 * (g & 1) + l] |= uint8_t((q6(e) & 0xF) << (g >= 2 ? 4 : 0));
    b.qh[32 * c + l] |= uint8_t((q6(e) >> 4) << (2 * g));
  }
  std::vector<float> y(256);
  dequantize_row_q6_K(&b, y.data(), 256);
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(y[e], 0.5f * float(b.scales[e / 16]) * float(q6(e) - 32)) << e;
  }
}

TEST(KQuantLayout, Q8_K) {
  const auto x = gaussian(9, 256);
  block_q8_K b;
  quantize_row_q8_K_ref(x.data(), &b, 256);
  for (int k = 0; k < 16; ++k) {
    int sum = 0;
    for (int i = 0; i < 16; ++i) sum += b.qs[16 * k + i];
    EXPECT_EQ(b.bsums[k], sum);
  }
  std::vector<float> y(256);
  dequantize_row_q8_K(&b, y.data(), 256);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], b.d * float(b.qs[i]));
}

// The ref encoders search the sub-blocks of several super-blocks together (vector lanes, in
// groups whose width depends on how many blocks are left in the row), but every ggml block is
// encoded on its own: a row of nb blocks must be the bytes of its blocks encoded one by one,
// for every nb (1..9 covers each lane-group width and chunk tail). The golden tests tie the
// multi-block widths to ggml's bytes; this ties the others to them.
TEST(KQuantRows, RowEqualsItsBlocksEncodedOneByOne) {
  for (QuantType t : {QuantType::Q2_K, QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K}) {
    const int block = traits(t).block_size;
    const size_t bytes = row_size(t, block);
    for (int nb = 1; nb <= 9; ++nb) {
      auto x = gaussian(100 + nb, size_t(nb) * block, 0.02f);
      for (int i = 0; i < 32; ++i) x[size_t(block) * (nb - 1) + 64 + i] = 0.0f;  // a zero group
      x[0] = 0.5f;                                                               // an outlier
      std::vector<uint8_t> row(row_size(t, int64_t(nb) * block));
      quantize_row_ref(t, x.data(), row.data(), int64_t(nb) * block);
      for (int b = 0; b < nb; ++b) {
        std::vector<uint8_t> one(bytes);
        quantize_row_ref(t, x.data() + size_t(b) * block, one.data(), block);
        EXPECT_EQ(0, std::memcmp(one.data(), row.data() + size_t(b) * bytes, bytes))
            << traits(t).name << " nb " << nb << " block " << b;
      }
    }
  }
}

}  // namespace
}  // namespace qsweep::kquants
