// What holding GPTQ's and AWQ's calibration hidden states in fp16 between layers costs
// (issue #15; quantize/layer_inputs.h): each method quantizes tinycode twice, once with the
// layer inputs held in fp16 (the default) and once in fp32 (QuantRunOptions::fp32_layer_inputs),
// and both models score the same tokens. Printed per method and dataset: both perplexities,
// the paired mean per-token NLL difference (fp16 − fp32) with its standard error, and the
// fraction of weight codes that came out identical; and, as the floor to judge that by, the same
// for two fp32 runs that differ only in batch size (rounding-level differences). A measurement
// program (about 10 minutes on 2 cores), not part of the suite:
//   build/bench/quantize/measure_layer_inputs
#include <cmath>
#include <cstdio>

#include "tests/quantize/tiny_fixture.h"

namespace qsweep {
namespace {

struct Paired {
  double ppl_a = 0, ppl_b = 0, mean_diff = 0, se = 0;
  int64_t tokens = 0;
};

// Per-token NLLs of both models on the same windows: mean and standard error of a − b.
Paired paired_nll(const Transformer& a, const Transformer& b, const std::vector<int>& tokens,
                  int64_t max_tokens) {
  PerplexityOptions o;
  o.ctx = 256;
  o.max_tokens = max_tokens;
  const PerplexityResult ra = evaluate_perplexity(a, tokens, o);
  const PerplexityResult rb = evaluate_perplexity(b, tokens, o);
  EXPECT_EQ(ra.token_nll.size(), rb.token_nll.size());
  Paired p;
  p.ppl_a = ra.perplexity;
  p.ppl_b = rb.perplexity;
  p.tokens = int64_t(ra.token_nll.size());
  double s = 0, ss = 0;
  for (size_t i = 0; i < ra.token_nll.size(); ++i) {
    const double d = double(ra.token_nll[i]) - double(rb.token_nll[i]);
    s += d;
    ss += d * d;
  }
  const double n = double(p.tokens);
  p.mean_diff = s / n;
  p.se = std::sqrt(std::max(0.0, ss / n - p.mean_diff * p.mean_diff) / (n - 1));
  return p;
}

double identical_codes(const QuantizedModel& a, const QuantizedModel& b) {
  int64_t same = 0, all = 0;
  for (size_t i = 0; i < a.linears.size(); ++i) {
    const auto& ca = a.linears[i].q->codes;
    const auto& cb = b.linears[i].q->codes;
    for (size_t j = 0; j < ca.size(); ++j) same += ca[j] == cb[j];
    all += int64_t(ca.size());
  }
  return all ? double(same) / double(all) : 1.0;
}

TEST(LayerInputs, Fp16VersusFp32HeldHiddenStates) {
  const CalibrationSet set = calib("code", 128);
  const std::vector<int> wiki =
      tiny().tok->encode(read_text_file(test::data_dir() + "/wikitext-2-raw/wiki.test.raw"), false);
  const int64_t kTokens = 65536;
  std::printf(
      "tinycode; calibration: code, 128 windows x 256 tokens, seed 0; evaluation: chunks,\n"
      "ctx 256, first %lld tokens of each dataset. Each row compares a variant B with the\n"
      "reference A = fp32 held, batch 16: d = mean per-token NLL (B) - (A), paired over the same\n"
      "scored tokens, +- its standard error; codes identical = fraction of weight codes equal\n\n"
      "| method | B | dataset | ppl A | ppl B | d (nats) | d / SE | codes identical |\n"
      "|---|---|---|---:|---:|---:|---:|---:|\n",
      static_cast<long long>(kTokens));
  for (const char* m : {"gptq-b4-g128", "gptq-b3-g128", "awq-b4-g128"}) {
    const std::string name = m;
    const bool awq = name.starts_with("awq");
    nlohmann::json j = {{"method", awq ? "awq" : "gptq"},
                        {"bits", name.find("b3") != std::string::npos ? 3 : 4},
                        {"group_size", 128}};
    if (!awq) j["desc_act"] = name.ends_with("act");
    const QuantMethodConfig cfg = QuantMethodConfig::from_json(j);
    // The floor: fp32 held both times, only the batch size differs (5 vs 16 windows), which
    // changes the GEMM's row tiling and so the last fp32 bits of the hidden states: how far
    // GPTQ's result moves from rounding alone.
    QuantRunOptions f16, f32, f32_b5;
    f32.fp32_layer_inputs = f32_b5.fp32_layer_inputs = true;
    f32_b5.batch_windows = 5;
    const QuantizedModel q16 = quantize_model(tiny().model, cfg, &set, {}, f16);
    const QuantizedModel q32 = quantize_model(tiny().model, cfg, &set, {}, f32);
    const QuantizedModel q32b5 = quantize_model(tiny().model, cfg, &set, {}, f32_b5);
    for (const auto& [label, qa] :
         {std::pair<const char*, const QuantizedModel*>{"fp16", &q16}, {"fp32, batch 5", &q32b5}}) {
      const double same = identical_codes(*qa, q32);
      for (const auto& [ds, tokens] :
           {std::pair<const char*, const std::vector<int>*>{"code-heldout", &tiny().code_tokens},
            {"wikitext2", &wiki}}) {
        const Paired p = paired_nll(qa->model, q32.model, *tokens, kTokens);
        std::printf("| %s | %s | %s | %.4f | %.4f | %+.5f +- %.5f | %+.2f | %.4f |\n", m, label, ds,
                    p.ppl_b, p.ppl_a, p.mean_diff, p.se, p.se > 0 ? p.mean_diff / p.se : 0.0, same);
        std::fflush(stdout);
        EXPECT_TRUE(std::isfinite(p.mean_diff));
      }
    }
  }
}

}  // namespace
}  // namespace qsweep
