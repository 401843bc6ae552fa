// The tiled, multi-threaded GEMM against a plain triple loop in double, on
// awkward shapes (1, odd, not multiples of the tile); and the CUDA twin against
// the CPU one (skipped, saying so, without a GPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_gemm.h"
#include "common/errors.h"
#include "common/half.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

constexpr double kF32MaxRelErr = 1e-5;  // fp32 accumulation over k ≤ 1000 terms

std::vector<float> random_vec(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Max |c - ref| / max |ref|.
double rel_err(const std::vector<float>& c, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    num = std::max(num, std::abs(double(c[i]) - ref[i]));
    den = std::max(den, std::abs(ref[i]));
  }
  return num / std::max(den, 1e-30);
}

class GemmShapes : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(GemmShapes, NtAndNnMatchNaiveLoop) {
  const auto [m, n, k] = GetParam();
  std::mt19937 rng(uint32_t(test::test_seed(11) + m * 7 + n * 13 + k));
  const auto A = random_vec(size_t(m) * k, rng), B = random_vec(size_t(n) * k, rng);
  std::vector<double> ref_nt(size_t(m) * n, 0.0), ref_nn(size_t(m) * n, 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      for (int p = 0; p < k; ++p) {
        ref_nt[size_t(i) * n + j] += double(A[size_t(i) * k + p]) * B[size_t(j) * k + p];
        ref_nn[size_t(i) * n + j] += double(A[size_t(i) * k + p]) * B[size_t(p) * n + j];
      }
  std::vector<float> C(size_t(m) * n, -1.0f);
  cpu_gemm_nt(A.data(), B.data(), C.data(), m, n, k);
  EXPECT_LT(rel_err(C, ref_nt), kF32MaxRelErr);
  cpu_gemm_nt(A.data(), B.data(), C.data(), m, n, k, /*accumulate=*/true);
  for (auto& r : ref_nt) r *= 2;
  EXPECT_LT(rel_err(C, ref_nt), kF32MaxRelErr);
  cpu_gemm_nn(A.data(), B.data(), C.data(), m, n, k);  // B read as [k, n]
  EXPECT_LT(rel_err(C, ref_nn), kF32MaxRelErr);
}

// The fp64-accumulating variant (GPTQ's Hessian) is the old two-step path bit for bit:
// cpu_gemm_nt into fp32, then C += double(part), with C column-major; for 1 and 2 threads.
TEST_P(GemmShapes, NtAccumulateF64EqualsGemmThenAdd) {
  const auto [m, n, k] = GetParam();
  std::mt19937 rng(uint32_t(test::test_seed(12) + m * 7 + n * 13 + k));
  const auto A = random_vec(size_t(m) * k, rng), B = random_vec(size_t(n) * k, rng);
  const auto C0 = random_vec(size_t(m) * n, rng);
  std::vector<float> part(size_t(m) * n);
  cpu_gemm_nt(A.data(), B.data(), part.data(), m, n, k);
  std::vector<double> want(size_t(m) * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      want[size_t(j) * m + i] = double(C0[size_t(j) * m + i]) + double(part[size_t(i) * n + j]);
  for (int threads : {1, 2}) {
    set_backend_threads(threads);
    std::vector<double> C(C0.begin(), C0.end());
    cpu_gemm_nt_accumulate_f64(A.data(), B.data(), C.data(), m, n, k);
    EXPECT_EQ(C, want) << threads << " threads";
  }
  set_backend_threads(0);
}

// On AVX-512 builds every element of cpu_gemm_nt is one sequential std::fma chain over k, started
// at 0 (or at C's old value when accumulating), for 1 and 2 threads: the packed kernel's contract,
// which makes results independent of tile shapes, k-blocking and the thread count.
TEST_P(GemmShapes, NtIsTheSequentialFmaChain) {
#if !defined(__AVX512F__)
  GTEST_SKIP() << "not an AVX-512 build: cpu_gemm_nt is Eigen's kernel (reordering only)";
#endif
  const auto [m, n, k] = GetParam();
  std::mt19937 rng(uint32_t(test::test_seed(14) + m * 7 + n * 13 + k));
  const auto A = random_vec(size_t(m) * k, rng), B = random_vec(size_t(n) * k, rng);
  const auto C0 = random_vec(size_t(m) * n, rng);
  std::vector<float> want(size_t(m) * n), want_acc(size_t(m) * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      float c = 0.0f, c_acc = C0[size_t(i) * n + j];
      for (int p = 0; p < k; ++p) {
        c = std::fma(A[size_t(i) * k + p], B[size_t(j) * k + p], c);
        c_acc = std::fma(A[size_t(i) * k + p], B[size_t(j) * k + p], c_acc);
      }
      want[size_t(i) * n + j] = c;
      want_acc[size_t(i) * n + j] = c_acc;
    }
  for (int threads : {1, 2}) {
    set_backend_threads(threads);
    std::vector<float> C(size_t(m) * n, -1.0f);
    cpu_gemm_nt(A.data(), B.data(), C.data(), m, n, k);
    EXPECT_EQ(C, want) << threads << " threads";
    C = C0;
    cpu_gemm_nt(A.data(), B.data(), C.data(), m, n, k, /*accumulate=*/true);
    EXPECT_EQ(C, want_acc) << threads << " threads, accumulating";
  }
  set_backend_threads(0);
}

// cpu_gemm_nt_rows (B decoded tile by tile where it is multiplied) is cpu_gemm_nt bit for bit, for
// 1 and 2 threads, and for m <= kGemmNtRowsMaxM decodes every row of B exactly once.
TEST_P(GemmShapes, NtRowsEqualsNtBitForBit) {
  const auto [m, n, k] = GetParam();
  std::mt19937 rng(uint32_t(test::test_seed(13) + m * 7 + n * 13 + k));
  const auto A = random_vec(size_t(m) * k, rng), B = random_vec(size_t(n) * k, rng);
  std::vector<float> want(size_t(m) * n);
  cpu_gemm_nt(A.data(), B.data(), want.data(), m, n, k);
  for (int threads : {1, 2}) {
    set_backend_threads(threads);
    std::vector<std::atomic<int>> decoded(static_cast<size_t>(n));
    std::vector<float> C(size_t(m) * n, -1.0f);
    cpu_gemm_nt_rows(A.data(), C.data(), m, n, k, [&](int64_t r0, int64_t count, float* out) {
      ASSERT_TRUE(r0 >= 0 && count > 0 && r0 + count <= n) << r0 << " + " << count;
      for (int64_t r = r0; r < r0 + count; ++r) ++decoded[size_t(r)];
      std::copy(B.begin() + r0 * k, B.begin() + (r0 + count) * k, out);
    });
    EXPECT_EQ(C, want) << threads << " threads";
    if (m <= kGemmNtRowsMaxM) {
      for (int64_t r = 0; r < n; ++r) ASSERT_EQ(decoded[size_t(r)], 1) << "row " << r;
    }
  }
  set_backend_threads(0);
}

INSTANTIATE_TEST_SUITE_P(Awkward, GemmShapes,
                         ::testing::Values(std::make_tuple(1, 1, 1), std::make_tuple(1, 257, 33),
                                           std::make_tuple(129, 3, 65),
                                           std::make_tuple(300, 515, 97),
                                           std::make_tuple(256, 768, 256),
                                           std::make_tuple(1, 4100, 300),  // tiled, m = 1
                                           std::make_tuple(100, 600, 64),
                                           // several row tiles, k-blocks and a partial 32-panel
                                           std::make_tuple(397, 300, 530)));

// cpu_gemv_w16 (decode, m = 1, on fp16/bf16 weights) against a double-precision product of the
// widened weight. Tolerance: fp32 summation over at most k/32 + 24 sequential additions (lane sums,
// the lane reduction, the scalar k tail), each off by ≤ 2⁻²⁴ relative:
// |y − ref| ≤ (k/32 + 24)·2⁻²⁴·Σ|x·w|. Shapes: k with 16/32-lane and 8/16-lane tails, n not a
// multiple of the 4-row block, both the serial and the threaded path; W not 4-byte aligned.
class GemvShapes : public ::testing::TestWithParam<std::tuple<int, int, bool>> {};

std::vector<uint16_t> random_w16(size_t count, bool bf16, std::mt19937& rng) {
  const auto f = random_vec(count + 1, rng);
  std::vector<uint16_t> w(count + 1);  // one spare entry: callers pass data() + 1 (unaligned)
  for (size_t i = 0; i < w.size(); ++i) w[i] = bf16 ? float_to_bf16(f[i]) : float_to_half(f[i]);
  return w;
}

TEST_P(GemvShapes, MatchesDoubleReferenceOfWidenedWeight) {
  const auto [n, k, bf16] = GetParam();
  std::mt19937 rng(uint32_t(test::test_seed(14) + n * 7 + k * 13 + bf16));
  const auto x = random_vec(size_t(k), rng);
  const auto wbuf = random_w16(size_t(n) * k, bf16, rng);
  const uint16_t* W = wbuf.data() + 1;
  std::vector<float> y(size_t(n), -1.0f);
  cpu_gemv_w16(x.data(), W, bf16, y.data(), n, k);
  for (int j = 0; j < n; ++j) {
    double ref = 0, mag = 0;
    for (int p = 0; p < k; ++p) {
      const uint16_t b = W[size_t(j) * k + p];
      const double t = double(x[size_t(p)]) * (bf16 ? bf16_to_float(b) : half_to_float(b));
      ref += t;
      mag += std::abs(t);
    }
    const double tol = (k / 32.0 + 24) * std::ldexp(1.0, -24) * mag + 1e-30;
    ASSERT_LE(std::abs(double(y[size_t(j)]) - ref), tol) << "row " << j << " of " << n << "x" << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Tails, GemvShapes,
                         ::testing::Combine(::testing::Values(1, 3, 4, 7, 130),
                                            ::testing::Values(1, 7, 15, 17, 47, 4111),
                                            ::testing::Bool()));
INSTANTIATE_TEST_SUITE_P(Threaded, GemvShapes,  // n·k above the serial threshold
                         ::testing::Combine(::testing::Values(1029), ::testing::Values(97, 512),
                                            ::testing::Bool()));

// Deterministic: bit-identical for 1 and 2 threads, and each y[j] equals the product of row j
// alone (n = 1), so neither the task split nor the 4-row blocking changes a number.
TEST(Gemv, BitIdenticalAcrossThreadsAndRowBlocking) {
  constexpr int n = 1037, k = 1000;
  for (bool bf16 : {false, true}) {
    std::mt19937 rng(uint32_t(test::test_seed(15) + bf16));
    const auto x = random_vec(size_t(k), rng);
    const auto wbuf = random_w16(size_t(n) * k, bf16, rng);
    const uint16_t* W = wbuf.data() + 1;
    std::vector<float> alone(static_cast<size_t>(n));
    for (int j = 0; j < n; ++j) cpu_gemv_w16(x.data(), W + size_t(j) * k, bf16, &alone[j], 1, k);
    for (int threads : {1, 2}) {
      set_backend_threads(threads);
      std::vector<float> y(size_t(n), -1.0f);
      cpu_gemv_w16(x.data(), W, bf16, y.data(), n, k);
      EXPECT_EQ(y, alone) << threads << " threads, bf16 " << bf16;
    }
    set_backend_threads(0);
  }
}

// With a row map (a GGUF q/k tensor, rows stored permuted) y[j] is, bit for bit, the product of
// stored row row_of[j] alone: what the GEMV gives on a copy of W with the rows in logical order.
// 1 and 2 threads; n above the serial threshold.
TEST(Gemv, RowMapReadsTheMappedRowsBitForBit) {
  constexpr int n = 1031, k = 96;
  for (bool bf16 : {false, true}) {
    std::mt19937 rng(uint32_t(test::test_seed(16) + bf16));
    const auto x = random_vec(size_t(k), rng);
    const auto wbuf = random_w16(size_t(n) * k, bf16, rng);
    const uint16_t* W = wbuf.data() + 1;
    std::vector<int64_t> row_of(static_cast<size_t>(n));
    for (int j = 0; j < n; ++j) row_of[size_t(j)] = (int64_t(j) * 7 + 3) % n;  // 7 prime to 1031
    std::vector<float> want(static_cast<size_t>(n));
    for (int j = 0; j < n; ++j)
      cpu_gemv_w16(x.data(), W + size_t(row_of[size_t(j)]) * k, bf16, &want[size_t(j)], 1, k);
    for (int threads : {1, 2}) {
      set_backend_threads(threads);
      std::vector<float> y(size_t(n), -1.0f);
      cpu_gemv_w16(x.data(), W, bf16, y.data(), n, k, row_of.data());
      EXPECT_EQ(y, want) << threads << " threads, bf16 " << bf16;
    }
    set_backend_threads(0);
  }
}

TEST(CudaTwin, MatmulMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA: " << cuda_unavailable_reason();
  auto cuda = make_backend("cuda");
  std::mt19937 rng(uint32_t(test::test_seed(5)));
  for (auto [m, n, k] : {std::make_tuple(1, 1, 1), std::make_tuple(257, 129, 65),
                         std::make_tuple(512, 4096, 4096)}) {
    const auto A = random_vec(size_t(m) * k, rng), B = random_vec(size_t(n) * k, rng);
    std::vector<float> c_cpu(size_t(m) * n), c_gpu(size_t(m) * n);
    cpu_backend().matmul_nt(A.data(), B.data(), c_cpu.data(), m, n, k);
    cuda->matmul_nt(A.data(), B.data(), c_gpu.data(), m, n, k);
    std::vector<double> ref(c_cpu.begin(), c_cpu.end());
    EXPECT_LT(rel_err(c_gpu, ref), 1e-4) << m << "x" << n << "x" << k;  // TF32 not enabled
  }
}

TEST(Backend, UnknownDeviceIsAnError) {
  EXPECT_THROW(make_backend("tpu"), Error);
  EXPECT_EQ(make_backend("cpu")->name(), "cpu");
  if (!cuda_available()) {
    EXPECT_THROW(make_backend("cuda"), Error);
  }
}

}  // namespace
}  // namespace qsweep
