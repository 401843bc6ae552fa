// The sweep end to end on tinycode: a second run does no work; a run killed with
// SIGKILL resumes to the same results.json; adding a variant runs only it; a
// failing variant fails only its descendants; a malformed YAML is refused before
// any work with file:line:column.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "eval/multiple_choice.h"
#include "eval/perplexity.h"
#include "eval/sandbox.h"
#include "formats/formats.h"
#include "model/tokenizer.h"
#include "pipeline/spec.h"
#include "pipeline/sweep.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

// Small enough to run in seconds: 3 variants x 2 evals + 1 calibration + 3 quantize
// + 2 baseline evals = 12 nodes.
std::string sweep_yaml(const std::string& extra_variant = "") {
  return "name: e2e\n"
         "model: " +
         test::tinycode_dir() +
         "\n"
         "calibration:\n"
         "  code: {source: code, n_samples: 4, seqlen: 128, seed: 0}\n"
         "variants:\n"
         "  - {method: rtn, bits: [4, 8], group_size: 128}\n"
         "  - {method: gptq, bits: 4, group_size: 64, calibration: code}\n" +
         extra_variant +
         "eval:\n"
         "  - {task: perplexity, dataset: code-heldout, protocol: chunks, ctx: 128, max_tokens: "
         "2048}\n"
         "  - {task: perplexity, dataset: wikitext2, protocol: strided, ctx: 128, stride: 64, "
         "max_tokens: 1024}\n"
         "report:\n"
         "  formats: [md, csv, json, html]\n";
}

std::string write_yaml(const std::string& dir, const std::string& text) {
  const std::string p = dir + "/sweep.yaml";
  std::ofstream(p) << text;
  return p;
}

SweepRunSummary run_once(const std::string& yaml, const std::string& out, int jobs = 2) {
  const SweepSpec spec = parse_sweep(yaml);
  const SweepPlan plan = make_sweep_plan(spec, spec.model, test::data_dir());
  SweepRunOptions opt;
  opt.out_dir = out;
  opt.jobs = jobs;
  opt.progress = false;
  return run_sweep(plan, opt);
}

// results.json without wall-clock times (the only fields that differ between runs).
json without_times(json j) {
  if (j.is_object()) {
    for (const char* k : {"seconds", "quantize_seconds"}) j.erase(k);
    for (auto& [k, v] : j.items()) v = without_times(v);
  } else if (j.is_array()) {
    for (auto& v : j) v = without_times(v);
  }
  return j;
}

json results_of(const std::string& out) {
  return without_times(json::parse(read_text_file(out + "/results.json")));
}

TEST(Sweep, SecondRunDoesNoWorkAndAddingAVariantRunsOnlyIt) {
  const std::string dir = test::make_temp_dir("sweep");
  const std::string yaml = write_yaml(dir, sweep_yaml());
  const auto first = run_once(yaml, dir + "/out");
  EXPECT_EQ(first.ran, 12);
  EXPECT_EQ(first.failed, 0);
  const json r = results_of(dir + "/out");
  ASSERT_EQ(r["variants"].size(), 4u);
  for (const auto& v : r["variants"]) {
    EXPECT_EQ(v["status"], "ok") << v["id"];
    EXPECT_EQ(v["metrics"].size(), 2u) << v["id"];
  }
  // Every variant's perplexity is paired with the baseline's on the same tokens:
  // exp(delta_mean_nll) is exactly the perplexity ratio.
  const json& base = r["variants"][0]["metrics"];
  for (const auto& v : r["variants"]) {
    if (v["is_baseline"]) continue;
    for (const auto& [eval, m] : v["metrics"].items()) {
      ASSERT_TRUE(m.contains("paired_nll_standard_error")) << v["id"] << " " << eval;
      EXPECT_GT(m["paired_nll_standard_error"].get<double>(), 0.0);
      EXPECT_LT(m["paired_nll_standard_error"].get<double>(),
                m["nll_standard_error"].get<double>());
      EXPECT_NEAR(std::exp(m["delta_mean_nll"].get<double>()),
                  m["value"].get<double>() / base[eval]["value"].get<double>(), 1e-9);
    }
  }
  EXPECT_TRUE(fs::exists(dir + "/out/table.md"));
  EXPECT_TRUE(fs::exists(dir + "/out/report.html"));

  // `qsweep report DIR` re-renders the same table from results.json alone.
  const std::string md = read_text_file(dir + "/out/table.md");
  fs::remove(dir + "/out/table.md");
  const std::string cmd =
      std::string(QSWEEP_BINARY_DIR) + "/qsweep report " + dir + "/out >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(read_text_file(dir + "/out/table.md"), md);

  const auto second = run_once(yaml, dir + "/out");
  EXPECT_EQ(second.ran, 0);
  EXPECT_EQ(second.cached, 12);
  EXPECT_EQ(results_of(dir + "/out"), r);

  // One more variant: its quantize node and its two evaluations, nothing else.
  write_yaml(dir, sweep_yaml("  - {method: rtn, bits: 3, group_size: 64}\n"));
  const auto third = run_once(yaml, dir + "/out");
  EXPECT_EQ(third.ran, 3);
  EXPECT_EQ(third.cached, 12);
}

