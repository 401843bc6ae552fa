// What a sweep re-runs, counted with a fake NodeRunner (as ninja's tests count commands):
// the plan, the store and the executor are the real ones; only the work is fake, so these
// tests take milliseconds and say exactly which nodes ran. The end-to-end tests with the
// real stages are in sweep_test.cpp.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "pipeline/spec.h"
#include "pipeline/sweep.h"
#include "reports/reports.h"
#include "tests/pipeline/fake_runner.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

using test::FakeRunner;
using test::plan_of;
using test::results;
using test::run;
using test::yaml;

// Issue #19: the sensitivity study as nodes. 1 calibration + 2 sensitivity + 2 auto_mix
// quantize + (1 + 2) evals = 8 nodes.
std::string auto_mix_yaml(const std::string& budgets, const std::string& sensitivity) {
  return "name: fake\nmodel: " + test::tinycode_dir() +
         "\ncalibration:\n  code: {source: code, n_samples: 4, seqlen: 64}\n" + sensitivity +
         "variants:\n  - {method: auto_mix, budget: " + budgets +
         ", calibration: code}\n"
         "eval:\n  - {task: perplexity, dataset: code-heldout, ctx: 64, max_tokens: 512}\n"
         "report:\n  formats: [json]\n";
}
const std::string kTwoTypes = "sensitivity: {types: [q2_k, q4_k]}\n";

TEST(SweepRunner, TwoAutoMixesShareTheSensitivityNodesAndABudgetEditRerunsOneVariant) {
  const std::string out = test::make_temp_dir("fake") + "/out";
  const SweepPlan plan = plan_of(auto_mix_yaml("[q3_k_m, q2_k]", kTwoTypes));
  ASSERT_EQ(plan.nodes.size(), 8u);
  std::vector<std::string> sens_keys;
  for (const auto& n : plan.nodes)
    if (n.kind == SweepNodeKind::Sensitivity) sens_keys.push_back(n.key);
  ASSERT_EQ(sens_keys.size(), 2u);
  for (const auto& n : plan.nodes) {
    if (n.kind != SweepNodeKind::Quantize) continue;
    std::vector<std::string> dep_keys;
    for (int d : n.deps) dep_keys.push_back(plan.nodes[size_t(d)].key);
    EXPECT_EQ(std::vector<std::string>(dep_keys.begin() + 1, dep_keys.end()), sens_keys) << n.id;
  }
  FakeRunner first;
  EXPECT_EQ(run(plan, out, first).ran, 8);
  EXPECT_EQ(first.runs.count("sensitivity:code:q2_k"), 1u);
  EXPECT_EQ(first.runs.count("sensitivity:code:q4_k"), 1u);
  // results.json carries each node's table as the node wrote it.
  const json r = results(out);
  ASSERT_EQ(r["sensitivity"].size(), 2u);
  EXPECT_EQ(r["sensitivity"][0]["type"], "q2_k");
  EXPECT_EQ(r["sensitivity"][0]["measurements"].size(), 2u);
  EXPECT_EQ(r["sensitivity"][0]["measurements"][1]["name"], "blk.1.attn_v.weight");
  const double v = double(std::hash<std::string>{}("sensitivity:code:q2_k") % 1000) / 100.0;
  EXPECT_DOUBLE_EQ(r["sensitivity"][0]["measurements"][1]["kl"].get<double>(), v + 1);

  FakeRunner edited;
  run(plan_of(auto_mix_yaml("[q3_k_m, q4_k_m]", kTwoTypes)), out, edited);
  EXPECT_EQ(edited.ran(), (std::set<std::string>{
                              "quantize:auto_mix-q4_k_m-code",
                              "eval:auto_mix-q4_k_m-code:ppl-code-heldout-chunks-ctx64-n512"}));
  // A new candidate type: its node, then both mixes (their table changed).
  FakeRunner more;
  run(plan_of(auto_mix_yaml("[q3_k_m, q4_k_m]", "sensitivity: {types: [q2_k, q4_k, q6_k]}\n")), out,
      more);
  EXPECT_EQ(more.ran(), (std::set<std::string>{
                            "sensitivity:code:q6_k", "quantize:auto_mix-q3_k_m-code",
                            "quantize:auto_mix-q4_k_m-code",
                            "eval:auto_mix-q3_k_m-code:ppl-code-heldout-chunks-ctx64-n512",
                            "eval:auto_mix-q4_k_m-code:ppl-code-heldout-chunks-ctx64-n512"}));
}

