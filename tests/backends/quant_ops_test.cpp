// Issue #16's backend ops (backend.h's last block), one test body per op run on each backend:
// "cpu" always, "cuda" when a device is usable (skipped, saying why, when not). Each compares
// with an independent double-precision or plain reference; the tolerances are named per
// precision below and apply to both twins unless a test says otherwise.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/kernels/ggml_decode.h"
#include "common/errors.h"
#include "common/half.h"
#include "quantizers/kquants/kquants.h"
#include "tests/backends/twins.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

// Unit roundoff of fp32 (2^-24), fp16 (2^-11) and bf16 (2^-8).
constexpr double kU32 = 1.0 / (1 << 24), kU16 = 1.0 / (1 << 11), kUbf16 = 1.0 / (1 << 8);
// fp32 accumulation of k products, relative to Σ|products|: k·u32 is the worst-case bound.
double fp32_sum_tol(int64_t k) {
  return double(k) * kU32;
}
// fp64 sums of exact products (CPU Hessian, column statistics, log-sum-exp).
constexpr double kFp64Tol = 1e-12;

class QuantOps : public test::Twins {
 protected:
  QuantOps() : Twins(16) {}
};

TEST_P(QuantOps, GemmWithFp16AndBf16WeightsWithinTheirRoundingBounds) {
  const int64_t m = 19, n = 45, k = 300;
  const auto A = randn(size_t(m * k)), Wf = randn(size_t(n * k), 0.05f);
  for (bool bf16 : {false, true}) {
    std::vector<uint16_t> W(Wf.size());
    for (size_t i = 0; i < W.size(); ++i) W[i] = bf16 ? float_to_bf16(Wf[i]) : float_to_half(Wf[i]);
    std::vector<double> ref(size_t(m * n)), mag(size_t(m * n));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t t = 0; t < k; ++t) {
          const double w =
              bf16 ? bf16_to_float(W[size_t(j * k + t)]) : half_to_float(W[size_t(j * k + t)]);
          ref[size_t(i * n + j)] += double(A[size_t(i * k + t)]) * w;
          mag[size_t(i * n + j)] += std::abs(double(A[size_t(i * k + t)]) * w);
        }
    BackendArray<float> a(b(), A), c(b(), size_t(m * n));
    BackendArray<uint16_t> w(b(), W);
    b().gemm_nt_w16(a.get(), w.get(), bf16, c.get(), m, n, k);
    const auto got = c.download();
    // The CPU widens the weight exactly; CUDA's tensor cores also round the activations to the
    // weight's type (one u16 / u_bf16 per product).
    const double tol = fp32_sum_tol(k) + (cuda() ? (bf16 ? kUbf16 : kU16) : 0.0);
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_LE(std::abs(got[i] - ref[i]), tol * mag[i] + 1e-30)
          << (bf16 ? "bf16" : "fp16") << " entry " << i << " got " << got[i] << " ref " << ref[i];
  }
}

