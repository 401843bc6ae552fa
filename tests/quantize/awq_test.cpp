// AWQ (quantize/awq.h), its checkpoint layout (formats/awq_packing.h,
// formats/awq_checkpoint.cpp) on the real tinycode model.
#include <cmath>
#include <filesystem>
#include <random>

#include "formats/awq_packing.h"
#include "quantize/awq.h"
#include "tests/quantize/tiny_fixture.h"

namespace qsweep {
namespace {

double max_rel_diff(const MatrixRM& a, const MatrixRM& b) {
  return double((a - b).cwiseAbs().maxCoeff()) / double(b.cwiseAbs().maxCoeff());
}

// (a) Folding s into the linears and 1/s into the previous op leaves the FP model's logits
// unchanged (up to fp32 rounding).
TEST(Awq, FoldingScalesIsExactOnTheFpModel) {
  const uint64_t seed = test::test_seed(5);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.5f);
  const Transformer& fp = tiny().model;
  Transformer m(fp.spec(), fp.weights());
  const int64_t H = fp.spec().hidden_size, I = fp.spec().intermediate_size;
  auto rand_s = [&](int64_t n) {
    VectorF s(n);
    for (int64_t i = 0; i < n; ++i) s[i] = std::exp(nd(rng));
    return s;
  };
  for (int l = 0; l < fp.spec().num_layers; ++l) {
    LayerWeights& L = m.mutable_weights().layers[size_t(l)];
    awq_apply_scale(L, AwqScaleGroup::QKV, rand_s(H));
    awq_apply_scale(L, AwqScaleGroup::GateUp, rand_s(H));
    awq_apply_scale(L, AwqScaleGroup::Down, rand_s(I));
    // tinycode has GQA (v_proj [128, 256], o_proj [256, 256]): no v -> o fold.
    EXPECT_FALSE(awq_scales_o(fp.spec()));
    EXPECT_THROW(awq_apply_scale(L, AwqScaleGroup::O, rand_s(H)), Error);
  }
  std::vector<int> toks(tiny().code_tokens.begin(), tiny().code_tokens.begin() + 256);
  const double rel = max_rel_diff(m.forward(toks), fp.forward(toks));
  RecordProperty("fold_max_rel_diff", std::to_string(rel));
  EXPECT_LT(rel, 1e-5);
}

// (a') The quantizer's own fold, with 8 bits: the AWQ-8 model stays close to FP.
TEST(Awq, EightBitAwqModelIsCloseToFp) {
  const QuantMethodConfig cfg{Method::Awq, AwqOptions{8, 128, false}};
  const CalibrationSet set = calib("code", 8);
  const QuantizedModel q = quantize_model(tiny().model, cfg, &set);
  std::vector<int> toks(tiny().code_tokens.begin(), tiny().code_tokens.begin() + 256);
  const double rel = max_rel_diff(q.model.forward(toks), tiny().model.forward(toks));
  std::printf("awq-8 max relative logit difference %.3g\n", rel);
  EXPECT_LT(rel, 2e-2);
  EXPECT_EQ(q.linears.size(), size_t(7 * tiny().model.spec().num_layers));
  EXPECT_EQ(q.calibration_domain, "code");
}

// Σ over layers of ‖X_r W_rᵀ − X_fp W_fpᵀ‖² per linear group, on the outputs the folds leave
// in the original basis: q, k, v (tinycode has no v -> o fold), o (the attention block output),
// gate, down (the MLP block output); up's rows carry 1/s of the down fold and are left out.
// Each model's layer l is fed the FP model's layer-l input (the same activations for both).
std::map<std::string, double> group_errors(const Transformer& q,
                                           const std::vector<std::vector<int>>& w) {
  const Transformer& fp = tiny().model;
  std::vector<int> lens;
  MatrixRM h = fp.embed(w, &lens);
  std::map<std::string, double> err;
  auto group_of = [](LinearRole r) -> std::string {
    switch (r) {
      case LinearRole::Q:
      case LinearRole::K:
      case LinearRole::V:
        return "qkv";
      case LinearRole::O:
        return "o";
      case LinearRole::Gate:
        return "gate";
      case LinearRole::Up:
        return "";  // its rows hold 1/s of the down fold: not comparable
      default:
        return "down";
    }
  };
  for (int l = 0; l < fp.spec().num_layers; ++l) {
    std::map<LinearRole, MatrixRM> yf, yq;
    auto cap = [](const Transformer& m, std::map<LinearRole, MatrixRM>& y) {
      return [&m, &y](int layer, LinearRole r, const MatrixRM& x) {
        y[r] = x * m.weights().layers[size_t(layer)].linear(r).to_matrix().transpose();
      };
    };
    MatrixRM hq = h;
    q.run_layer(l, hq, lens, cap(q, yq));
    fp.run_layer(l, h, lens, cap(fp, yf));
    for (LinearRole r : kAllLinearRoles)
      if (!group_of(r).empty()) err[group_of(r)] += double((yq[r] - yf[r]).squaredNorm());
  }
  return err;
}

// (b) AWQ-4 beats RTN-4 on every linear group's output error on captured tinycode activations.
TEST(Awq, Awq4ReducesEachGroupsOutputErrorVsRtn4) {
  const QuantMethodConfig cfg{Method::Awq, AwqOptions{4, 128, false}};
  const CalibrationSet set = calib("code", 8);
  const QuantizedModel awq = quantize_model(tiny().model, cfg, &set);
  const QuantMethodConfig rc{Method::Rtn, RtnOptions{4, 128, false}};
  const QuantizedModel rtn = quantize_model(tiny().model, rc, nullptr);
  // Measured on held-out code windows, not the calibration ones.
  std::vector<std::vector<int>> w;
  for (int i = 0; i < 8; ++i)
    w.emplace_back(tiny().code_tokens.begin() + i * 256,
                   tiny().code_tokens.begin() + (i + 1) * 256);
  const auto ea = group_errors(awq.model, w), er = group_errors(rtn.model, w);
  for (const auto& [g, e] : er) {
    std::printf("group %-8s rtn-4 %.4g  awq-4 %.4g  (ratio %.3f)\n", g.c_str(), e, ea.at(g),
                ea.at(g) / e);
    RecordProperty("ratio_" + g, std::to_string(ea.at(g) / e));
    EXPECT_LT(ea.at(g), e) << g;
  }
}

// (d) export -> reload -> the same perplexity exactly.
TEST(Awq, ExportReloadGivesTheSamePerplexity) {
  const QuantMethodConfig cfg{Method::Awq, AwqOptions{4, 128, false}};
  const CalibrationSet set = calib("code", 16);
  const QuantizedModel q = quantize_model(tiny().model, cfg, &set);
  const std::string dir = test::make_temp_dir("awq_export") + "/model";
  write_quantized(q, tiny().dir, dir);
  const LoadedModel back = load_model(dir);
  EXPECT_EQ(back.format, "awq");
  EXPECT_EQ(back.description, "awq 4-bit g128 gemm");
  ASSERT_EQ(back.quantized.size(), q.linears.size());
  for (size_t i = 0; i < q.linears.size(); ++i)
    EXPECT_EQ(back.quantized[i].codes, q.linears[i].q->codes);
  const Transformer reloaded(back.spec, back.weights);
  for (size_t l = 0; l < back.weights.layers.size(); ++l) {
    EXPECT_TRUE(back.weights.layers[l].attn_norm == q.model.weights().layers[l].attn_norm);
    EXPECT_TRUE(back.weights.layers[l].mlp_norm == q.model.weights().layers[l].mlp_norm);
  }
  const double a = ppl(q.model, tiny().code_tokens, 8192),
               b = ppl(reloaded, tiny().code_tokens, 8192);
  std::printf("awq-4 ppl in memory %.6f, reloaded %.6f\n", a, b);
  EXPECT_EQ(a, b);
  // 3-bit AWQ has no AutoAWQ GEMM layout.
  const QuantMethodConfig c3{Method::Awq, AwqOptions{3, 128, false}};
  const QuantizedModel q3 = quantize_model(tiny().model, c3, &set);
  EXPECT_THROW(write_quantized(q3, tiny().dir, dir + "3"), Error);
  QuantizedCheckpoint ck;  // the layout itself refuses it too
  for (const auto& l : q3.linears) ck.linears.push_back({l.layer, l.role, l.q.get()});
  ck.folded = &q3.model.weights();
  EXPECT_THROW(export_awq(ck, tiny().dir, dir + "3"), Error);
  EXPECT_FALSE(std::filesystem::exists(dir + "3"));
}

TEST(Awq, ConfigValidation) {
  const QuantMethodConfig cfg = QuantMethodConfig::defaults(Method::Awq);
  EXPECT_NO_THROW(cfg.validate());
  EXPECT_EQ(cfg.label(), "AWQ 4-bit g128");
  EXPECT_EQ(cfg.id(), "awq-b4-g128");
  EXPECT_THROW(QuantMethodConfig::from_json({{"method", "awq"}, {"desc_act", true}}), Error);
  EXPECT_THROW(quantize_model(tiny().model, cfg, nullptr), Error);
}

}  // namespace
}  // namespace qsweep
