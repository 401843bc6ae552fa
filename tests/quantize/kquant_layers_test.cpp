// What the llama.cpp K-quant types and mixes must achieve on tinycode's real linears
// (labelled slow). The layer-wise table these support is bench/quantize/measure_kquant_layers.
#include <cmath>

#include "formats/gguf.h"
#include "quantizers/kquants/kquants.h"
#include "quantizers/kquants/mixes.h"
#include "tests/quantize/tiny_fixture.h"

namespace qsweep {
namespace {

using kquants::QuantType;

std::vector<float> roundtrip(QuantType t, const MatrixRM& W, const std::vector<float>* imatrix) {
  const std::vector<uint8_t> bytes = kquants::quantize_tensor(t, W.data(), W.rows(), W.cols(),
                                                              imatrix ? imatrix->data() : nullptr);
  return kquants::dequantize_tensor(t, bytes, W.rows(), W.cols());
}

// Σ_rc imatrix[c] (w_rc − ŵ_rc)²: the error the imatrix asks the quantizer to minimise (the
// imatrix is the mean x² of the linear's input column c, so this is the expected squared
// output error with the input's cross terms dropped).
double weighted_error(const MatrixRM& W, const std::vector<float>& deq,
                      const std::vector<float>& imatrix) {
  double e = 0;
  for (int64_t r = 0; r < W.rows(); ++r)
    for (int64_t c = 0; c < W.cols(); ++c) {
      const double d = double(W(r, c)) - deq[size_t(r * W.cols() + c)];
      e += imatrix[size_t(c)] * d * d;
    }
  return e;
}

const std::map<std::pair<int, LinearRole>, std::vector<float>>& code_imatrix() {
  static const auto m = importance_matrix(tiny().model, calib("code", 128));
  return m;
}

// For every linear of every layer and each of Q2_K, Q3_K, Q4_K: quantizing with the code
// imatrix gives a lower imatrix-weighted error than quantizing without one.
TEST(KQuantLayers, ImatrixLowersTheWeightedErrorOfEveryLinear) {
  const Transformer& model = tiny().model;
  int checked = 0;
  for (QuantType t : {QuantType::Q2_K, QuantType::Q3_K, QuantType::Q4_K})
    for (int l = 0; l < model.spec().num_layers; ++l)
      for (LinearRole r : kAllLinearRoles) {
        const MatrixRM& W = model.weights().layers[size_t(l)].linear(r).to_matrix();
        const std::vector<float>& imat = code_imatrix().at({l, r});
        const double plain = weighted_error(W, roundtrip(t, W, nullptr), imat);
        const double with = weighted_error(W, roundtrip(t, W, &imat), imat);
        EXPECT_LT(with, plain) << kquants::traits(t).name << " " << gguf_linear_name(l, r);
        ++checked;
      }
  EXPECT_EQ(checked, 3 * 7 * model.spec().num_layers);
}

// For every linear: the weighted error falls strictly with bit width, Q2_K > Q3_K > Q4_K
// (no imatrix in the quantization; the code imatrix only weights the error).
TEST(KQuantLayers, ErrorFallsWithBitWidthForEveryLinear) {
  const Transformer& model = tiny().model;
  for (int l = 0; l < model.spec().num_layers; ++l)
    for (LinearRole r : kAllLinearRoles) {
      const MatrixRM& W = model.weights().layers[size_t(l)].linear(r).to_matrix();
      const std::vector<float>& imat = code_imatrix().at({l, r});
      const double e2 = weighted_error(W, roundtrip(QuantType::Q2_K, W, nullptr), imat);
      const double e3 = weighted_error(W, roundtrip(QuantType::Q3_K, W, nullptr), imat);
      const double e4 = weighted_error(W, roundtrip(QuantType::Q4_K, W, nullptr), imat);
      EXPECT_GT(e2, e3) << gguf_linear_name(l, r);
      EXPECT_GT(e3, e4) << gguf_linear_name(l, r);
      EXPECT_GT(e4, 0.0) << gguf_linear_name(l, r);
    }
}

// Where the Q2_K mix's error comes from on tinycode: it quantizes token_embd to Q2_K (no
// imatrix reaches an embedding), and the embedding is 15% of tinycode's parameters. Keeping
// token_embd at F16 in the same mix lowers held-out code perplexity (chunks ctx 256, first
// 16,384 tokens), through the GGUF file as the sweep writes and reads it.
TEST(KQuantLayers, Q2KMixWithTheEmbeddingAtF16HasLowerPerplexity) {
  const Transformer& model = tiny().model;
  const std::string dir = test::make_temp_dir("kq-embd");
  double p[2] = {};
  for (bool f16_embd : {false, true}) {
    GgufTypePlan plan = gguf_mix_plan(kquants::Mix::Q2_K, model.spec(), false);
    if (f16_embd) plan.per_tensor["token_embd.weight"] = kquants::ggml_type::F16;
    const std::string path = dir + (f16_embd ? "/f16-embd.gguf" : "/q2k-embd.gguf");
    write_gguf(path, model.spec(), model.weights(), tiny().dir, plan);
    LoadedModel m = load_model(path);
    const Transformer t(m.spec, std::move(m.weights));
    p[f16_embd] = ppl(t, tiny().code_tokens, 16384);
  }
  const double fp = ppl(model, tiny().code_tokens, 16384);
  RecordProperty("q2k", std::to_string(p[0]));
  RecordProperty("q2k_f16_embd", std::to_string(p[1]));
  EXPECT_LT(p[1], p[0]) << "fp16 " << fp;
  EXPECT_GT(p[1], fp);  // the other tensors are still Q2_K-mixed
}

}  // namespace
}  // namespace qsweep