// gemm_nt_weight on every stored form, one scratch reused across calls of growing and shrinking
// shapes: F32 in place, F16/BF16 (an unaligned view; CUDA uploads the 2-byte form and runs
// gemm_nt_w16, so its bound), Quantized (a 4-bit row decoder, widened on the host). m = 1 and 2:
// the CPU's decode path for F16/BF16 (cpu_gemv_w16 per row of A, within the same fp32 bound).
TEST_P(QuantOps, GemmWithWeightsInTheirStoredFormWithinGemmNtW16Bounds) {
  WeightScratch scratch;
  for (int64_t m : {7, 1, 19, 2, 3}) {
    const int64_t n = 45, k = 300;
    const auto A = randn(size_t(m * k)), Wf = randn(size_t(n * k), 0.05f);
    for (WeightDType dt :
         {WeightDType::F32, WeightDType::F16, WeightDType::BF16, WeightDType::Quantized}) {
      std::vector<double> wd(Wf.size());  // the weight's exact values
      WeightTensor W;
      if (dt == WeightDType::F32) {
        MatrixRM M(n, k);
        for (size_t i = 0; i < Wf.size(); ++i) M.data()[i] = Wf[i], wd[i] = Wf[i];
        W = WeightTensor::from_matrix(std::move(M));
      } else if (dt == WeightDType::Quantized) {
        auto codes = std::make_shared<std::vector<uint8_t>>(Wf.size());
        for (size_t i = 0; i < Wf.size(); ++i) {
          (*codes)[i] = uint8_t(std::lround(std::clamp(Wf[i] / 0.02f, -8.0f, 7.0f)) + 8);
          wd[i] = 0.02 * (double((*codes)[i]) - 8.0) * double(1 + (i / size_t(k)) % 3);
        }
        W = WeightTensor::quantized(
            n, k, Wf.size() / 2, "test4", [codes, k](int64_t r0, int64_t rn, float* o) {
              for (int64_t r = r0; r < r0 + rn; ++r)
                for (int64_t c = 0; c < k; ++c)
                  *o++ = 0.02f * float(1 + r % 3) * (float((*codes)[size_t(r * k + c)]) - 8.0f);
            });
      } else {
        const bool bf16 = dt == WeightDType::BF16;
        auto bytes = std::make_shared<std::vector<uint8_t>>(Wf.size() * 2 + 1);
        for (size_t i = 0; i < Wf.size(); ++i) {
          const uint16_t h = bf16 ? float_to_bf16(Wf[i]) : float_to_half(Wf[i]);
          std::memcpy(bytes->data() + 1 + 2 * i, &h, 2);  // odd address: an unaligned view
          wd[i] = bf16 ? bf16_to_float(h) : half_to_float(h);
        }
        W = WeightTensor::half_view(dt, bytes->data() + 1, n, k, bytes);
      }
      std::vector<double> ref(size_t(m * n)), mag(size_t(m * n));
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j)
          for (int64_t t = 0; t < k; ++t) {
            const double p = double(A[size_t(i * k + t)]) * wd[size_t(j * k + t)];
            ref[size_t(i * n + j)] += p;
            mag[size_t(i * n + j)] += std::abs(p);
          }
      BackendArray<float> a(b(), A), c(b(), size_t(m * n));
      b().gemm_nt_weight(a.get(), W, c.get(), m, scratch);
      const auto got = c.download();
      const double u = dt == WeightDType::F16 ? kU16 : dt == WeightDType::BF16 ? kUbf16 : 0.0;
      const double tol = fp32_sum_tol(k) + (cuda() ? u : 0.0);
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_LE(std::abs(got[i] - ref[i]), tol * mag[i] + 1e-30)
            << weight_dtype_name(dt) << " m " << m << " entry " << i << " got " << got[i] << " ref "
            << ref[i];
    }
  }
}

TEST_P(QuantOps, HessianFromFp16ActivationsAccumulatesXtX) {
  const int64_t n = 700, d = 40;  // 700 rows: two CUDA slabs of <= 512
  const auto Xf = randn(size_t(n * d), 2.0f);
  std::vector<uint16_t> X(Xf.size());
  for (size_t i = 0; i < X.size(); ++i) X[i] = float_to_half(Xf[i]);
  std::vector<double> H0(size_t(d * d));
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j <= i; ++j)
      H0[size_t(i * d + j)] = H0[size_t(j * d + i)] = 0.25 * double(i + j);
  std::vector<double> ref = H0, mag(size_t(d * d));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) {
        const double p =
            double(half_to_float(X[size_t(t * d + i)])) * half_to_float(X[size_t(t * d + j)]);
        ref[size_t(i * d + j)] += p;
        mag[size_t(i * d + j)] += std::abs(p);
      }
  BackendArray<uint16_t> x(b(), X);
  BackendArray<double> h(b(), H0);
  b().hessian_accumulate_f16(x.get(), h.get(), n, d);
  const auto got = h.download();
  const double tol = cuda() ? fp32_sum_tol(512) : kFp64Tol;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::abs(got[i] - ref[i]), tol * mag[i] + 1e-12) << "entry " << i;
}

