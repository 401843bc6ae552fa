// GPTQ with bits chosen per linear under a bits-per-weight budget (issue #19's GPTQ twin):
// the cost is the output error on the calibration inputs, the choice is the brute-force
// optimum, the budget holds, a too-small budget names the least one, and a mixed-bit model
// survives export → load.
#include <cstdio>
#include <limits>
#include <random>
#include <set>

#include "formats/gptq_packing.h"
#include "quantize/gptq_budget.h"
#include "tests/quantize/tiny_fixture.h"

namespace qsweep {
namespace {

MatrixRM random_matrix(int64_t rows, int64_t cols, std::mt19937& rng, float scale = 1.f) {
  std::normal_distribution<float> n(0.f, scale);
  MatrixRM m(rows, cols);
  for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = n(rng);
  return m;
}

// tr((W−Q) H (W−Q)ᵀ) with H = 2/n XᵀX is 2/n × the squared output error ‖X (W−Q)ᵀ‖².
TEST(GptqBudget, HessianWeightedErrorIsTheOutputErrorOnTheCalibrationInputs) {
  std::mt19937 rng(1);
  MatrixRM X = random_matrix(200, 64, rng);
  for (int64_t c = 0; c < X.cols(); ++c) X.col(c) *= float(1 + c % 5);  // uneven channels
  const MatrixRM W = random_matrix(32, 64, rng, 0.1f);
  const MatrixRM Q = quantize_rtn(W, {3, 32, false}).dequantize();
  const MatrixD H = (2.0 / 200) * (X.cast<double>().transpose() * X.cast<double>());
  double direct = 0;  // Σ over tokens t and outputs o of (Σ_i (W−Q)[o,i] x[t,i])², in double
  for (int64_t t = 0; t < X.rows(); ++t)
    for (int64_t o = 0; o < W.rows(); ++o) {
      double y = 0;
      for (int64_t i = 0; i < W.cols(); ++i) y += double(W(o, i) - Q(o, i)) * double(X(t, i));
      direct += y * y;
    }
  EXPECT_NEAR(hessian_weighted_error(W, Q, H), 2.0 / 200 * direct, 1e-9 * direct);
}

// Four linears of different shapes and input scales: for every budget from the least to the
// most, the choice has the least Σ cost of all 4⁴ assignments that fit.
TEST(GptqBudget, ChoiceIsTheBruteForceOptimum) {
  std::mt19937 rng(7);
  const std::pair<int, int> shapes[] = {{32, 64}, {64, 32}, {32, 32}, {64, 96}};
  std::vector<std::vector<GptqBitsOption>> options;
  std::vector<int64_t> params;
  for (size_t k = 0; k < 4; ++k) {
    const auto [rows, cols] = shapes[k];
    const MatrixRM X = random_matrix(128, cols, rng, float(1 + 3 * k));
    const MatrixD H = (2.0 / 128) * (X.cast<double>().transpose() * X.cast<double>());
    options.push_back(gptq_bits_options(random_matrix(rows, cols, rng, 0.05f), H, 32, false));
    params.push_back(int64_t(rows) * cols);
    ASSERT_EQ(options.back().size(), 4u);
  }
  const int64_t total = params[0] + params[1] + params[2] + params[3];
  int checked = 0;
  for (double bpw = 2.0; bpw <= 9.0; bpw += 0.0625) {
    const int64_t budget = int64_t(std::floor(bpw * double(total) / 8));
    double best = std::numeric_limits<double>::infinity();
    for (int a = 0; a < 256; ++a) {
      int64_t bytes = 0;
      double cost = 0;
      for (int k = 0; k < 4; ++k) {
        const auto& o = options[size_t(k)][size_t((a >> (2 * k)) & 3)];
        bytes += o.bytes;
        cost += o.cost;
      }
      if (bytes <= budget) best = std::min(best, cost);
    }
    if (best == std::numeric_limits<double>::infinity()) {
      EXPECT_THROW(choose_gptq_bits(options, params, bpw, "group_size 32"), Error) << bpw;
      continue;
    }
    const GptqBitsChoice c = choose_gptq_bits(options, params, bpw, "group_size 32");
    int64_t bytes = 0;
    for (size_t k = 0; k < 4; ++k)
      for (const auto& o : options[k])
        if (o.bits == c.bits[k]) bytes += o.bytes;
    EXPECT_EQ(bytes, c.bytes) << bpw;
    EXPECT_LE(c.bytes, budget) << bpw;
    EXPECT_NEAR(c.cost, best, 1e-12 * best) << bpw;
    ++checked;
  }
  EXPECT_GT(checked, 80);
}

// On tinycode at 3.5 bpw: the widths differ per linear, the stored bits/weight of the result
// are ≤ 3.5, meta.json's record agrees, and the GPTQModel export (`dynamic` rules) loads back
// to the same codes and the same logits. Below the least budget: an Error naming it.
TEST(GptqBudget, TinycodeMixedBitsHonourTheBudgetAndRoundTrip) {
  GptqOptions o;
  o.group_size = 128;
  o.budget_bpw = 3.5;
  const QuantMethodConfig cfg{Method::Gptq, o};
  EXPECT_EQ(cfg.id(), "gptq-bpw3.5-g128");
  const CalibrationSet set = calib("code", 4, 128);
  const QuantizedModel qm = quantize_model(tiny().model, cfg, &set);
  std::set<int> widths;
  double bits = 0, n = 0;
  for (const auto& l : qm.linears) {
    widths.insert(l.q->bits);
    bits += gptq_bits_per_weight(*l.q) * double(l.q->rows * l.q->cols);
    n += double(l.q->rows * l.q->cols);
  }
  EXPECT_GE(widths.size(), 2u);
  EXPECT_LE(bits / n, 3.5);
  EXPECT_GT(bits / n, 3.3);  // the budget is used, not left idle
  EXPECT_EQ(qm.linear_bits_per_weight(), bits / n);
  ASSERT_EQ(qm.method_meta["linears"].size(), qm.linears.size());
  for (size_t i = 0; i < qm.linears.size(); ++i)
    EXPECT_EQ(qm.method_meta["linears"][i]["bits"], qm.linears[i].q->bits) << i;

  const std::string out = test::make_temp_dir("gptq_budget") + "/m";
  write_quantized(qm, tiny().dir, out);
  const LoadedModel back = load_model(out);
  ASSERT_EQ(back.quantized.size(), qm.linears.size());
  for (size_t i = 0; i < qm.linears.size(); ++i) {
    EXPECT_EQ(back.quantized[i].bits, qm.linears[i].q->bits) << i;
    EXPECT_EQ(back.quantized[i].codes, qm.linears[i].q->codes) << i;
  }
  const Transformer reloaded(back.spec, back.weights);
  const std::vector<std::vector<int>> seq = {
      std::vector<int>(tiny().code_tokens.begin(), tiny().code_tokens.begin() + 200)};
  const MatrixRM a = qm.model.forward(seq);
  const MatrixRM b = reloaded.forward(seq);
  EXPECT_EQ((a - b).cwiseAbs().maxCoeff(), 0.f);

  // tinycode at g128: (2·786432 + 6144·18 + 32·2304) / 786432 = 2.234375 bits/weight at least.
  GptqOptions small = o;
  small.budget_bpw = 2.2;
  try {
    quantize_model(tiny().model, QuantMethodConfig{Method::Gptq, small}, &set);
    ADD_FAILURE() << "a budget below the least was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("use budget_bpw >= 2.235"), std::string::npos) << e.what();
  }
}

// More bits do not hurt: on held-out code (not the calibration text), perplexity falls as the
// budget rises from 2.5 to 4.5 to 8.3 bits/weight, and the 8.3 budget (every linear at 8 bits)
// is within 1% of FP16's. Neighbouring budgets (2.5/3.5, 3.5/4.5) are a greedy choice over a
// proxy, measured on 4 × 128 calibration and 4,096 scored tokens: one may come out up to 1%
// worse than the other (the sanitizer build's different fp contraction gave 3.5 → 4.5:
// 23.584 → 23.723, +0.6%), so they are checked to that noise level only.
TEST(GptqBudget, HigherBudgetsGiveLowerHeldOutPerplexityBeyondNoise) {
  const CalibrationSet set = calib("code", 4, 128);
  std::vector<double> ppls;
  for (double bpw : {2.5, 3.5, 4.5, 8.3}) {
    GptqOptions o;
    o.group_size = 128;
    o.budget_bpw = bpw;
    const QuantizedModel qm =
        quantize_model(tiny().model, QuantMethodConfig{Method::Gptq, o}, &set);
    EXPECT_LE(qm.linear_bits_per_weight(), bpw);
    ppls.push_back(ppl(qm.model, tiny().code_tokens, 4096));
  }
  for (size_t i = 1; i < ppls.size(); ++i) EXPECT_LT(ppls[i], ppls[i - 1] * 1.01) << i;
  EXPECT_LT(ppls[2], ppls[0]);  // 4.5 vs 2.5 bits/weight
  EXPECT_LT(ppls[3], ppls[2]);  // 8.3 vs 4.5
  std::printf("held-out code perplexity at 2.5/3.5/4.5/8.3 bpw: %.4f %.4f %.4f %.4f\n", ppls[0],
              ppls[1], ppls[2], ppls[3]);
  EXPECT_LT(ppls.back() / ppl(tiny().model, tiny().code_tokens, 4096), 1.01);
}

}  // namespace
}  // namespace qsweep
