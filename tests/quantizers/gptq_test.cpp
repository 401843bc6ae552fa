// GPTQ: production against the literal reference port, against RTN, and on the edge cases.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "common/errors.h"
#include "quantizers/detail/gptq_hinv.h"
#include "quantizers/detail/gptq_reference.h"
#include "quantizers/quantizers.h"
#include "tests/quantizers/quantizer_test_util.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

// Production and reference may differ where float reassociation (GEMM blocking, the route to
// Hinv) flips a rounding tie; everything else must agree.
constexpr double kMinSameCodes = 0.999;
constexpr double kMaxRelDequantErr = 1e-3;  // ||D_prod - D_ref|| / ||D_ref||
constexpr double kMaxRelLossDiff = 1e-3;

double same_fraction(const QTensor& a, const QTensor& b) {
  int64_t same = 0;
  for (size_t i = 0; i < a.codes.size(); ++i) same += a.codes[i] == b.codes[i];
  return double(same) / double(a.codes.size());
}

double output_error(const MatrixRM& W, const MatrixRM& What, const MatrixRM& X) {
  return ((X * W.transpose()) - (X * What.transpose())).squaredNorm();
}

TEST(Gptq, IdentityHessianEqualsRtn) {
  std::mt19937_64 rng(test::test_seed(21));
  const MatrixRM W = test::random_weight(48, 256, rng);
  const MatrixD H = MatrixD::Identity(256, 256);
  for (int bits : {2, 3, 4, 8})
    for (int gs : {-1, 32, 128, 100})
      for (bool sym : {false, true})
        for (bool desc_act : {false, true}) {
          SCOPED_TRACE(testing::Message() << "bits " << bits << " gs " << gs << " sym " << sym
                                          << " desc_act " << desc_act);
          GptqConfig cfg;
          cfg.bits = bits;
          cfg.group_size = gs;
          cfg.sym = sym;
          cfg.desc_act = desc_act;
          const GptqResult g = gptq_quantize(W, H, cfg);
          const QTensor r = quantize_rtn(W, RtnConfig{bits, gs, sym});
          ASSERT_EQ(g.q.codes, r.codes);
          ASSERT_EQ(g.q.scales, r.scales);
          ASSERT_EQ(g.q.zeros, r.zeros);
          ASSERT_EQ(g.q.g_idx, r.g_idx);
          EXPECT_DOUBLE_EQ(g.damp_percent_used, 0.01);
        }
}

struct RefCase {
  bool desc_act;
  bool static_groups;
  int group_size;
  int block_size;
};

void PrintTo(const RefCase& c, std::ostream* os) {
  *os << "desc_act " << c.desc_act << " static " << c.static_groups << " group " << c.group_size
      << " block " << c.block_size;
}

class GptqVsReference : public testing::TestWithParam<RefCase> {};

TEST_P(GptqVsReference, ProductionMatchesReferencePort) {
  const RefCase rc = GetParam();
  std::mt19937_64 rng(test::test_seed(22));
  const int64_t rows = 80, cols = 384;
  const MatrixRM W = test::random_weight(rows, cols, rng);
  MatrixD H = test::hessian_of(test::random_activations(512, cols, rng));
  H.diagonal().array() += 1e-3;
  GptqConfig cfg;
  cfg.bits = 3;
  cfg.group_size = rc.group_size;
  cfg.desc_act = rc.desc_act;
  cfg.static_groups = rc.static_groups;
  cfg.block_size = rc.block_size;
  cfg.layer_name = "test.proj";
  const GptqResult prod = gptq_quantize(W, H, cfg);
  const GptqResult ref = detail::gptq_quantize_reference(W, H, cfg);
  ASSERT_NO_THROW(prod.q.validate());
  EXPECT_EQ(prod.q.g_idx, ref.q.g_idx);
  const double same = same_fraction(prod.q, ref.q);
  std::printf("codes identical: %.6f\n", same);
  EXPECT_GE(same, kMinSameCodes);
  const MatrixRM Dp = prod.q.dequantize(), Dr = ref.q.dequantize();
  EXPECT_LE((Dp - Dr).norm() / Dr.norm(), kMaxRelDequantErr);
  EXPECT_NEAR(prod.loss, ref.loss, kMaxRelLossDiff * ref.loss);
  EXPECT_GT(ref.loss, 0.0);
  // GPTQ must beat RTN on the loss it minimises (a broken solver usually does not).
  const MatrixRM Dr_rtn = quantize_rtn(W, RtnConfig{3, rc.group_size, false}).dequantize();
  const MatrixD E_rtn = (W - Dr_rtn).cast<double>(), E_g = (W - Dp).cast<double>();
  EXPECT_LT((E_g * H * E_g.transpose()).trace(), (E_rtn * H * E_rtn.transpose()).trace());
}