TEST_P(QuantOps, ColumnStatsAddSquaresAndAbsoluteValuesPerColumn) {
  const int64_t n = 33, d = 150;
  const auto X = randn(size_t(n * d), 3.0f);
  std::vector<double> sq0(static_cast<size_t>(d)), ab0(static_cast<size_t>(d));
  for (int64_t j = 0; j < d; ++j) {
    sq0[size_t(j)] = double(j);
    ab0[size_t(j)] = 0.5 * double(j);
  }
  std::vector<double> sq = sq0, ab = ab0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < d; ++j) {
      const double v = X[size_t(t * d + j)];
      sq[size_t(j)] += v * v;
      ab[size_t(j)] += std::abs(v);
    }
  BackendArray<float> x(b(), X);
  BackendArray<double> s(b(), sq0), a(b(), ab0);
  b().column_stats(x.get(), n, d, s.get(), a.get());
  const auto gs = s.download(), ga = a.download();
  for (int64_t j = 0; j < d; ++j) {
    EXPECT_NEAR(gs[size_t(j)], sq[size_t(j)], kFp64Tol * sq[size_t(j)]) << "column " << j;
    EXPECT_NEAR(ga[size_t(j)], ab[size_t(j)], kFp64Tol * ab[size_t(j)]) << "column " << j;
  }
}

TEST_P(QuantOps, TopKIdsLargestFirstTiesToTheLowerIdAndLogSumExp) {
  const int64_t rows = 6, vocab = 1000;
  const int k = 10;
  auto Z = randn(size_t(rows * vocab), 4.0f);
  // Ties inside the top k: copy each row's maximum to a higher and a lower id.
  for (int64_t r = 0; r < rows; ++r) {
    float* z = &Z[size_t(r * vocab)];
    const int64_t top = std::max_element(z, z + vocab) - z;
    z[(top + 337) % vocab] = z[top];
    z[(top + 611) % vocab] = z[top];
  }
  BackendArray<float> z(b(), Z);
  BackendArray<int32_t> ids(b(), size_t(rows * k));
  BackendArray<double> lse(b(), size_t(rows));
  b().topk_logsumexp(z.get(), rows, vocab, k, ids.get(), lse.get());
  const auto got_ids = ids.download();
  const auto got_lse = lse.download();
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<std::pair<float, int>> v;
    long double s = 0;
    for (int j = 0; j < vocab; ++j) {
      v.push_back({-Z[size_t(r * vocab + j)], j});  // ascending = largest value, then lower id
      s += std::exp((long double)Z[size_t(r * vocab + j)]);
    }
    std::sort(v.begin(), v.end());
    for (int i = 0; i < k; ++i)
      EXPECT_EQ(got_ids[size_t(r * k + i)], v[size_t(i)].second) << "row " << r << " rank " << i;
    const double ref = double(std::log(s));
    EXPECT_NEAR(got_lse[size_t(r)], ref, kFp64Tol * std::abs(ref) + 1e-12) << "row " << r;
  }
}