TEST(SweepRunner, WithoutASensitivitySectionTheDefaultTypesAreStudied) {
  const SweepPlan plan = plan_of(auto_mix_yaml("q3_k_m", ""));
  std::vector<std::string> ids;
  for (const auto& n : plan.nodes)
    if (n.kind == SweepNodeKind::Sensitivity) ids.push_back(n.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"sensitivity:code:q2_k", "sensitivity:code:q3_k",
                                           "sensitivity:code:q4_k", "sensitivity:code:q5_k",
                                           "sensitivity:code:q6_k", "sensitivity:code:q8_0"}));
  // A study without auto_mix variants (the heat map alone) on the only calibration set.
  const SweepPlan alone = plan_of(yaml("4", "0").replace(
      yaml("4", "0").find("variants:"), 0, "sensitivity: {types: q3_k, n_samples: 2}\n"));
  int sens = 0;
  for (const auto& n : alone.nodes)
    if (n.kind == SweepNodeKind::Sensitivity) {
      ++sens;
      EXPECT_EQ(n.id, "sensitivity:code:q3_k");
      EXPECT_EQ(n.config["n_samples"], 2);
      EXPECT_EQ(n.config["seqlen"], 64);  // the calibration set's
    }
  EXPECT_EQ(sens, 1);
}

TEST(SweepRunner, FirstRunDoesEveryNodeOnceAndTheSecondNone) {
  const std::string out = test::make_temp_dir("fake") + "/out";
  const SweepPlan plan = plan_of(yaml());
  ASSERT_EQ(plan.nodes.size(), 12u);
  FakeRunner first;
  const auto s1 = run(plan, out, first);
  EXPECT_EQ(s1.ran, 12);
  EXPECT_EQ(first.ran().size(), 12u);
  FakeRunner second;
  const auto s2 = run(plan, out, second);
  EXPECT_EQ(s2.ran, 0);
  EXPECT_EQ(s2.cached, 12);
  EXPECT_TRUE(second.runs.empty());
}

TEST(SweepRunner, EditingAVariantReRunsItsQuantizeAndItsEvalsOnly) {
  const std::string out = test::make_temp_dir("fake") + "/out";
  FakeRunner first;
  run(plan_of(yaml("4")), out, first);
  FakeRunner edited;
  run(plan_of(yaml("3")), out, edited);
  EXPECT_EQ(edited.ran(),
            (std::set<std::string>{"quantize:gptq-b3-g128-code",
                                   "eval:gptq-b3-g128-code:ppl-code-heldout-chunks-ctx64-n512",
                                   "eval:gptq-b3-g128-code:ppl-wikitext2-chunks-ctx64-n256"}));
}

TEST(SweepRunner, ANewCalibrationSeedReRunsWhatDependsOnItAndNothingElse) {
  const std::string out = test::make_temp_dir("fake") + "/out";
  FakeRunner first;
  run(plan_of(yaml("4", "0")), out, first);
  FakeRunner reseeded;
  run(plan_of(yaml("4", "1")), out, reseeded);
  EXPECT_EQ(reseeded.ran(),
            (std::set<std::string>{"calib:code", "quantize:gptq-b4-g128-code",
                                   "eval:gptq-b4-g128-code:ppl-code-heldout-chunks-ctx64-n512",
                                   "eval:gptq-b4-g128-code:ppl-wikitext2-chunks-ctx64-n256"}));
}

