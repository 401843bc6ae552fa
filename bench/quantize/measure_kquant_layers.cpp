// Layer-wise output errors of the llama.cpp mixes on tinycode, with and without an
// importance matrix (issue #5: "where tinycode disagrees, show why with the layer-wise
// output errors"). A measurement program, not part of the suite:
//   build/bench/quantize/measure_kquant_layers
// (The assertions this measurement supports are in tests/quantize/kquant_layers_test.cpp.)
//
// For every linear W and each evaluation domain d (held-out code, WikiText-2 test), with
// H_d = Σ x xᵀ over 64 × 256 tokens of d fed through the FP16 model, it prints the relative
// output error  tr(ΔW H_d ΔWᵀ) / tr(W H_d Wᵀ)  (= ‖(W − Ŵ) X‖² / ‖W X‖²) of the mix's
// quantization of W: no imatrix, imatrix from code calibration, imatrix from WikiText-2
// validation (128 × 256 tokens each, the sweep's protocol).
#include <cstdio>

#include "formats/gguf.h"
#include "quantize/kquant_mix.h"
#include "quantizers/kquants/kquants.h"
#include "quantizers/kquants/mixes.h"
#include "tests/quantize/tiny_fixture.h"

namespace qsweep {
namespace {

MatrixRM quantized(const MatrixRM& W, int32_t ggml_type, const std::vector<float>* imatrix) {
  const auto q = kquants::type_from_ggml(ggml_type);
  if (!q) return W;  // F16/F32 fallbacks: not what this measures
  const std::vector<uint8_t> bytes = kquants::quantize_tensor(*q, W.data(), W.rows(), W.cols(),
                                                              imatrix ? imatrix->data() : nullptr);
  const std::vector<float> deq = kquants::dequantize_tensor(*q, bytes, W.rows(), W.cols());
  return Eigen::Map<const MatrixRM>(deq.data(), W.rows(), W.cols());
}

double rel_output_error(const MatrixRM& W, const MatrixRM& Wq, const MatrixD& H) {
  const MatrixD w = W.cast<double>(), d = (W - Wq).cast<double>();
  return (d * H * d.transpose()).trace() / (w * H * w.transpose()).trace();
}

TEST(KQuantLayers, OutputErrorsByLayerWithAndWithoutImatrix) {
  const Transformer& model = tiny().model;
  const ModelSpec& spec = model.spec();
  // Evaluation-domain activations (Σ x xᵀ per linear input), FP16 model.
  std::map<std::string, ActivationCapture> eval_caps;
  for (const char* domain : {"code-heldout", "wikitext2-test"}) {
    SamplingOptions o;
    o.n_samples = 64;
    o.seqlen = 256;
    o.seed = 1;
    const std::string src = std::string(domain) == "code-heldout"
                                ? test::data_dir() + "/code/heldout.txt"
                                : test::data_dir() + "/wikitext-2-raw/wiki.test.raw";
    const CalibrationSet set = build_calibration_set(src, test::data_dir(), *tiny().tok, o);
    ActivationCapture& cap = eval_caps.emplace(domain, ActivationCapture(true)).first->second;
    for (size_t b = 0; b < set.windows.size(); b += 16) {
      std::vector<std::vector<int>> batch(set.windows.begin() + std::ptrdiff_t(b),
                                          set.windows.begin() + std::ptrdiff_t(b + 16));
      std::vector<int> lengths;
      MatrixRM h = model.embed(batch, &lengths);
      for (int l = 0; l < spec.num_layers; ++l) model.run_layer(l, h, lengths, cap.hook());
    }
  }
  std::map<std::string, std::map<std::pair<int, LinearRole>, std::vector<float>>> imatrices;
  imatrices["code"] = importance_matrix(model, calib("code", 128));
  imatrices["wiki"] = importance_matrix(model, calib("wikitext2", 128));

  for (kquants::Mix mix : {kquants::Mix::Q2_K, kquants::Mix::Q3_K_M, kquants::Mix::Q4_K_M}) {
    std::vector<kquants::MixChoice> choices;
    gguf_mix_plan(mix, spec, false, &choices);
    std::map<std::string, int32_t> type_of;
    for (const auto& c : choices) type_of[c.name] = c.ggml_type;
    std::printf("\n%s: relative output error ||dW X||^2/||W X||^2 (x1e-3)\n", mix_name(mix));
    std::printf("%-22s %-5s | %28s | %28s\n", "", "", "X = held-out code", "X = WikiText-2 test");
    std::printf("%-22s %-5s | %8s %9s %9s | %8s %9s %9s\n", "linear", "type", "none", "imat-code",
                "imat-wiki", "none", "imat-code", "imat-wiki");
    double tot[2][3] = {};
    for (int l = 0; l < spec.num_layers; ++l)
      for (LinearRole r : kAllLinearRoles) {
        const MatrixRM& W = model.weights().layers[size_t(l)].linear(r).to_matrix();
        const std::string name = gguf_linear_name(l, r);
        const int32_t t = type_of.at(name);
        const MatrixRM q_none = quantized(W, t, nullptr);
        const MatrixRM q_code = quantized(W, t, &imatrices["code"].at({l, r}));
        const MatrixRM q_wiki = quantized(W, t, &imatrices["wiki"].at({l, r}));
        double e[2][3];
        int di = 0;
        for (const auto& [domain, cap] : eval_caps) {
          const MatrixD& H = cap.stats(l, linear_input_of(r)).xtx;
          e[di][0] = rel_output_error(W, q_none, H);
          e[di][1] = rel_output_error(W, q_code, H);
          e[di][2] = rel_output_error(W, q_wiki, H);
          for (int k = 0; k < 3; ++k) tot[di][k] += e[di][k];
          ++di;
        }
        std::printf("%-22s %-5s | %8.2f %9.2f %9.2f | %8.2f %9.2f %9.2f\n", name.c_str(),
                    kquants::traits(*kquants::type_from_ggml(t)).name, 1e3 * e[0][0], 1e3 * e[0][1],
                    1e3 * e[0][2], 1e3 * e[1][0], 1e3 * e[1][1], 1e3 * e[1][2]);
        EXPECT_TRUE(std::isfinite(e[0][0]) && std::isfinite(e[1][2]));
      }
    const double n = spec.num_layers * 7.0;
    std::printf("%-22s %-5s | %8.2f %9.2f %9.2f | %8.2f %9.2f %9.2f\n", "mean", "",
                1e3 * tot[0][0] / n, 1e3 * tot[0][1] / n, 1e3 * tot[0][2] / n, 1e3 * tot[1][0] / n,
                1e3 * tot[1][1] / n, 1e3 * tot[1][2] / n);
  }
}

// Where the Q2_K error comes from on tinycode: the mix quantizes token_embd to Q2_K (no
// imatrix reaches it: llama-imatrix collects none for embeddings), and tinycode's embedding is
// 15% of its parameters. Held-out code perplexity (chunks ctx 256, first 65,536 tokens) of
// Q2_K with and without an imatrix, with token_embd as the mix sets it and kept at F16.
TEST(KQuantLayers, Q2KPerplexityWithTheEmbeddingKeptAtF16) {
  const Transformer& model = tiny().model;
  const auto imat = importance_matrix(model, calib("code", 128));
  const std::string dir = test::make_temp_dir("kq-embd");
  for (bool f16_embd : {false, true})
    for (bool with_imat : {false, true}) {
      GgufTypePlan plan = gguf_mix_plan(kquants::Mix::Q2_K, model.spec(), with_imat);
      if (f16_embd) plan.per_tensor["token_embd.weight"] = kquants::ggml_type::F16;
      if (with_imat)
        for (const auto& [key, v] : imat)
          plan.importance[gguf_linear_name(key.first, key.second)] = v;
      const std::string path = dir + "/q2k.gguf";
      write_gguf(path, model.spec(), model.weights(), tiny().dir, plan);
      LoadedModel m = load_model(path);
      const Transformer t(m.spec, std::move(m.weights));
      std::printf("Q2_K token_embd %-5s imatrix %-4s: held-out code ppl %.3f\n",
                  f16_embd ? "F16" : "Q2_K", with_imat ? "code" : "none",
                  ppl(t, tiny().code_tokens, 65536));
    }
}

}  // namespace
}  // namespace qsweep