INSTANTIATE_TEST_SUITE_P(
    Configs, GptqVsReference,
    testing::Values(RefCase{false, false, -1, 128}, RefCase{false, false, 64, 128},
                    RefCase{false, false, 128, 128}, RefCase{true, false, -1, 128},
                    RefCase{true, false, 64, 128}, RefCase{true, false, 128, 128},
                    RefCase{false, true, 64, 128}, RefCase{false, true, 128, 128},
                    RefCase{true, true, 64, 128}, RefCase{true, true, 128, 128},
                    RefCase{true, false, 100, 128},  // short last group, groups across blocks
                    RefCase{false, false, 128, 48}, RefCase{true, true, 128, 32}),
    [](const testing::TestParamInfo<RefCase>& info) {
      const RefCase& c = info.param;
      return std::string(c.desc_act ? "act" : "seq") + (c.static_groups ? "_static" : "") + "_g" +
             (c.group_size < 0 ? std::string("all") : std::to_string(c.group_size)) + "_b" +
             std::to_string(c.block_size);
    });

TEST(Gptq, SameResultForAnyThreadCount) {
  std::mt19937_64 rng(test::test_seed(23));
  const MatrixRM W = test::random_weight(200, 256, rng);
  const MatrixD H = test::hessian_of(test::random_activations(400, 256, rng));
  GptqConfig cfg;
  cfg.group_size = 64;
  cfg.desc_act = true;
  const GptqResult many = gptq_quantize(W, H, cfg);
  GptqResult one;
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
    one = gptq_quantize(W, H, cfg);
  }
  EXPECT_EQ(many.q.codes, one.q.codes);
  EXPECT_EQ(many.q.scales, one.q.scales);
  EXPECT_EQ(many.loss, one.loss);
}

TEST(Gptq, ActOrderGroupIndexAndOriginalColumnOrder) {
  std::mt19937_64 rng(test::test_seed(24));
  const int64_t rows = 16, cols = 192, gs = 64;
  const MatrixRM W = test::random_weight(rows, cols, rng);
  // Diagonal H with distinct entries: GPTQ becomes RTN column by column, but groups are
  // formed in descending-diag order, so the expected result is RTN of the permuted W.
  std::vector<double> d(static_cast<size_t>(cols));
  std::uniform_real_distribution<double> u(0.5, 5.0);
  for (auto& v : d) v = u(rng);
  MatrixD H = MatrixD::Zero(cols, cols);
  for (int64_t i = 0; i < cols; ++i) H(i, i) = d[size_t(i)];
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(),
                   [&](int64_t a, int64_t b) { return d[size_t(a)] > d[size_t(b)]; });

  GptqConfig cfg;
  cfg.group_size = int(gs);
  cfg.desc_act = true;
  const GptqResult g = gptq_quantize(W, H, cfg);

  MatrixRM Wp(rows, cols);
  for (int64_t j = 0; j < cols; ++j) Wp.col(j) = W.col(perm[size_t(j)]);
  const QTensor r = quantize_rtn(Wp, RtnConfig{4, int(gs), false});
  EXPECT_EQ(g.q.scales, r.scales);
  std::vector<int> per_group(3, 0);
  for (int64_t j = 0; j < cols; ++j) {
    const int64_t c = perm[size_t(j)];
    ASSERT_EQ(g.q.g_idx[size_t(c)], j / gs) << "column " << c;
    ++per_group[size_t(g.q.g_idx[size_t(c)])];
    for (int64_t row = 0; row < rows; ++row) ASSERT_EQ(g.q.code(row, c), r.code(row, j));
  }
  EXPECT_EQ(per_group, (std::vector<int>{64, 64, 64}));
  // Column by column, the dequantized weight is the original column to within half a step,
  // plus up to maxq * 2^-11 steps for a clamped group maximum (the scale is rounded to fp16,
  // possibly down by a relative 2^-11, which shortens the grid by that much per step).
  const MatrixRM D = g.q.dequantize();
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t row = 0; row < rows; ++row)
      ASSERT_LE(std::fabs(D(row, c) - W(row, c)),
                g.q.scale(g.q.g_idx[size_t(c)], row) * (0.5f + 15.0f / 2048.0f) + 1e-6f)
          << "row " << row << " column " << c;

  // Static groups keep g_idx in the original order even with act-order.
  cfg.static_groups = true;
  const GptqResult s = gptq_quantize(W, H, cfg);
  for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(s.q.g_idx[size_t(c)], c / gs);
}