TEST(SweepRunner, ANewEvalRunsOncePerVariantAndTheBaseline) {
  const std::string out = test::make_temp_dir("fake") + "/out";
  FakeRunner first;
  run(plan_of(yaml()), out, first);
  FakeRunner more;
  run(plan_of(yaml("4", "0",
                   "  - {task: perplexity, dataset: code-heldout, protocol: strided, ctx: 64, "
                   "max_tokens: 512}\n")),
      out, more);
  EXPECT_EQ(more.ran().size(), 4u);
  for (const auto& id : more.ran()) EXPECT_NE(id.find("strided"), std::string::npos) << id;
}

TEST(SweepRunner, AFailureSkipsExactlyItsDescendantsAndAFixedRunDoesOnlyThem) {
  const std::string out = test::make_temp_dir("fake") + "/out";
  const SweepPlan plan = plan_of(yaml());
  FakeRunner failing;
  failing.fail_id = "quantize:rtn-b8-g128";
  const auto s = run(plan, out, failing);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.skipped, 2);  // its two evaluations
  EXPECT_EQ(s.ran, 9);
  const json r = results(out);
  for (const auto& v : r["variants"])
    EXPECT_EQ(v["status"], v["id"] == "rtn-b8-g128" ? "failed" : "ok") << v["id"];
  FakeRunner fixed;
  run(plan, out, fixed);
  EXPECT_EQ(fixed.ran(),
            (std::set<std::string>{"quantize:rtn-b8-g128",
                                   "eval:rtn-b8-g128:ppl-code-heldout-chunks-ctx64-n512",
                                   "eval:rtn-b8-g128:ppl-wikitext2-chunks-ctx64-n256"}));
}

// kill -9 in the middle of a run (the process dies inside a node, its temporary half
// written): the next run redoes exactly the nodes without an artifact, and results.json
// equals an uninterrupted run's.
TEST(SweepRunner, AKilledRunResumesWithExactlyTheMissingNodes) {
  const std::string dir = test::make_temp_dir("fake");
  const SweepPlan plan = plan_of(yaml());
  FakeRunner whole;
  run(plan, dir + "/reference", whole, 1);

  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    FakeRunner dying;
    dying.die_after = 5;
    run(plan, dir + "/out", dying, 1);
    _exit(0);  // not reached
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  const ArtifactStore store(dir + "/out/store");  // removes the dead run's temporaries
  std::set<std::string> done;
  for (const SweepNode& n : plan.nodes)
    if (store.has(n.key)) done.insert(n.id);
  EXPECT_EQ(done.size(), 5u);
  FakeRunner resumed;
  const auto s = run(plan, dir + "/out", resumed, 1);
  EXPECT_EQ(s.cached, 5);
  for (const SweepNode& n : plan.nodes)
    EXPECT_NE(done.count(n.id), resumed.ran().count(n.id)) << n.id << " done xor re-run";
  json a = results(dir + "/out"), b = results(dir + "/reference");
  EXPECT_EQ(a["variants"], b["variants"]);
  for (const auto& e : fs::directory_iterator(dir + "/out/store"))
    EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << "temporary left behind";
}

// Two runs on one output directory at once (issue #13): the second waits for the first's
// lock, then finds every node cached; neither deletes the other's temporaries, and the
// store and results.json end as one uninterrupted run's.
TEST(SweepRunner, TwoConcurrentRunsOnOneOutDirBothEndWithACompleteStore) {
  struct SlowRunner : FakeRunner {
    void run(const NodeTask& t) override {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      FakeRunner::run(t);
    }
  };
  const std::string dir = test::make_temp_dir("fake-concurrent");
  const SweepPlan plan = plan_of(yaml());
  FakeRunner whole;
  run(plan, dir + "/reference", whole, 1);

  SlowRunner a, b;
  SweepRunSummary sa, sb;
  std::string error_a, error_b;
  auto go = [&](SlowRunner& r, SweepRunSummary& s, std::string& error) {
    try {
      s = run(plan, dir + "/out", r, 2);
    } catch (const std::exception& e) {
      error = e.what();
    }
  };
  std::thread ta(go, std::ref(a), std::ref(sa), std::ref(error_a));
  std::thread tb(go, std::ref(b), std::ref(sb), std::ref(error_b));
  ta.join();
  tb.join();
  EXPECT_EQ(error_a, "");
  EXPECT_EQ(error_b, "");
  EXPECT_EQ(sa.failed + sb.failed, 0);
  // Every node ran exactly once over both runs; one run did all of them, the other none.
  EXPECT_EQ(a.total() + b.total(), int(plan.nodes.size()));
  EXPECT_EQ(std::min(sa.ran, sb.ran), 0);
  EXPECT_EQ(std::max(sa.cached, sb.cached), int(plan.nodes.size()));
  const ArtifactStore store(dir + "/out/store", ArtifactStore::Access::Read);
  for (const SweepNode& n : plan.nodes) EXPECT_TRUE(store.has(n.key)) << n.id;
  EXPECT_EQ(results(dir + "/out")["variants"], results(dir + "/reference")["variants"]);
  for (const auto& e : fs::directory_iterator(dir + "/out/store"))
    EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << "temporary left behind";
}