TEST(Sweep, KilledRunResumesToTheSameResults) {
  const std::string dir = test::make_temp_dir("kill");
  const std::string yaml = write_yaml(dir, sweep_yaml());
  run_once(yaml, dir + "/reference");

  const std::string out = dir + "/out";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string bin = std::string(QSWEEP_BINARY_DIR) + "/qsweep";
    const std::string data = "--data-dir=" + test::data_dir();
    const std::string outflag = "--out=" + out;
    std::freopen("/dev/null", "w", stderr);
    std::freopen("/dev/null", "w", stdout);
    execl(bin.c_str(), bin.c_str(), "run", yaml.c_str(), outflag.c_str(), data.c_str(), "--jobs=1",
          "--no-progress", (char*)nullptr);
    _exit(127);
  }
  // Kill it as soon as some (not all) nodes are done.
  int done = 0;
  for (int i = 0; i < 600 && done < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    done = 0;
    if (fs::exists(out + "/events.jsonl")) {
      std::ifstream in(out + "/events.jsonl");
      for (std::string line; std::getline(in, line);)
        done += line.find("\"event\":\"done\"") != std::string::npos;
    }
  }
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  int artifacts = 0;
  for (const auto& e : fs::directory_iterator(out + "/store"))
    artifacts += e.is_directory() && e.path().filename().string()[0] != '.';
  EXPECT_GE(artifacts, 3);
  EXPECT_LT(artifacts, 12);

  const auto resumed = run_once(yaml, out, 1);
  EXPECT_EQ(resumed.cached, artifacts);    // nothing finished is redone
  EXPECT_EQ(resumed.ran, 12 - artifacts);  // at most the in-flight node is redone
  EXPECT_EQ(results_of(out), results_of(dir + "/reference"));
  for (const auto& e : fs::directory_iterator(out + "/store"))
    EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << "temporary left behind";
}

TEST(Sweep, AFailingVariantFailsOnlyItsDescendants) {
  const std::string dir = test::make_temp_dir("fail");
  std::ofstream(dir + "/tiny.txt") << "def f():\n    return 1\n";  // far too short
  std::string yaml = sweep_yaml();
  yaml.replace(
      yaml.find("calibration:\n"), 13,
      "calibration:\n  short: {source: " + dir + "/tiny.txt, n_samples: 4, seqlen: 128}\n");
  yaml.replace(yaml.find("eval:"), 5,
               "  - {method: gptq, bits: 3, group_size: 64, calibration: short}\neval:");
  const auto s = run_once(write_yaml(dir, yaml), dir + "/out");
  EXPECT_EQ(s.failed, 1);   // calib:short
  EXPECT_EQ(s.skipped, 3);  // its quantize node and two evaluations
  EXPECT_EQ(s.ran, 12);     // everything else
  const json r = results_of(dir + "/out");
  bool found = false;
  for (const auto& v : r["variants"]) {
    if (v["calibration"] == "short") {
      found = true;
      EXPECT_EQ(v["status"], "skipped");
      EXPECT_NE(v["error"].get<std::string>().find("calib:short"), std::string::npos) << v["error"];
    } else {
      EXPECT_EQ(v["status"], "ok") << v["id"];
    }
  }
  EXPECT_TRUE(found);
  // The failure is listed in the report with its error.
  const std::string md = read_text_file(dir + "/out/table.md");
  EXPECT_NE(md.find("calib:short"), std::string::npos);
  const std::string ev = read_text_file(dir + "/out/events.jsonl");
  EXPECT_NE(ev.find("random windows of 128 tokens need more"), std::string::npos)
      << "the calibration error says why";
}

