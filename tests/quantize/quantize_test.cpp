// Model-level quantization on the real tinycode model: GPTQ against RTN on
// captured activations and on perplexity, export → reload exactness, bad input.
#include <cmath>
#include <filesystem>
#include <map>

#include "tests/quantize/tiny_fixture.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;

TEST(Quantize, GptqReducesLayerOutputErrorVersusRtnOnRealActivations) {
  const CalibrationSet set = calib("code", 16);
  ActivationCapture capture;
  std::vector<int> lengths;
  MatrixRM h = tiny().model.embed(set.windows, &lengths);
  std::map<std::pair<int, LinearInput>, MatrixRM> inputs;  // layer 1's raw inputs
  tiny().model.run_layer(0, h, lengths);
  tiny().model.run_layer(1, h, lengths, [&](int l, LinearRole r, const MatrixRM& x) {
    capture.hook()(l, r, x);
    inputs[{l, linear_input_of(r)}] = x;
  });
  for (LinearRole r : kAllLinearRoles) {
    const MatrixRM& W = tiny().model.weights().layers[1].linear(r).to_matrix();
    const MatrixRM& X = inputs.at({1, linear_input_of(r)});
    for (int bits : {3, 4}) {
      GptqConfig g;
      g.bits = bits;
      g.group_size = 128;
      const MatrixRM gq =
          gptq_quantize(W, capture.stats(1, linear_input_of(r)).hessian(), g).q.dequantize();
      const MatrixRM rq = quantize_rtn(W, {bits, 128, false}).dequantize();
      const double e_gptq = (X * (W - gq).transpose()).squaredNorm();
      const double e_rtn = (X * (W - rq).transpose()).squaredNorm();
      EXPECT_LT(e_gptq, 0.9 * e_rtn) << linear_role_name(r) << " " << bits << " bits";
    }
  }
}

TEST(Quantize, ExportReloadScoresExactlyTheSame) {
  GptqOptions o;
  o.bits = 4;
  o.group_size = 64;
  o.desc_act = true;
  const QuantMethodConfig cfg{Method::Gptq, o};
  const CalibrationSet set = calib("code", 8, 128);
  const QuantizedModel qm = quantize_model(tiny().model, cfg, &set);
  EXPECT_EQ(qm.linears.size(), 42u);
  EXPECT_NEAR(qm.linear_bits_per_weight(), 4 + 20.0 / 64 + 0.1, 0.1);
  const std::string out = test::make_temp_dir("export") + "/gptq4";
  write_quantized(qm, tiny().dir, out);
  const LoadedModel back = load_model(out);
  EXPECT_EQ(back.format, "gptq");
  ASSERT_EQ(back.quantized.size(), 42u);
  for (size_t i = 0; i < qm.linears.size(); ++i) {
    EXPECT_EQ(back.quantized[i].codes, qm.linears[i].q->codes) << i;
    EXPECT_EQ(back.quantized[i].g_idx, qm.linears[i].q->g_idx) << i;
  }
  const Transformer reloaded(back.spec, back.weights);
  EXPECT_EQ(ppl(reloaded, tiny().code_tokens, 4096), ppl(qm.model, tiny().code_tokens, 4096));
  // The unquantized tensors were copied as they were.
  EXPECT_EQ((reloaded.weights().embed.to_matrix() - tiny().model.weights().embed.to_matrix())
                .cwiseAbs()
                .maxCoeff(),
            0.f);
}

// GPTQ's quantized linears are codes (a Quantized WeightTensor decoding to q.dequantize()),
// and the codes do not depend on how the source weights are stored: the mmapped-F16 model
// and the same weights pre-widened to owned fp32 give identical codes, scales and zeros.
TEST(Quantize, GptqCodesDoNotDependOnTheSourceStorageAndStayCodes) {
  ASSERT_EQ(tiny().model.weights().layers[0].wq.dtype(), WeightDType::F16);
  ModelWeights wide = tiny().model.weights();
  wide.embed.mutable_matrix();
  wide.lm_head.mutable_matrix();
  for (LayerWeights& L : wide.layers)
    for (LinearRole r : kAllLinearRoles) L.linear(r).mutable_matrix();
  ASSERT_EQ(wide.layers[0].wq.dtype(), WeightDType::F32);
  const Transformer widened(tiny().model.spec(), wide);
  GptqOptions o;
  o.bits = 4;
  o.group_size = 64;
  const QuantMethodConfig cfg{Method::Gptq, o};
  const CalibrationSet set = calib("code", 4, 128);
  const QuantizedModel a = quantize_model(tiny().model, cfg, &set);
  const QuantizedModel b = quantize_model(widened, cfg, &set);
  ASSERT_EQ(a.linears.size(), b.linears.size());
  for (size_t i = 0; i < a.linears.size(); ++i) {
    const QuantizedLinear& x = a.linears[i];
    EXPECT_EQ(x.q->codes, b.linears[i].q->codes) << i;
    EXPECT_EQ(x.q->scales, b.linears[i].q->scales) << i;
    EXPECT_EQ(x.q->zeros, b.linears[i].q->zeros) << i;
    const WeightTensor& w = a.model.weights().layers[size_t(x.layer)].linear(x.role);
    EXPECT_EQ(w.dtype(), WeightDType::Quantized) << i;
    EXPECT_TRUE(w.to_matrix() == x.q->dequantize()) << i;
  }
  EXPECT_EQ(ppl(a.model, tiny().code_tokens, 2048), ppl(b.model, tiny().code_tokens, 2048));
}