// Every ggml block type qsweep writes: the backend's decoder equals kquants' production
// decoder (whose bytes and values tests/kquants pins to ggml's) on the blocks kquants writes,
// exactly on both twins (the same kernels/ggml_decode.h arithmetic, no FMA contraction), and
// Q8_0/Q4_0 also against a decoder written here from the ggml layout.
TEST_P(QuantOps, DequantizeEveryGgmlBlockTypeEqualsTheKquantsDecoder) {
  using kquants::QuantType;
  const std::vector<std::pair<QuantType, int>> types = {
      {QuantType::Q4_0, ggml::kQ4_0}, {QuantType::Q4_1, ggml::kQ4_1},
      {QuantType::Q5_0, ggml::kQ5_0}, {QuantType::Q5_1, ggml::kQ5_1},
      {QuantType::Q8_0, ggml::kQ8_0}, {QuantType::Q2_K, ggml::kQ2_K},
      {QuantType::Q3_K, ggml::kQ3_K}, {QuantType::Q4_K, ggml::kQ4_K},
      {QuantType::Q5_K, ggml::kQ5_K}, {QuantType::Q6_K, ggml::kQ6_K}};
  const int64_t n = 4 * 256;
  const auto x = randn(size_t(n), 0.02f);
  for (const auto& [qt, id] : types) {
    SCOPED_TRACE(kquants::traits(qt).name);
    std::vector<uint8_t> blocks(kquants::row_size(qt, n));
    kquants::quantize_row_ref(qt, x.data(), blocks.data(), n);
    std::vector<float> ref(static_cast<size_t>(n));
    kquants::dequantize_row(qt, blocks.data(), ref.data(), n);
    BackendArray<uint8_t> bl(b(), blocks);
    BackendArray<float> y(b(), size_t(n));
    b().dequantize_ggml(id, bl.get(), y.get(), n);
    const auto got = y.download();
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[size_t(i)], ref[size_t(i)]) << "weight " << i;
    if (id == ggml::kQ8_0 || id == ggml::kQ4_0) {
      const int bb = id == ggml::kQ8_0 ? 34 : 18;
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t* blk = &blocks[size_t(i / 32 * bb)];
        const float d = half_to_float(uint16_t(blk[0] | (blk[1] << 8)));
        const int e = int(i % 32);
        const float v = id == ggml::kQ8_0
                            ? float(int8_t(blk[2 + e])) * d
                            : float((e < 16 ? (blk[2 + e] & 15) : (blk[2 + e - 16] >> 4)) - 8) * d;
        ASSERT_EQ(got[size_t(i)], v) << "weight " << i;
      }
    }
  }
  BackendArray<float> y(b(), 32);
  BackendArray<uint8_t> bl(b(), std::vector<uint8_t>(34));
  EXPECT_THROW(b().dequantize_ggml(ggml::kQ8_0, bl.get(), y.get(), 31), Error);
  EXPECT_THROW(b().dequantize_ggml(1, bl.get(), y.get(), 32), Error);
}