TEST(Sweep, KQuantMixVariantsAreGgufFilesEvaluatedAsWritten) {
  const std::string dir = test::make_temp_dir("sweep-kq");
  const std::string yaml = write_yaml(
      dir, "name: kq\nmodel: " + test::tinycode_dir() +
               "\ncalibration:\n  code: {source: code, n_samples: 4, seqlen: 128, seed: 0}\n"
               "variants:\n  - {method: q2_k}\n  - {method: q2_k, calibration: code}\n"
               "eval:\n  - {task: perplexity, dataset: code-heldout, protocol: chunks, ctx: "
               "128, max_tokens: 2048}\n");
  const SweepRunSummary sum = run_once(yaml, dir + "/out");
  EXPECT_EQ(sum.failed, 0);
  // 1 calibration + 2 quantize + 3 evals
  EXPECT_EQ(sum.ran, 6);
  const json r = results_of(dir + "/out");
  std::map<std::string, json> by_id;
  for (const auto& v : r["variants"]) by_id[v["id"]] = v;
  ASSERT_TRUE(by_id.count("q2_k") && by_id.count("q2_k-imat-code"));
  const json& plain = by_id["q2_k"];
  const json& imat = by_id["q2_k-imat-code"];
  EXPECT_EQ(plain["status"], "ok");
  EXPECT_EQ(plain["label"], "Q2_K");
  EXPECT_EQ(imat["label"], "Q2_K imatrix (code)");
  EXPECT_EQ(plain["bits"], 2);
  EXPECT_TRUE(plain["group_size"].is_null());
  // tinycode's GGUF: Q2_K mix on linears (attn_v Q3_K with GQA 2, ffn_down/attn_output Q3_K):
  // strictly between Q2_K's 2.625 and Q3_K's 3.4375 bits per weight.
  EXPECT_GT(plain["bits_per_weight"].get<double>(), 2.625);
  EXPECT_LT(plain["bits_per_weight"].get<double>(), 3.4375);
  EXPECT_EQ(plain["size_bytes"], imat["size_bytes"]);
  // The eval scored the GGUF file the node wrote: re-evaluating that file gives the same value.
  const SweepSpec spec = parse_sweep(yaml);
  const SweepPlan plan = make_sweep_plan(spec, spec.model, test::data_dir());
  std::string gguf;
  for (const auto& n : plan.nodes)
    if (n.id == "quantize:q2_k") gguf = dir + "/out/store/" + n.key + "/model/model.gguf";
  ASSERT_TRUE(fs::exists(gguf)) << gguf;
  LoadedModel m = load_model(gguf);
  EXPECT_EQ(m.format, "gguf");
  const Transformer t(m.spec, std::move(m.weights));
  const auto tok = load_tokenizer(test::tinycode_dir());
  PerplexityOptions po;
  po.ctx = 128;
  po.max_tokens = 2048;
  const double want =
      evaluate_perplexity(
          t, tok->encode(read_text_file(test::data_dir() + "/code/heldout.txt"), false), po)
          .perplexity;
  const std::string eid = r["evals"][0]["id"];
  EXPECT_DOUBLE_EQ(plain["metrics"][eid]["value"].get<double>(), want);
  EXPECT_NE(plain["metrics"][eid]["value"], imat["metrics"][eid]["value"]);
}