TEST(Gptq, BeatsRtnOnLayerOutput) {
  std::mt19937_64 rng(test::test_seed(25));
  const int64_t rows = 128, cols = 256;
  const MatrixRM W = test::random_weight(rows, cols, rng);
  const MatrixRM X = test::random_activations(1024, cols, rng);
  const MatrixD H = test::hessian_of(X);
  for (int bits : {3, 4})
    for (int gs : {-1, 128}) {
      GptqConfig cfg;
      cfg.bits = bits;
      cfg.group_size = gs;
      cfg.desc_act = true;
      const double e_gptq = output_error(W, gptq_quantize(W, H, cfg).q.dequantize(), X);
      const double e_rtn =
          output_error(W, quantize_rtn(W, RtnConfig{bits, gs, false}).dequantize(), X);
      std::printf("bits %d gs %d: ||WX - W^X||^2 GPTQ %.4g  RTN %.4g\n", bits, gs, e_gptq, e_rtn);
      EXPECT_LT(e_gptq, 0.8 * e_rtn) << "bits " << bits << " gs " << gs;
    }
}

TEST(Gptq, DeadInputColumns) {
  std::mt19937_64 rng(test::test_seed(26));
  const int64_t rows = 32, cols = 128;
  const MatrixRM W = test::random_weight(rows, cols, rng);
  MatrixRM X = test::random_activations(256, cols, rng);
  for (int64_t c : {0, 5, 77, 127}) X.col(c).setZero();  // inputs that never fire
  const MatrixD H = test::hessian_of(X);
  for (bool desc_act : {false, true}) {
    GptqConfig cfg;
    cfg.group_size = 32;
    cfg.desc_act = desc_act;
    const GptqResult g = gptq_quantize(W, H, cfg);
    const MatrixRM D = g.q.dequantize();
    ASSERT_TRUE(D.allFinite());
    for (int64_t c : {0, 5, 77, 127})
      for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(D(r, c), 0.0f) << "dead column " << c;
    const GptqResult ref = detail::gptq_quantize_reference(W, H, cfg);
    EXPECT_GE(same_fraction(g.q, ref.q), kMinSameCodes);
  }
}

TEST(Gptq, DampingGrowsUntilCholeskyWorks) {
  std::mt19937_64 rng(test::test_seed(27));
  const int64_t cols = 64;
  const MatrixRM W = test::random_weight(16, cols, rng);
  const MatrixD H0 = test::hessian_of(test::random_activations(256, cols, rng));
  // Shift H0 so that its smallest eigenvalue is -c with c = 3% of the new mean diagonal:
  // 1% damping cannot fix it, 10% can.
  const double lmin = Eigen::SelfAdjointEigenSolver<MatrixD>(H0).eigenvalues().minCoeff();
  const double m0 = H0.diagonal().mean();
  const double c = 0.03 * (m0 - lmin) / 1.03;
  MatrixD H = H0;
  H.diagonal().array() -= lmin + c;
  ASSERT_NEAR(c / H.diagonal().mean(), 0.03, 1e-9);

  GptqConfig cfg;
  cfg.layer_name = "model.layers.7.self_attn.o_proj";
  const GptqResult g = gptq_quantize(W, H, cfg);
  EXPECT_DOUBLE_EQ(g.damp_percent_used, 0.1);
  EXPECT_NEAR(g.damp_used, 0.1 * H.diagonal().mean(), 1e-12 * g.damp_used);
  EXPECT_TRUE(g.q.dequantize().allFinite());

  // Negative definite: nothing up to damp_max_percent helps; the error names the layer.
  try {
    gptq_quantize(W, -H0, cfg);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.7.self_attn.o_proj"), std::string::npos)
        << e.what();
  }
}