TEST(Quantize, BitsPerWeightCountWhatEachLayoutStores) {
  // tinycode per layer: 786,432 weights, 2,304 input columns, 6,144 (group, row) pairs at g128.
  // GPTQ layout: 4-bit codes + per group and row an fp16 scale and a 4-bit zero + int32 g_idx
  // per column = (786432·4 + 6144·20 + 32·2304) / 786432 = 4.25 exactly.
  const QuantMethodConfig cfg{Method::Rtn, RtnOptions{4, 128, false}};
  QuantizedModel qm = quantize_model(tiny().model, cfg, nullptr);
  EXPECT_DOUBLE_EQ(qm.linear_bits_per_weight(), 4.25);
  EXPECT_EQ(qm.linear_bits_per_weight(), 4.25);  // bit for bit
  // The AutoAWQ gemm layout has no g_idx: (786432·4 + 6144·20) / 786432 = 4.15625.
  qm.config = QuantMethodConfig{Method::Awq, AwqOptions{4, 128, false}};
  EXPECT_DOUBLE_EQ(qm.linear_bits_per_weight(), 4.15625);
  EXPECT_EQ(qm.linear_bits_per_weight(), 4.15625);
}

TEST(Quantize, EightBitIsWithinOnePercentOfFp16) {
  const double base = ppl(tiny().model, tiny().code_tokens, 4096);
  const QuantMethodConfig rtn{Method::Rtn, RtnOptions{8, 128, false}};
  EXPECT_LT(ppl(quantize_model(tiny().model, rtn, nullptr).model, tiny().code_tokens, 4096) / base,
            1.01);
  GptqOptions go;
  go.bits = 8;
  const QuantMethodConfig g{Method::Gptq, go};
  const CalibrationSet set = calib("code", 8, 128);
  EXPECT_LT(ppl(quantize_model(tiny().model, g, &set).model, tiny().code_tokens, 4096) / base,
            1.01);
}

TEST(Quantize, BadConfigurationsAreErrors) {
  EXPECT_THROW(QuantMethodConfig::from_json({{"method", "hqq"}}), Error);  // not a method
  GptqOptions o;
  const auto with = [](const GptqOptions& x) { return QuantMethodConfig{Method::Gptq, x}; };
  o.bits = 1;
  EXPECT_THROW(with(o).validate(), Error);
  o.bits = 9;
  EXPECT_THROW(with(o).validate(), Error);
  o.bits = 4;
  o.group_size = 0;
  EXPECT_THROW(with(o).validate(), Error);
  o.group_size = 128;
  o.damp_percent = 0;
  EXPECT_THROW(with(o).validate(), Error);
  o.damp_percent = 0.01;
  EXPECT_THROW(quantize_model(tiny().model, with(o), nullptr), Error);  // no calibration
  // RTN has no desc_act: an RTN config that names it is refused.
  EXPECT_THROW(QuantMethodConfig::from_json({{"method", "rtn"}, {"desc_act", true}}), Error);
}

TEST(Quantize, NanWeightNamesTheLayerAndNothingIsWritten) {
  Transformer broken(tiny().loaded.spec, tiny().loaded.weights);
  broken.mutable_weights().layers[3].w_up.mutable_matrix()(5, 7) = std::nanf("");
  const QuantMethodConfig cfg = QuantMethodConfig::defaults(Method::Gptq);
  const CalibrationSet set = calib("code", 2, 64);
  try {
    quantize_model(broken, cfg, &set);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    // Layer 3's up_proj poisons its own output first; the error names a layer-3 linear.
    EXPECT_NE(std::string(e.what()).find("model.layers.3."), std::string::npos) << e.what();
  }
  // Export of a model whose source checkpoint lacks a quantized tensor fails and
  // leaves neither the output directory nor a temporary one behind.
  const QuantMethodConfig rtn = QuantMethodConfig::defaults(Method::Rtn);
  QuantizedModel qm = quantize_model(tiny().model, rtn, nullptr);
  qm.linears.back().layer = 99;  // a linear the source does not have
  const std::string parent = test::make_temp_dir("halfway");
  EXPECT_THROW(write_quantized(qm, tiny().dir, parent + "/out"), Error);
  EXPECT_TRUE(fs::is_empty(parent));
}