// Issue #19 through the real stages: a sensitivity node measures every group on windows held
// out from the calibration node's, and the auto_mix node chooses from exactly that table.
TEST(Sweep, AutoMixChoosesFromTheSensitivityNodeMeasuredOnHeldOutWindows) {
  const std::string dir = test::make_temp_dir("sweep-sens");
  const std::string yaml = write_yaml(
      dir, "name: sens\nmodel: " + test::tinycode_dir() +
               "\ncalibration:\n  code: {source: code, n_samples: 4, seqlen: 128, seed: 0}\n"
               "sensitivity: {types: [q8_0], n_samples: 2, seqlen: 32}\n"
               "variants:\n  - {method: auto_mix, budget_bpw: 8.6}\n"
               "eval:\n  - {task: perplexity, dataset: code-heldout, protocol: chunks, ctx: "
               "128, max_tokens: 1024}\n");
  const SweepRunSummary sum = run_once(yaml, dir + "/out");
  EXPECT_EQ(sum.failed, 0);
  EXPECT_EQ(sum.ran, 5);  // calib, sensitivity, quantize, 2 evals
  const SweepSpec spec = parse_sweep(yaml);
  const SweepPlan plan = make_sweep_plan(spec, spec.model, test::data_dir());
  std::map<std::string, std::string> art;
  for (const auto& n : plan.nodes) art[n.id] = dir + "/out/store/" + n.key;
  const json calib = json::parse(read_text_file(art["calib:code"] + "/meta.json"));
  const json sens = json::parse(read_text_file(art["sensitivity:code:q8_0"] + "/sensitivity.json"));
  ASSERT_EQ(sens["offsets"].size(), 2u);
  for (const auto& o : sens["offsets"])
    for (const auto& c : calib["offsets"]) {
      const int64_t a = o.get<int64_t>(), b = c.get<int64_t>();
      EXPECT_TRUE(a + 32 <= b || b + 128 <= a)
          << "held-out window at " << a << " overlaps the calibration window at " << b;
    }
  ASSERT_EQ(sens["measurements"].size(), 44u);
  std::map<std::string, double> kl;
  for (const auto& m : sens["measurements"]) kl[m["name"]] = m["kl"];
  const json meta =
      json::parse(read_text_file(art["quantize:auto_mix-bpw8.6-code"] + "/meta.json"));
  EXPECT_EQ(meta["auto_mix"]["study_offsets"], sens["offsets"]);
  int q8 = 0;
  for (const auto& c : meta["auto_mix"]["choices"]) {
    if (c["type"] != "Q8_0") continue;
    ++q8;
    EXPECT_EQ(c["kl"].get<double>(), kl.at(c["name"])) << c["name"];
  }
  EXPECT_GT(q8, 30);  // 8.6 bits per weight: nearly all Q8_0, the rest F16
  const json r = results_of(dir + "/out");
  ASSERT_EQ(r["sensitivity"].size(), 1u);
  EXPECT_EQ(r["sensitivity"][0]["measurements"].size(), 44u);
}

