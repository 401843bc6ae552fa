// The fake NodeRunner of the sweep-runner tests (sweep_runner_test.cpp, sweep_devices_test.cpp)
// and the small sweeps they run: the plan, the store and the executor are the real ones; only
// the work is fake, so the tests take milliseconds and say exactly which nodes ran.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "pipeline/spec.h"
#include "pipeline/sweep.h"
#include "tests/support/test_support.h"

namespace qsweep::test {
using nlohmann::json;

// 1 calibration + 3 quantize + (1 + 3) x 2 evals = 12 nodes.
inline std::string yaml(const std::string& gptq_bits = "4", const std::string& seed = "0",
                        const std::string& extra_eval = "") {
  return "name: fake\nmodel: " + test::tinycode_dir() +
         "\ncalibration:\n  code: {source: code, n_samples: 4, seqlen: 64, seed: " + seed +
         "}\nvariants:\n"
         "  - {method: rtn, bits: [4, 8]}\n"
         "  - {method: gptq, bits: " +
         gptq_bits +
         ", calibration: code}\n"
         "eval:\n"
         "  - {task: perplexity, dataset: code-heldout, ctx: 64, max_tokens: 512}\n"
         "  - {task: perplexity, dataset: wikitext2, ctx: 64, max_tokens: 256}\n" +
         extra_eval + "report:\n  formats: [json]\n";
}

// Writes the files results.json is assembled from, with values that depend only on the
// node's identity, and counts each node it runs. Optionally fails or dies at a node.
class FakeRunner : public NodeRunner {
 public:
  std::string fail_id;  ///< throw for this node
  int die_after = -1;   ///< SIGKILL the process when this many nodes have run
  std::map<std::string, int> runs;
  /// When set and it returns a value for an eval node: that perplexity, with per-token NLLs
  /// log(value) ± token_eps (alternating; ± 0 for the baseline), so the paired SE of a variant
  /// against a constant baseline is token_eps / √(n − 1).
  std::function<std::optional<double>(const SweepNode&)> ppl_of;
  double token_eps = 0;

  void run(const NodeTask& t) override {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (die_after >= 0 && total() >= die_after) ::raise(SIGKILL);
      ++runs[t.node.id];
    }
    if (t.node.id == fail_id) throw std::runtime_error("fake failure");
    const double v = double(std::hash<std::string>{}(t.node.id) % 1000) / 100.0;
    const json config = {{"config", t.node.config}};
    switch (t.node.kind) {
      case SweepNodeKind::Calibrate:
        write(t.out + "/meta.json",
              {{"source", "fake"}, {"domain", "code"}, {"tokens_in_source", 1000}});
        break;
      case SweepNodeKind::Sensitivity: {
        // Two groups with a KL that depends on the node's identity.
        json rows = json::array();
        for (int l = 0; l < 2; ++l)
          rows.push_back({{"name", cat("blk.", l, ".attn_v.weight")},
                          {"role", "attn_v"},
                          {"layer", l},
                          {"type", t.node.sensitivity_type},
                          {"kl", v + l},
                          {"kl_se", 0.01},
                          {"bytes", 100},
                          {"bytes_f16", 400}});
        write(t.out + "/sensitivity.json",
              {{"source", "fake"}, {"tokens", 64}, {"measurements", rows}});
        break;
      }
      case SweepNodeKind::Quantize:
        write(t.out + "/meta.json",
              {{"bits_per_weight", v}, {"size_bytes", 1000}, {"quantize_seconds", 0.0}});
        break;
      case SweepNodeKind::Evaluate: {
        if (const auto ppl = ppl_of ? ppl_of(t.node) : std::nullopt) {
          std::vector<float> nll(64);
          for (size_t i = 0; i < nll.size(); ++i)
            nll[i] = float(std::log(*ppl) +
                           (t.node.variant_index < 0 ? 0.0 : (i % 2 ? -token_eps : token_eps)));
          write_file_atomic(t.out + "/token_nll.f32", nll.data(), nll.size() * sizeof(float));
          write(t.out + "/metrics.json", {{"value", *ppl},
                                          {"mean_nll", std::log(*ppl)},
                                          {"nll_standard_error", 0.05},
                                          {"scored_tokens", 64},
                                          {"protocol", "fake"}});
          break;
        }
        const std::vector<float> nll(64, float(v));
        write_file_atomic(t.out + "/token_nll.f32", nll.data(), nll.size() * sizeof(float));
        write(t.out + "/metrics.json", {{"value", 10 + v}, {"mean_nll", v}, {"protocol", "fake"}});
        break;
      }
    }
  }
  int total() const {
    int n = 0;
    for (const auto& [id, c] : runs) n += c;
    return n;
  }
  std::set<std::string> ran() const {
    std::set<std::string> s;
    for (const auto& [id, c] : runs) {
      EXPECT_EQ(c, 1) << id << " ran twice in one run";
      s.insert(id);
    }
    return s;
  }

 private:
  static void write(const std::string& path, const json& j) {
    const std::string s = j.dump();
    write_file_atomic(path, s.data(), s.size());
  }
  std::mutex mu_;
};

inline SweepPlan plan_of(const std::string& text) {
  const SweepSpec spec = parse_sweep_text(text, "fake.yaml");
  return make_sweep_plan(spec, spec.model, test::data_dir());
}

inline SweepRunSummary run(const SweepPlan& plan, const std::string& out, FakeRunner& r,
                           int jobs = 2) {
  SweepRunOptions opt;
  opt.out_dir = out;
  opt.jobs = jobs;
  opt.progress = false;
  return run_sweep(plan, opt, r);
}

inline nlohmann::json results(const std::string& out) {
  return json::parse(read_text_file(out + "/results.json"));
}

}  // namespace qsweep::test