// Issue #20: calibration-seed replicates. Two calibration sets with `seeds:` lists, one GPTQ
// variant calibrated with each, two perplexity evals.
std::string seeds_yaml(const std::string& code_seeds, const std::string& wiki_seeds = "[0, 1, 2]") {
  return "name: reps\nmodel: " + test::tinycode_dir() +
         "\ncalibration:\n  code: {source: code, n_samples: 4, seqlen: 64, " + code_seeds +
         "}\n  wiki: {source: wikitext2, n_samples: 4, seqlen: 64, seeds: " + wiki_seeds +
         "}\nvariants:\n  - {method: gptq, bits: 3, calibration: [code, wiki]}\n"
         "eval:\n"
         "  - {task: perplexity, dataset: code-heldout, ctx: 64, max_tokens: 512}\n"
         "  - {task: perplexity, dataset: wikitext2, ctx: 64, max_tokens: 256}\n"
         "report:\n  formats: [json]\n";
}

TEST(SweepRunner, AddingACalibrationSeedRunsOnlyTheNewSeedsNodes) {
  const std::string out = test::make_temp_dir("fake") + "/out";
  const std::string q = "gptq-b3-g128-code", e1 = "ppl-code-heldout-chunks-ctx64-n512",
                    e2 = "ppl-wikitext2-chunks-ctx64-n256";
  FakeRunner first;
  const SweepPlan one = plan_of(seeds_yaml("seed: 0"));
  run(one, out, first);
  // `seed: 0` → `seeds: [0, 1]`: seed 0's nodes are cached under their old keys.
  FakeRunner second;
  const SweepPlan two = plan_of(seeds_yaml("seeds: [0, 1]"));
  run(two, out, second);
  EXPECT_EQ(second.ran(),
            (std::set<std::string>{"calib:code@seed1", "quantize:" + q + "@seed1",
                                   "eval:" + q + "@seed1:" + e1, "eval:" + q + "@seed1:" + e2}));
  FakeRunner third;
  run(plan_of(seeds_yaml("seeds: [0, 1, 2]")), out, third);
  EXPECT_EQ(third.ran(),
            (std::set<std::string>{"calib:code@seed2", "quantize:" + q + "@seed2",
                                   "eval:" + q + "@seed2:" + e1, "eval:" + q + "@seed2:" + e2}));
  // The single-seed sweep's keys are the replicated sweep's seed-0 keys.
  std::map<std::string, std::string> key_of_one;
  for (const auto& n : one.nodes) key_of_one[n.id] = n.key;
  EXPECT_EQ(two.nodes[0].id, "calib:code@seed0");
  EXPECT_EQ(two.nodes[0].key, key_of_one.at("calib:code"));
  for (const auto& n : two.nodes) {
    if (n.id == "quantize:" + q + "@seed0") {
      EXPECT_EQ(n.key, key_of_one.at("quantize:" + q));
    }
  }
  FakeRunner again;
  run(plan_of(seeds_yaml("seeds: [0, 1, 2]")), out, again);
  EXPECT_EQ(again.total(), 0);
}