TEST(Sweep, TaskEvalsRunSkipAndStoreTheKlBaselineOnce) {
  const std::string dir = test::make_temp_dir("sweep-tasks");
  // A 2-question MMLU in the upstream layout (no header; question,A,B,C,D,answer).
  fs::create_directories(dir + "/mmlu/dev");
  fs::create_directories(dir + "/mmlu/test");
  std::ofstream(dir + "/mmlu/dev/anatomy_dev.csv") << "What is 1+1?,1,2,3,4,B\n";
  std::ofstream(dir + "/mmlu/test/anatomy_test.csv")
      << "What is 2+2?,4,5,6,7,A\n\"Pick C, \"\"please\"\"\",x,y,z,w,C\n";
  // HumanEval needs the process sandbox (user namespaces); where the machine has none the
  // task is left out here (tests/eval covers the refusal).
  const bool sandbox = probe_sandbox().usable;
  const std::string humaneval =
      sandbox ? "  - {task: humaneval, limit: 2, max_new_tokens: 16}\n" : "";
  const std::string yaml = write_yaml(
      dir, "name: tasks\nmodel: " + test::tinycode_dir() +
               "\nvariants:\n  - {method: rtn, bits: 3, group_size: 128}\neval:\n"
               "  - {task: kld, dataset: code-heldout, ctx: 128, max_tokens: 1024}\n"
               "  - {task: line_completion, limit: 4, max_new_tokens: 16}\n" +
               humaneval + "  - {task: mmlu, dataset: " + dir +
               "/mmlu, shots: 1}\n  - {task: mbpp, dataset: " + dir + "/no-such-mbpp.jsonl}\n");
  const SweepRunSummary sum = run_once(yaml, dir + "/out");
  EXPECT_EQ(sum.failed, 0);
  EXPECT_EQ(sum.ran, sandbox ? 11 : 9);  // 1 quantize + 2 x 5 (4) evals
  const json r = results_of(dir + "/out");
  std::map<std::string, json> by_id;
  for (const auto& v : r["variants"]) by_id[v["id"]] = v;
  const json& base = by_id["fp16"]["metrics"];
  const json& rtn = by_id["rtn-b3-g128"]["metrics"];
  const std::string kld = "kld-code-heldout-ctx128-n1024";
  EXPECT_EQ(base[kld]["value"], 0.0);  // the baseline against its own stored top-k
  EXPECT_EQ(base[kld]["top1_agreement_pct"], 100.0);
  EXPECT_GT(rtn[kld]["value"].get<double>(), 0.0);
  EXPECT_LT(rtn[kld]["top1_agreement_pct"].get<double>(), 100.0);
  EXPECT_EQ(rtn[kld]["items"], 1016);  // 8 windows x 127 scored positions
  const std::string lc = "linecomp-code-heldout-l4-m16";
  EXPECT_EQ(rtn[lc]["items"], 4);
  if (sandbox) {
    EXPECT_EQ(rtn["humaneval-humaneval-l2-m16"]["items"], 2);
    EXPECT_EQ(rtn["humaneval-humaneval-l2-m16"]["status"], "ok");
  }
  // MMLU: the hand-made set, scored. The expected accuracy is computed here, outside the
  // pipeline: the FP16 model's log-likelihood of ' A'..' D' after each 1-shot prompt, argmax
  // against the answer letter.
  std::string mmlu;
  for (const auto& e : r["evals"])
    if (e["task"] == "mmlu") mmlu = e["id"];
  EXPECT_EQ(base[mmlu]["items"], 2);
  {
    LoadedModel m = load_model(test::tinycode_dir());
    const Transformer t(m.spec, std::move(m.weights));
    const auto tok = load_tokenizer(test::tinycode_dir());
    const LoglikelihoodScorer scorer = make_transformer_scorer(t, *tok);
    McOptions mo;
    mo.shots = 1;
    const std::vector<McSubject> subjects = load_mc_subjects(McBenchmark::Mmlu, dir + "/mmlu", mo);
    ASSERT_EQ(subjects.size(), 1u);
    ASSERT_EQ(subjects[0].eval.size(), 2u);
    const auto letters = mc_continuations(McBenchmark::Mmlu);
    int correct = 0;
    for (const McQuestion& q : subjects[0].eval) {
      const std::vector<double> ll = scorer.loglikelihood(
          mc_build_context(McBenchmark::Mmlu, subjects[0], 1, q), {letters.begin(), letters.end()});
      ASSERT_EQ(ll.size(), 4u);
      correct += int(std::max_element(ll.begin(), ll.end()) - ll.begin()) == q.answer;
    }
    EXPECT_DOUBLE_EQ(base[mmlu]["value"].get<double>(), 100.0 * correct / 2);
  }
  // Absent data: skipped with the path, no value, the sweep goes on.
  std::string mbpp;
  for (const auto& e : r["evals"])
    if (e["task"] == "mbpp") mbpp = e["id"];
  EXPECT_TRUE(rtn[mbpp]["value"].is_null());
  EXPECT_NE(rtn[mbpp]["status"].get<std::string>().find("no-such-mbpp.jsonl not found"),
            std::string::npos);
  const std::string md = read_text_file(dir + "/out/table.md");
  EXPECT_NE(md.find("(the task did not run)"), std::string::npos);
  // One stored baseline; nothing reruns.
  int baselines = 0;
  for (const auto& f : fs::recursive_directory_iterator(dir + "/out/store"))
    baselines += f.path().filename() == "baseline.kld";
  EXPECT_EQ(baselines, 1);  // written by the baseline's kld node only; variants read it
  EXPECT_EQ(run_once(yaml, dir + "/out").ran, 0);
}

TEST(Sweep, MalformedYamlIsRefusedBeforeAnyWork) {
  const std::string dir = test::make_temp_dir("bad");
  std::string yaml = sweep_yaml();
  yaml.replace(yaml.find("group_size: 64"), 14, "grup_size: 64");
  const std::string p = write_yaml(dir, yaml);
  try {
    run_once(p, dir + "/out");
    ADD_FAILURE();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p + ":7:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("group_size"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(dir + "/out"));
}

}  // namespace
}  // namespace qsweep