TEST(Gptq, NonFiniteInputsAreErrorsNamingTheLayer) {
  std::mt19937_64 rng(test::test_seed(28));
  const MatrixRM W = test::random_weight(8, 32, rng);
  const MatrixD H = test::hessian_of(test::random_activations(64, 32, rng));
  GptqConfig cfg;
  cfg.layer_name = "model.layers.0.mlp.down_proj";
  auto expect_error = [&](const MatrixRM& w, const MatrixD& h) {
    try {
      gptq_quantize(w, h, cfg);
      ADD_FAILURE() << "expected Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(cfg.layer_name), std::string::npos) << e.what();
    }
  };
  MatrixD Hn = H;
  Hn(3, 4) = std::numeric_limits<double>::quiet_NaN();
  expect_error(W, Hn);
  MatrixRM Wi = W;
  Wi(2, 9) = std::numeric_limits<float>::infinity();
  expect_error(Wi, H);
  expect_error(W, MatrixD::Identity(31, 31));  // shape mismatch
  GptqConfig bad = cfg;
  bad.bits = 9;
  EXPECT_THROW(gptq_quantize(W, H, bad), Error);
  bad = cfg;
  bad.block_size = 0;
  EXPECT_THROW(gptq_quantize(W, H, bad), Error);
  // Weights beyond fp16's scale range: an Error naming the layer whether the grid is found up
  // front (per channel) or inside the column loop (dynamic groups), never a NaN code.
  MatrixRM Wbig = W;
  Wbig(1, 20) = 3e9f;
  expect_error(Wbig, H);
  cfg.group_size = 8;
  expect_error(Wbig, H);
}

TEST(GptqHinv, UpperCholeskyOfInverse) {
  std::mt19937_64 rng(test::test_seed(29));
  const int64_t n = 150;  // not a multiple of the 64-column task blocks
  MatrixD H = test::hessian_of(test::random_activations(400, n, rng));
  H.diagonal().array() += 0.01 * H.diagonal().mean();
  MatrixD R(n, n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) R(i, j) = H(n - 1 - i, n - 1 - j);
  // The reference's route: cholesky -> cholesky_inverse -> cholesky(upper).
  const MatrixD Hi = Eigen::LLT<MatrixD>(H).solve(MatrixD::Identity(n, n));
  const MatrixD Uref = Eigen::LLT<MatrixD>(Hi).matrixU();
  for (int64_t block : {256, 32, 7}) {  // one block; several with a short last one
    MatrixD Rb = R;
    MatrixRM U;
    ASSERT_TRUE(detail::upper_cholesky_of_inverse(Rb, &U, block));
    EXPECT_LE((U.cast<double>() - Uref).norm() / Uref.norm(), 1e-6) << "block " << block;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < i; ++j) ASSERT_EQ(U(i, j), 0.0f);
    MatrixD Rc = R;
    ASSERT_TRUE(detail::cholesky_lower_in_place(Rc, block));
    const MatrixD L = Rc.triangularView<Eigen::Lower>();
    EXPECT_LE((L * L.transpose() - R).norm() / R.norm(), 1e-13) << "block " << block;
  }
  MatrixRM U;
  MatrixD notpd = -MatrixD::Identity(n, n);
  EXPECT_FALSE(detail::upper_cholesky_of_inverse(notpd, &U));
}

}  // namespace
}  // namespace qsweep
