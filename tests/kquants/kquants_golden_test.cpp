// Exact-byte tests against ggml itself.
//
// Reference: the golden data in golden_ggml.inc came from ggml's real quantizers, not from
// qsweep. A throw-away program (kept outside the repo) linked against libggml-base.so from
// the npm package @node-llama-cpp/linux-x64@3.21.1 (prebuilt llama.cpp, ggml v0.4.0), called
// quantize_row_<t>_ref, quantize_<t> (the imatrix path that llama-quantize uses) and
// dequantize_row_<t> on the arrays of golden_input.h, and printed the bytes / FNV digests.
// All eleven types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K) are
// byte-verified this way, on both the reference and the imatrix path. During development the
// same library was also fuzzed against ours (213k random cases, 13 input and 5 imatrix
// distributions, all byte-identical).
//
// To regenerate: `npm i @node-llama-cpp/linux-x64@3.21.1` in a scratch folder, declare the
// ggml functions extern "C" with void* block pointers, include golden_input.h, link with
// -lggml-base, and print in the format of golden_ggml.inc.
#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "quantizers/kquants/kquants.h"
#include "tests/kquants/golden_input.h"

namespace qsweep::kquants {
namespace {

struct GoldenCase {
  QuantType type;
  const char* ref_hex;
  const char* imatrix_hex;
  uint64_t big_ref_fnv;
  uint64_t big_imatrix_fnv;
  uint64_t big_dequant_fnv;
};

void PrintTo(const GoldenCase& g, std::ostream* os) {
  *os << traits(g.type).name;
}

const GoldenCase kGolden[] = {
#include "tests/kquants/golden_ggml.inc"
};

constexpr int64_t kSmallCols = 256, kSmallRows = 2;
constexpr int64_t kBigCols = 4096, kBigRows = 16;

std::vector<uint8_t> from_hex(const std::string& s) {
  std::vector<uint8_t> out(s.size() / 2);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = uint8_t(std::stoul(s.substr(2 * i, 2), nullptr, 16));
  return out;
}

std::string to_hex(const std::vector<uint8_t>& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t v : b) {
    s += d[v >> 4];
    s += d[v & 15];
  }
  return s;
}

// First differing byte, for a readable failure message.
std::string first_diff(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    if (got[i] != want[i]) {
      return "first difference at byte " + std::to_string(i) + ": got " + std::to_string(got[i]) +
             ", ggml " + std::to_string(want[i]);
    }
  }
  return "sizes " + std::to_string(got.size()) + " vs " + std::to_string(want.size());
}

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenTest, RefBytesMatchGgml) {
  const GoldenCase& g = GetParam();
  const auto x = golden::weights(1, kSmallCols * kSmallRows);
  std::vector<uint8_t> got(row_size(g.type, kSmallCols * kSmallRows), 0xEE);
  quantize_row_ref(g.type, x.data(), got.data(), kSmallCols * kSmallRows);
  const auto want = from_hex(g.ref_hex);
  EXPECT_EQ(got, want) << traits(g.type).name << " " << first_diff(got, want) << "\n got "
                       << to_hex(got);
}

TEST_P(GoldenTest, ImatrixBytesMatchGgml) {
  const GoldenCase& g = GetParam();
  if (std::string(g.imatrix_hex).empty()) GTEST_SKIP() << "ggml has no imatrix path for this type";
  const auto x = golden::weights(1, kSmallCols * kSmallRows);
  const auto w = golden::imatrix(2, kSmallCols);
  const std::vector<uint8_t> got =
      quantize_tensor(g.type, x.data(), kSmallRows, kSmallCols, w.data());
  const auto want = from_hex(g.imatrix_hex);
  EXPECT_EQ(got, want) << traits(g.type).name << " " << first_diff(got, want);
}

TEST_P(GoldenTest, BigTensorDigestsMatchGgml) {
  const GoldenCase& g = GetParam();
  const auto x = golden::weights(3, kBigCols * kBigRows);
  const auto w = golden::imatrix(4, kBigCols);
  const auto ref = quantize_tensor(g.type, x.data(), kBigRows, kBigCols, nullptr);
  EXPECT_EQ(golden::fnv1a64(ref.data(), ref.size()), g.big_ref_fnv) << traits(g.type).name;
  if (g.big_imatrix_fnv != 0) {
    const auto imx = quantize_tensor(g.type, x.data(), kBigRows, kBigCols, w.data());
    EXPECT_EQ(golden::fnv1a64(imx.data(), imx.size()), g.big_imatrix_fnv) << traits(g.type).name;
  }
  const auto deq = dequantize_tensor(g.type, ref, kBigRows, kBigCols);
  EXPECT_EQ(
      golden::fnv1a64(reinterpret_cast<const uint8_t*>(deq.data()), deq.size() * sizeof(float)),
      g.big_dequant_fnv)
      << traits(g.type).name << ": dequantized floats differ from ggml's";
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GoldenTest, ::testing::ValuesIn(kGolden),
                         [](const ::testing::TestParamInfo<GoldenCase>& info) {
                           return std::string(traits(info.param.type).name);
                         });

TEST(GoldenCoverage, EveryTypeHasAGoldenCase) {
  ASSERT_EQ(std::size(kGolden), size_t(kQuantTypeCount));
  for (int i = 0; i < kQuantTypeCount; ++i) EXPECT_EQ(int(kGolden[i].type), i);
}

}  // namespace
}  // namespace qsweep::kquants
