// configs/qwen3-tiny.yaml end to end through run_sweep on ../shared/models/qwen3-tiny-random:
// calibration through the byte-level BPE tokenizer, GPTQ-4 and AWQ-4 quantized, exported and
// evaluated (perplexity and MMLU). The baseline's and the GPTQ checkpoint's perplexities are
// recomputed here by a naive loop over the same windows.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/mapped_file.h"
#include "eval/datasets.h"
#include "formats/formats.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "pipeline/spec.h"
#include "pipeline/sweep.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

// Mean NLL of the chunks protocol written out: disjoint windows of `ctx` tokens over the
// first `max_tokens`, every position but each window's first scored.
double naive_mean_nll(const Transformer& m, const std::vector<int>& tokens, int ctx,
                      int max_tokens) {
  double sum = 0;
  int64_t n = 0;
  for (int start = 0; start + ctx <= max_tokens; start += ctx) {
    const std::vector<int> w(tokens.begin() + start, tokens.begin() + start + ctx);
    MatrixRM logits = m.forward(w);
    log_softmax_rows(logits);
    for (int p = 0; p + 1 < ctx; ++p, ++n) sum -= logits(p, w[size_t(p + 1)]);
  }
  return sum / double(n);
}

TEST(Qwen3Sweep, ConfigRunsEndToEnd) {
  const SweepSpec spec = parse_sweep(std::string(QSWEEP_SOURCE_DIR) + "/configs/qwen3-tiny.yaml");
  const std::string model_dir = test::shared_dir() + "/models/" + spec.model;
  const SweepPlan plan = make_sweep_plan(spec, model_dir, test::data_dir());
  SweepRunOptions opt;
  opt.out_dir = test::make_temp_dir("qwen3-sweep");
  opt.jobs = 2;
  opt.progress = false;
  const SweepRunSummary sum = run_sweep(plan, opt);
  EXPECT_EQ(sum.failed, 0);
  EXPECT_EQ(sum.skipped, 0);
  // calibration + 3 quantize + 4 models x 2 evals
  EXPECT_EQ(sum.ran, 12);

  const json r = json::parse(read_text_file(sum.results_file));
  std::map<std::string, json> by_method;
  for (const auto& v : r["variants"]) {
    EXPECT_EQ(v["status"], "ok") << v["id"] << ": " << v["error"];
    by_method[v["method"].get<std::string>()] = v;
  }
  ASSERT_EQ(by_method.size(), 4u);
  for (const char* m : {"gptq", "awq"}) {
    EXPECT_EQ(by_method[m]["bits"], 4) << m;
    EXPECT_EQ(by_method[m]["group_size"], 64) << m;
  }
  const std::string ppl_id = "ppl-wikitext2-chunks-ctx128-n512";
  for (const auto& [m, v] : by_method) {
    EXPECT_EQ(v["metrics"][ppl_id]["scored_tokens"], 4 * 127) << m;
    EXPECT_EQ(v["metrics"]["mmlu-mmlu-l4-abstract_algebra-shot1"]["items"], 4) << m;
  }

  // The numbers are the models' own: the baseline from the source checkpoint, GPTQ from the
  // checkpoint the sweep wrote (found in the store by its quantize_config.json).
  const auto tok = load_tokenizer(model_dir);
  const std::vector<int> tokens =
      tok->encode(read_dataset_text(resolve_eval_dataset("wikitext2", test::data_dir())), false);
  const LoadedModel base = load_model(model_dir);
  EXPECT_NEAR(by_method["fp16"]["metrics"][ppl_id]["mean_nll"].get<double>(),
              naive_mean_nll(Transformer(base.spec, base.weights), tokens, 128, 512), 1e-4);
  std::string gptq_dir, gguf_file;
  for (const auto& e : fs::recursive_directory_iterator(opt.out_dir + "/store")) {
    if (e.path().filename() == "quantize_config.json") gptq_dir = e.path().parent_path();
    if (e.path().extension() == ".gguf") gguf_file = e.path();
  }
  ASSERT_FALSE(gptq_dir.empty());
  const LoadedModel q = load_model(gptq_dir);
  EXPECT_EQ(q.format, "gptq");
  EXPECT_NEAR(by_method["gptq"]["metrics"][ppl_id]["mean_nll"].get<double>(),
              naive_mean_nll(Transformer(q.spec, q.weights), tokens, 128, 512), 1e-4);
  // Q4_K_M: the GGUF the sweep wrote (q_norm/k_norm, tied embeddings, BPE vocabulary) read
  // back gives the number the sweep reported.
  ASSERT_FALSE(gguf_file.empty());
  const LoadedModel g = load_model(gguf_file);
  EXPECT_TRUE(g.spec.qk_norm);
  EXPECT_NEAR(by_method["q4_k_m"]["metrics"][ppl_id]["mean_nll"].get<double>(),
              naive_mean_nll(Transformer(g.spec, g.weights), tokens, 128, 512), 1e-4);
  fs::remove_all(opt.out_dir);
}

}  // namespace
}  // namespace qsweep