TEST(SweepRunner, ReplicatesReportMeanSeedSdAndTheCombinedNoiseRule) {
  // The tinycode table (relative perplexities per seed, baseline perplexity 10).
  const std::map<std::string, std::vector<double>> rel = {
      {"code:code-heldout", {1.021, 1.022, 1.019}},
      {"code:wikitext2", {1.008, 1.011, 1.009}},
      {"wiki:code-heldout", {1.037, 1.041, 1.039}},
      {"wiki:wikitext2", {1.008, 1.001, 1.024}}};
  FakeRunner runner;
  runner.ppl_of = [&](const SweepNode& n) -> std::optional<double> {
    if (n.kind != SweepNodeKind::Evaluate) return std::nullopt;
    if (n.variant_index < 0) return 10.0;
    const std::string cal = n.variant.ends_with("-wiki") ? "wiki" : "code";
    const std::string ev = n.eval.starts_with("ppl-code") ? "code-heldout" : "wikitext2";
    return 10.0 * rel.at(cal + ":" + ev).at(size_t(n.replicate));
  };
  // Paired token SE 0.0005 nats: alone, it would call the WikiText-2 difference real.
  runner.token_eps = 0.0005 * std::sqrt(63.0);
  const std::string out = test::make_temp_dir("fake") + "/out";
  const SweepPlan plan = plan_of(seeds_yaml("seeds: [0, 1, 2]"));
  EXPECT_EQ(plan.nodes.size(), 6u + 6u + 2u * (1u + 6u));
  run(plan, out, runner);
  EXPECT_EQ(runner.total(), 26);
  const json r = results(out);
  ASSERT_EQ(r["variants"].size(), 3u);
  const json* wiki = nullptr;
  for (const auto& v : r["variants"])
    if (v["id"] == "gptq-b3-g128-wiki") wiki = &v;
  ASSERT_NE(wiki, nullptr);
  ASSERT_EQ((*wiki)["replicates"].size(), 3u);
  EXPECT_EQ((*wiki)["replicates"][1]["seed"], 1);
  const std::string e2 = "ppl-wikitext2-chunks-ctx64-n256";
  EXPECT_NEAR((*wiki)["replicates"][2]["metrics"][e2]["value"].get<double>(), 10.24, 1e-9);
  const json& m = (*wiki)["metrics"][e2];
  // Mean of 10.08, 10.01, 10.24; sample sd √((0.03² + 0.10² + 0.13²) / 2).
  EXPECT_NEAR(m["value"].get<double>(), 10.11, 1e-9);
  EXPECT_NEAR(m["seed_sd"].get<double>(), std::sqrt((0.0009 + 0.01 + 0.0169) / 2), 1e-9);
  EXPECT_EQ(m["n_seeds"], 3);
  EXPECT_NEAR(m["paired_nll_standard_error"].get<double>(), 0.0005, 2e-6);
  EXPECT_EQ(r["calibrations"]["wiki"]["seeds"], json({0, 1, 2}));

  // The out-vs-in comparisons: WikiText-2 differs by 1.011 − 1.00933 = 0.0017 relative, under
  // 2·√(2·(1.01·0.0005)² + (0.01179² + 0.00153²)/3) = 0.0140 → ≈; code-heldout by
  // 1.039 − 1.02067 = 0.0183, over 2·√(2·(1.03·0.0005)² + (0.00153² + 0.002²)/3) = 0.0032.
  const ReportData d = derive_report(r);
  const CalibrationAnalysis a = analyze_calibration(d);
  ASSERT_EQ(a.comparisons.size(), 2u);
  for (const auto& c : a.comparisons) {
    const bool wikitext = d.evals[c.eval].id == e2;
    EXPECT_EQ(c.within_noise, wikitext) << d.evals[c.eval].id;
  }
  const std::string md = render_calibration_md(r);
  EXPECT_NE(md.find("helped in 1 of 2 perplexity comparisons (1 within noise"), std::string::npos)
      << md;
  EXPECT_NE(md.find("10.11 ±0.12 (in)"), std::string::npos) << md;
}

}  // namespace
}  // namespace qsweep