// GPTQ's column loop against the textbook column-by-column algorithm (no lazy batch, W and the
// errors in double) on the same Hinv, with act-order and dynamic groups of 32 over blocks of 16
// (a group found at a block start sees the fully updated W in both). The two round
// differently (fp32 blocked vs fp64 unblocked), so a code may flip where w/scale lands within
// rounding of a .5 boundary: at most kFlipFraction of the codes, and the loss within kLossRel.
TEST_P(QuantOps, GptqColumnLoopMatchesTheTextbookAlgorithm) {
  constexpr double kFlipFraction = 0.01, kLossRel = 1e-3;
  const int64_t rows = 70, cols = 96, gs = 32;
  const auto W0 = randn(size_t(rows * cols), 0.1f);
  // A well-conditioned SPD "inverse Hessian" factor: upper triangular, positive diagonal.
  std::vector<float> U(size_t(cols * cols), 0.0f);
  std::uniform_real_distribution<float> unif(-0.05f, 0.05f);
  for (int64_t i = 0; i < cols; ++i) {
    U[size_t(i * cols + i)] = 0.5f + 0.5f * float(i % 7) / 7.0f;
    for (int64_t j = i + 1; j < cols; ++j) U[size_t(i * cols + j)] = unif(rng_);
  }
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng_);
  kernels::GptqColumnsConfig cfg;
  cfg.bits = 3;
  cfg.group_size = gs;
  cfg.dynamic_groups = true;
  cfg.block_size = 16;
  const int64_t ng = cols / gs;

  // Textbook reference.
  std::vector<double> Wd(W0.begin(), W0.end());
  std::vector<uint8_t> ref_codes(size_t(rows * cols));
  double ref_loss = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double* w = &Wd[size_t(r * cols)];
    float scale = 0, zero = 0;
    for (int64_t j = 0; j < cols; ++j) {
      if (j % gs == 0) {
        double lo = 0, hi = 0;
        for (int64_t t = j; t < j + gs; ++t) lo = std::min(lo, w[t]), hi = std::max(hi, w[t]);
        float s = float((hi - lo) / 7.0);
        s = half_to_float(float_to_half(s));
        scale = s;
        zero = std::clamp(std::nearbyint(float(-lo) / s), 0.0f, 7.0f);
      }
      const double q = std::clamp(std::nearbyint(w[j] / scale) + zero, 0.0, 7.0);
      ref_codes[size_t(r * cols + perm[size_t(j)])] = uint8_t(q);
      const double diff = w[j] - double(scale) * (q - zero), dj = U[size_t(j * cols + j)];
      ref_loss += diff * diff / (dj * dj) / 2;
      for (int64_t t = j + 1; t < cols; ++t) w[t] -= diff / dj * U[size_t(j * cols + t)];
    }
  }

  BackendArray<float> w(b(), W0), hinv(b(), U), scales(b(), size_t(ng * rows)),
      zeros(b(), size_t(ng * rows));
  BackendArray<int64_t> p(b(), perm);
  BackendArray<uint8_t> codes(b(), size_t(rows * cols));
  BackendArray<double> loss(b(), std::vector<double>(size_t(rows), 0.0));
  b().gptq_columns(w.get(), hinv.get(), p.get(), scales.get(), zeros.get(), codes.get(), loss.get(),
                   rows, cols, cfg);
  const auto got = codes.download();
  const auto got_loss = loss.download();
  int64_t flips = 0;
  for (size_t i = 0; i < got.size(); ++i) flips += got[i] != ref_codes[i];
  EXPECT_LE(double(flips), kFlipFraction * double(got.size())) << flips << " codes differ";
  const double total = std::accumulate(got_loss.begin(), got_loss.end(), 0.0);
  EXPECT_NEAR(total, ref_loss, kLossRel * ref_loss);
  if (cuda()) {  // and against the CPU twin itself
    Backend& c = cpu_backend();
    BackendArray<float> w2(c, W0), h2(c, U), s2(c, size_t(ng * rows)), z2(c, size_t(ng * rows));
    BackendArray<int64_t> p2(c, perm);
    BackendArray<uint8_t> c2(c, size_t(rows * cols));
    BackendArray<double> l2(c, std::vector<double>(size_t(rows), 0.0));
    c.gptq_columns(w2.get(), h2.get(), p2.get(), s2.get(), z2.get(), c2.get(), l2.get(), rows, cols,
                   cfg);
    const auto cpu_codes = c2.download();
    int64_t diff = 0;
    for (size_t i = 0; i < got.size(); ++i) diff += got[i] != cpu_codes[i];
    EXPECT_LE(double(diff), kFlipFraction * double(got.size())) << diff << " codes differ from cpu";
  }
}

// The damping escalation: H = I with one diagonal entry −0.05 (d = 20, mean diag 0.9475).
// 1% damping leaves it indefinite (−0.0405), 10% makes it definite (+0.04475): 0.1 is used,
// and UᵀU is the inverse of the damped H. With a cap of 5% it is an Error.
TEST_P(QuantOps, DampedCholeskyEscalatesTenfoldUntilPositiveDefinite) {
  const int64_t d = 20;
  std::vector<double> H(size_t(d * d), 0.0);
  for (int64_t i = 0; i < d; ++i) H[size_t(i * d + i)] = i == 7 ? -0.05 : 1.0;
  BackendArray<double> h(b(), H);
  BackendArray<float> hinv(b(), size_t(d * d));
  const double pct = damped_upper_cholesky_of_inverse(b(), h.get(), hinv.get(), d, 0.01, 1.0, "t");
  EXPECT_DOUBLE_EQ(pct, 0.1);
  const auto Ud = hinv.download();
  const double mean = (d - 1 - 0.05) / double(d);
  for (int64_t i = 0; i < d; ++i) {
    const double hd = H[size_t(i * d + i)] + 0.1 * mean;
    EXPECT_NEAR(Ud[size_t(i * d + i)], 1.0 / std::sqrt(hd), 1e-5) << i;  // diagonal H
  }
  EXPECT_EQ(h.download(), H);  // H itself unchanged
  EXPECT_THROW(damped_upper_cholesky_of_inverse(b(), h.get(), hinv.get(), d, 0.01, 0.05, "t"),
               Error);
}

QSWEEP_INSTANTIATE_TWINS(QuantOps);

}  // namespace
}  // namespace qsweep