TEST(Quantize, CorruptGptqCheckpointIsAClearError) {
  const QuantMethodConfig rtn{Method::Rtn, RtnOptions{4, 128, false}};
  const std::string out = test::make_temp_dir("corrupt") + "/m";
  write_quantized(quantize_model(tiny().model, rtn, nullptr), tiny().dir, out);
  // Claim 3 bits in config.json: qweight shapes no longer fit.
  std::string cfg = read_text_file(out + "/config.json");
  cfg.replace(cfg.find("\"bits\": 4"), 9, "\"bits\": 3");
  write_file_atomic(out + "/config.json", cfg.data(), cfg.size());
  try {
    load_model(out);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(".qweight"), std::string::npos) << e.what();
  }
}

// Issue #19: per-module bits in GPTQModel's `dynamic` form. A 4-bit g128 RTN model with two
// linears at 8 bits (one with per-channel groups): the export names exactly those two, in
// GPTQModel's "+:<regex>" form, and the reload gives each linear its own codes and bits.
TEST(Quantize, PerModuleBitsRoundTripThroughGptqModelsDynamicOverrides) {
  const QuantMethodConfig rtn{Method::Rtn, RtnOptions{4, 128, false}};
  QuantizedModel qm = quantize_model(tiny().model, rtn, nullptr);
  const auto& w = tiny().model.weights().layers;
  qm.linears[2].q = std::make_shared<const QTensor>(
      quantize_rtn(w[0].linear(qm.linears[2].role).to_matrix(), {8, 128, false}));
  qm.linears[13].q = std::make_shared<const QTensor>(
      quantize_rtn(w[1].linear(qm.linears[13].role).to_matrix(), {8, -1, false}));
  ASSERT_EQ(qm.linears[2].role, LinearRole::V);
  ASSERT_EQ(qm.linears[13].layer, 1);
  const std::string out = test::make_temp_dir("dynamic") + "/m";
  write_quantized(qm, tiny().dir, out);
  const nlohmann::json qc = nlohmann::json::parse(read_text_file(out + "/quantize_config.json"));
  const nlohmann::json expected = {
      {"+:model\\.layers\\.0\\.self_attn\\.v_proj", {{"bits", 8}, {"group_size", 128}}},
      {"+:model\\.layers\\.1\\.mlp\\.down_proj", {{"bits", 8}, {"group_size", -1}}}};
  EXPECT_EQ(qc["dynamic"], expected);
  EXPECT_EQ(qc["bits"], 4);
  const LoadedModel back = load_model(out);
  ASSERT_EQ(back.quantized.size(), qm.linears.size());
  for (size_t i = 0; i < qm.linears.size(); ++i) {
    EXPECT_EQ(back.quantized[i].bits, qm.linears[i].q->bits) << i;
    EXPECT_EQ(back.quantized[i].group_size, qm.linears[i].q->group_size) << i;
    EXPECT_EQ(back.quantized[i].codes, qm.linears[i].q->codes) << i;
  }
  EXPECT_NE(back.description.find("2 per-module overrides"), std::string::npos);

  // What qsweep cannot read is an error naming the rule: an unquantized module ("-:"), two
  // rules for one module, bits GPTQ has no kernel for.
  const std::string cfg = read_text_file(out + "/config.json");
  auto load_with = [&](const std::string& from, const std::string& to) -> std::string {
    std::string c = cfg;
    const size_t at = c.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    c.replace(at, from.size(), to);
    write_file_atomic(out + "/config.json", c.data(), c.size());
    try {
      load_model(out);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(load_with("\"+:model\\\\.layers\\\\.0", "\"-:model\\\\.layers\\\\.0")
                .find("leaves model.layers.0.self_attn.v_proj unquantized"),
            std::string::npos);
  EXPECT_NE(load_with("\"+:model\\\\.layers\\\\.1\\\\.mlp\\\\.down_proj",
                      "\"+:model\\\\.layers\\\\.0\\\\.self_attn\\\\.v")
                .find("matches both"),
            std::string::npos);
  EXPECT_NE(load_with("\"bits\": 8", "\"bits\": 5").find("dynamic"), std::string::npos);
}

}  // namespace
}  // namespace qsweep
