// cpu_gemm_nt_ggml (decode on GGUF ggml blocks, #18) on random blocks of every type it handles:
// each weight bit for bit the per-weight reference decoder ggml::decode (one-hot rows of A), the
// product against a double-precision dot of those weights (fp32 reordering bound), and bit-identity
// across thread counts and across m (a row of A gives the same numbers alone or among others).
// Plus the backend wiring: CpuBackend::gemm_nt_weight takes this path for m <= kGemmNtGgmlMaxM.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_gemm.h"
#include "backends/cpu/cpu_gemv_blocks.h"
#include "backends/kernels/ggml_decode.h"
#include "common/half.h"
#include "common/weight_tensor.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

constexpr int kTypes[] = {ggml::kQ4_0, ggml::kQ4_1, ggml::kQ5_0, ggml::kQ5_1, ggml::kQ8_0,
                          ggml::kQ2_K, ggml::kQ3_K, ggml::kQ4_K, ggml::kQ5_K, ggml::kQ6_K};

// Byte offsets of a block's fp16 fields (ggml-common.h): the rest are codes, any byte valid.
std::vector<int> f16_fields(int type) {
  switch (type) {
    case ggml::kQ4_1:
    case ggml::kQ5_1:
    case ggml::kQ4_K:
    case ggml::kQ5_K:
      return {0, 2};
    case ggml::kQ2_K:
      return {80, 82};
    case ggml::kQ3_K:
      return {108};
    case ggml::kQ6_K:
      return {208};
    default:
      return {0};
  }
}

// n rows of k weights: random code bytes, finite random fp16 scales of either sign.
std::vector<uint8_t> random_blocks(int type, int64_t n, int64_t k, std::mt19937& rng) {
  const int64_t count = n * k / ggml::block_weights(type);
  const int bytes = ggml::block_bytes(type);
  std::vector<uint8_t> out(size_t(count * bytes) + 1);  // + 1: callers pass data() + 1
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-0.1f, 0.1f);
  for (auto& b : out) b = uint8_t(byte(rng));
  for (int64_t i = 0; i < count; ++i)
    for (int off : f16_fields(type)) {
      const uint16_t h = float_to_half(scale(rng));
      out[size_t(1 + i * bytes + off)] = uint8_t(h & 0xFF);
      out[size_t(1 + i * bytes + off + 1)] = uint8_t(h >> 8);
    }
  return out;
}

// Weight (j, c) by the per-weight reference decoder.
float ref_weight(int type, const uint8_t* W, int64_t k, int64_t j, int64_t c) {
  const int qk = ggml::block_weights(type);
  const uint8_t* b = W + (j * (k / qk) + c / qk) * ggml::block_bytes(type);
  return ggml::decode(type, b, int(c % qk));
}

std::vector<float> random_vec(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// k per type: several K-quant super-blocks; for 32-weight blocks 27 blocks (864 = 3·256 + 96:
// a short last chunk of the 256-weight decode buffer).
int64_t k_for(int type) {
  return ggml::block_weights(type) == 256 ? 3 * 256 : 27 * 32;
}

TEST(GemvBlocks, OneHotRowsGiveTheReferenceWeightsBitForBit) {
  constexpr int64_t n = 5, m = 5;  // m = 5: a 4-row group of A and a single row
  for (int type : kTypes) {
    const int64_t k = k_for(type);
    ASSERT_TRUE(cpu_gemm_nt_ggml_supports(type, k)) << type;
    std::mt19937 rng(uint32_t(test::test_seed(40) + type));
    const auto buf = random_blocks(type, n, k, rng);
    const uint8_t* W = buf.data() + 1;  // not aligned
    std::vector<float> A(size_t(m * k)), C(size_t(m * n));
    for (int64_t c0 = 0; c0 < k; c0 += m) {
      std::fill(A.begin(), A.end(), 0.0f);
      for (int64_t i = 0; i < m; ++i) A[size_t(i * k + (c0 + i) % k)] = 1.0f;
      cpu_gemm_nt_ggml(A.data(), type, W, C.data(), m, n, k);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          const int64_t c = (c0 + i) % k;
          ASSERT_EQ(C[size_t(i * n + j)], ref_weight(type, W, k, j, c))
              << "type " << type << " row " << j << " column " << c;
        }
    }
  }
}

// Tolerance (as GemvShapes in gemm_test.cpp): fp32 summation over at most k/32 + 24 sequential
// additions (lane sums over 4 accumulators, their sum, the lane reduction), each off by
// ≤ 2⁻²⁴ relative: |y − ref| ≤ (k/32 + 24)·2⁻²⁴·Σ|x·w|, w the reference decoder's weights.
TEST(GemvBlocks, MatchesDoubleReferenceOfDecodedWeights) {
  for (int type : kTypes)
    for (int64_t n : {1, 7, 1029})  // 1029·k is above the serial threshold: the threaded path
      for (int64_t m : {1, 3, 6}) {
        const int64_t k = k_for(type);
        std::mt19937 rng(uint32_t(test::test_seed(41) + type * 31 + n * 7 + m));
        const auto buf = random_blocks(type, n, k, rng);
        const uint8_t* W = buf.data() + 1;
        const auto A = random_vec(size_t(m * k), rng);
        std::vector<float> C(size_t(m * n), -1.0f);
        cpu_gemm_nt_ggml(A.data(), type, W, C.data(), m, n, k);
        for (int64_t j = 0; j < n; ++j) {
          std::vector<double> w(static_cast<size_t>(k));
          for (int64_t c = 0; c < k; ++c) w[size_t(c)] = ref_weight(type, W, k, j, c);
          for (int64_t i = 0; i < m; ++i) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < k; ++c) {
              const double t = double(A[size_t(i * k + c)]) * w[size_t(c)];
              ref += t;
              mag += std::abs(t);
            }
            const double tol = (double(k) / 32 + 24) * std::ldexp(1.0, -24) * mag + 1e-30;
            ASSERT_LE(std::abs(double(C[size_t(i * n + j)]) - ref), tol)
                << "type " << type << " C[" << i << ", " << j << "] of " << m << "x" << n;
          }
        }
      }
}

// Deterministic: bit-identical for 1 and 2 threads, and each C[i, j] equals the product of row i
// of A alone (m = 1) with row j of W alone (n = 1): neither the task split nor the row grouping
// changes a number.
TEST(GemvBlocks, BitIdenticalAcrossThreadsAndShapes) {
  constexpr int64_t n = 1037, m = 7;
  for (int type : {ggml::kQ4_K, ggml::kQ6_K, ggml::kQ8_0}) {
    const int64_t k = k_for(type),
                  row_bytes = k / ggml::block_weights(type) * ggml::block_bytes(type);
    std::mt19937 rng(uint32_t(test::test_seed(42) + type));
    const auto buf = random_blocks(type, n, k, rng);
    const uint8_t* W = buf.data() + 1;
    const auto A = random_vec(size_t(m * k), rng);
    std::vector<float> alone(size_t(m * n));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        cpu_gemm_nt_ggml(A.data() + i * k, type, W + j * row_bytes, &alone[size_t(i * n + j)], 1, 1,
                         k);
    for (int threads : {1, 2}) {
      set_backend_threads(threads);
      std::vector<float> C(size_t(m * n), -1.0f);
      cpu_gemm_nt_ggml(A.data(), type, W, C.data(), m, n, k);
      EXPECT_EQ(C, alone) << "type " << type << ", " << threads << " threads";
    }
    set_backend_threads(0);
  }
}

// row_of: row j of W read from stored row row_of[j] gives, bit for bit, the product on a copy of
// the blocks with the rows moved to their logical places.
TEST(GemvBlocks, RowMapReadsTheMappedRows) {
  constexpr int64_t n = 301, m = 2;
  const int type = ggml::kQ4_K;
  const int64_t k = k_for(type), row_bytes = k / 256 * ggml::block_bytes(type);
  std::mt19937 rng(uint32_t(test::test_seed(44)));
  const auto stored = random_blocks(type, n, k, rng);
  std::vector<int64_t> row_of(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) row_of[size_t(j)] = (j * 7 + 3) % n;  // 7 is prime to 301
  std::vector<uint8_t> logical(size_t(n * row_bytes));
  for (int64_t j = 0; j < n; ++j)
    std::copy_n(stored.data() + 1 + row_of[size_t(j)] * row_bytes, row_bytes,
                logical.data() + j * row_bytes);
  const auto A = random_vec(size_t(m * k), rng);
  std::vector<float> got(size_t(m * n)), want(size_t(m * n));
  cpu_gemm_nt_ggml(A.data(), type, stored.data() + 1, got.data(), m, n, k, row_of.data());
  cpu_gemm_nt_ggml(A.data(), type, logical.data(), want.data(), m, n, k);
  EXPECT_EQ(got, want);
}

TEST(GemvBlocks, SupportsOnlyBlockTypesWithWholeBlocksPerRow) {
  EXPECT_FALSE(cpu_gemm_nt_ggml_supports(0, 256));   // F32
  EXPECT_FALSE(cpu_gemm_nt_ggml_supports(1, 256));   // F16
  EXPECT_FALSE(cpu_gemm_nt_ggml_supports(16, 256));  // IQ2_XXS: not decoded by qsweep
  EXPECT_FALSE(cpu_gemm_nt_ggml_supports(ggml::kQ4_K, 32));
  EXPECT_TRUE(cpu_gemm_nt_ggml_supports(ggml::kQ8_0, 32));
}

// The wiring: for m <= kGemmNtGgmlMaxM the CPU backend's product on a GGUF-block weight is
// cpu_gemm_nt_ggml's, bit for bit; above it, the tiled GEMM on the decoded weight, bit for bit.
TEST(GemvBlocks, CpuBackendTakesTheBlockPathForSmallM) {
  constexpr int64_t n = 37, k = 512;
  const int type = ggml::kQ4_K;
  std::mt19937 rng(uint32_t(test::test_seed(43)));
  auto buf = std::make_shared<std::vector<uint8_t>>(random_blocks(type, n, k, rng));
  const uint8_t* W = buf->data() + 1;
  std::vector<float> decoded(size_t(n * k));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < k; ++c) decoded[size_t(j * k + c)] = ref_weight(type, W, k, j, c);
  const size_t bytes = size_t(n * k / 256 * ggml::block_bytes(type));
  const auto T = WeightTensor::quantized(
      n, k, bytes, "Q4_K",
      [decoded](int64_t r0, int64_t count, float* out) {
        std::copy(decoded.begin() + r0 * k, decoded.begin() + (r0 + count) * k, out);
      },
      GgmlBlocks{type, W, bytes});
  for (int64_t m : {int64_t(1), kGemmNtGgmlMaxM, kGemmNtGgmlMaxM + 1}) {
    const auto A = random_vec(size_t(m * k), rng);
    std::vector<float> got(size_t(m * n)), want(size_t(m * n));
    WeightScratch s;
    cpu_backend().gemm_nt_weight(A.data(), T, got.data(), m, s);
    if (m <= kGemmNtGgmlMaxM)
      cpu_gemm_nt_ggml(A.data(), type, W, want.data(), m, n, k);
    else
      cpu_gemm_nt(A.data(), decoded.data(), want.data(), m, n, k);
    EXPECT_EQ(got, want) << "m " << m;
  }
}

}  // namespace
}  // namespace qsweep
