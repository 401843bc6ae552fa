// The sweep-file parser's limits (issue #13): matrix size counted before expansion,
// one YAML document, bounded nesting; each refused fast at its file:line:column.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "common/errors.h"
#include "pipeline/spec.h"
#include "tests/pipeline/sweep_error.h"

namespace qsweep {
namespace {

using test::error_of;

// As in spec_test.cpp: lines 1-8, a test's variants start at line 9.
const std::string kHead =
    "name: t\n"
    "model: tinycode\n"
    "calibration:\n"
    "  code: {source: code}\n"
    "  wiki: {source: wikitext2}\n"
    "eval:\n"
    "  - {task: perplexity, dataset: wikitext2}\n"
    "variants:\n";

// Lines 1-4; a test's eval entries start at line 5.
const std::string kEvalHead =
    "name: t\n"
    "model: tinycode\n"
    "variants: [{method: rtn}]\n"
    "eval:\n";

/// "[lo, lo+1, ..., lo+n-1]".
std::string range_list(int lo, int n) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(lo + i);
  return s + "]";
}

/// Seconds `f` takes.
template <typename F>
double seconds_of(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(SweepLimits, AMatrixPastTheLimitIsRefusedBeforeExpansionWithItsCount) {
  // 8 axes of 10 values: 10^8 evaluations (used to end in std::bad_alloc).
  const std::string e8 = "  - {task: perplexity, dataset: d, ctx: " + range_list(2, 10) +
                         ", stride: " + range_list(1, 10) + ", max_tokens: " + range_list(0, 10) +
                         ", top_k: " + range_list(1, 10) + ", limit: " + range_list(0, 10) +
                         ", seed: " + range_list(0, 10) + ", shots: " + range_list(0, 10) +
                         ", samples: " + range_list(1, 10) + "}\n";
  std::string msg;
  EXPECT_LT(seconds_of([&] { msg = error_of(kEvalHead + e8); }), 2.0);
  EXPECT_EQ(msg,
            "s.yaml:5:5: this eval entry expands to 100000000 combinations (10 ctx x 10 stride x "
            "10 max_tokens x 10 top_k x 10 limit x 10 seed x 10 shots x 10 samples); a sweep may "
            "have at most 10000 evaluations: split it into several sweeps "
            "(docs/sweep-format.md, Limits)");
  // 7 axes of 1000 values: 10^21 > 2^64, so a 64-bit product would wrap around.
  const std::string e21 =
      "  - {task: perplexity, dataset: d, ctx: " + range_list(2, 1000) +
      ", stride: " + range_list(1, 1000) + ", max_tokens: " + range_list(0, 1000) +
      ", top_k: " + range_list(1, 1000) + ", limit: " + range_list(0, 1000) +
      ", seed: " + range_list(0, 1000) + ", max_new_tokens: " + range_list(1, 1000) + "}\n";
  EXPECT_LT(seconds_of([&] { msg = error_of(kEvalHead + e21); }), 2.0);
  EXPECT_EQ(msg.substr(0, msg.find(" (1000 ctx")),
            "s.yaml:5:5: this eval entry expands to more than 2^64 (about 1e+21) combinations");
  // Variants too, and the limit counts every entry of the section: 6000 + 6000 > 10000.
  const std::string v6000 =
      "  - {method: rtn, bits: [2, 3, 4], group_size: " + range_list(1, 2000) + "}\n";
  const std::string v6000b =
      "  - {method: rtn, bits: [5, 6, 7], group_size: " + range_list(1, 2000) + "}\n";
  EXPECT_EQ(error_of(kHead + v6000 + v6000b),
            "s.yaml:10:5: this variant expands to 6000 combinations (3 bits x 2000 group_size), "
            "after 6000 from the entries above; a sweep may have at most 10000 variants: split it "
            "into several sweeps (docs/sweep-format.md, Limits)");
}

TEST(SweepLimits, AMatrixAtTheLimitIsAcceptedAndOnePastItIsNot) {
  // 5 x 2000 = 10000 variants, exactly the limit: parsed (nothing runs).
  const std::string v =
      "  - {method: rtn, bits: [2, 3, 4, 5, 6], group_size: " + range_list(1, 2000) + "}\n";
  const SweepSpec s = parse_sweep_text(kHead + v, "s.yaml");
  EXPECT_EQ(s.variants.size(), 10000u);
  EXPECT_EQ(s.variants.back().id, "rtn-b6-g2000");
  // One include more is one past it.
  const std::string v1 =
      "  - {method: rtn, bits: [2, 3, 4, 5, 6], group_size: " + range_list(1, 2000) +
      ", include: [{bits: 7, group_size: 64}]}\n";
  EXPECT_EQ(error_of(kHead + v1).substr(0, 88),
            "s.yaml:9:5: this variant expands to 10000 combinations (5 bits x 2000 group_size) "
            "plus 1");
  // Variants and evaluations within their limits, but (variants + baseline) x evals past
  // 100000 evaluation runs.
  std::string evals;
  for (int i = 1; i <= 20; ++i)
    evals += "  - {task: perplexity, dataset: wikitext2, max_tokens: " + std::to_string(i) + "}\n";
  const std::string many =
      "name: t\nmodel: tinycode\nvariants:\n  - {method: rtn, bits: [2, 3, "
      "4, 5, 6], group_size: " +
      range_list(1, 1000) + "}\neval:\n" + evals;
  EXPECT_EQ(error_of(many),
            "s.yaml:5:1: (5000 variants + the baseline) x 20 evaluations = 100020 evaluation "
            "runs; a sweep may have at most 100000: split it into several sweeps "
            "(docs/sweep-format.md, Limits)");
}

TEST(SweepFile, ASecondYamlDocumentIsRefusedAtItsLine) {
  // kHead is lines 1-8, the variant line 9, the second document's '---' line 10.
  const std::string one = kHead + "  - {method: rtn}\n";
  EXPECT_EQ(error_of(one + "---\nname: other\n"),
            "s.yaml:10:1: a second YAML document starts here; a sweep file is one document "
            "(remove the '---' line and what follows, or put it in a file of its own)");
  EXPECT_EQ(error_of(one + "---\n").substr(0, 42), "s.yaml:10:1: a second YAML document starts");
  EXPECT_EQ(error_of(one + "...\n---\n# nothing\n").substr(0, 42),
            "s.yaml:11:1: a second YAML document starts");
  // One document with explicit markers is fine.
  EXPECT_EQ(parse_sweep_text("---\n" + one + "...\n", "s.yaml").variants.size(), 1u);
}

TEST(SweepFile, NestingDeeperThan64LevelsIsRefusedAtItsPosition) {
  // The top-level map is level 1, so the 64th '[' opens level 65. "variants: " is 10 columns.
  const std::string head = "name: t\nmodel: tinycode\nvariants: ";
  const std::string msg =
      ": maps and lists nest deeper than 64 levels here; a sweep file needs a few "
      "(docs/sweep-format.md, Limits)";
  std::string deep = head + std::string(100000, '[') + std::string(100000, ']') + "\n";
  std::string got;
  EXPECT_LT(seconds_of([&] { got = error_of(deep); }), 2.0);
  EXPECT_EQ(got, "s.yaml:3:74" + msg);
  std::string maps = head;
  for (int i = 0; i < 100000; ++i) maps += "{a: ";
  maps += "1" + std::string(100000, '}') + "\n";
  EXPECT_EQ(error_of(maps), "s.yaml:3:" + std::to_string(10 + 63 * 4 + 1) + msg);
  // Block lists: "- " at indent i on line 4 + i is level i + 2; level 65 is on line 67.
  std::string block = "name: t\nmodel: tinycode\nvariants:\n";
  for (int i = 0; i < 1000; ++i) block += std::string(size_t(i), ' ') + "-\n";
  EXPECT_EQ(error_of(block), "s.yaml:67:64" + msg);
  // Compact nested lists on one line: "- " repeated.
  std::string compact = "name: t\nmodel: tinycode\nvariants:\n";
  for (int i = 0; i < 100000; ++i) compact += "- ";
  EXPECT_EQ(error_of(compact + "x\n"), "s.yaml:4:" + std::to_string(63 * 2 + 1) + msg);
  // 64 levels are allowed (the error is then about the content).
  const std::string at_limit = head + std::string(63, '[') + std::string(63, ']') + "\n";
  EXPECT_EQ(error_of(at_limit).find("nest deeper"), std::string::npos) << error_of(at_limit);
}

// Issue #20: several calibration seeds in one entry.
TEST(SweepSpec, CalibrationSeedsListsReplicates) {
  const std::string tail =
      "variants: [{method: gptq, bits: 4}]\neval: [{task: perplexity, dataset: d}]\n";
  const SweepSpec s = parse_sweep_text(
      "name: t\nmodel: m\ncalibration:\n  code: {source: code, seeds: [3, 1, 2]}\n" + tail,
      "s.yaml");
  const CalibrationSpec& c = s.calibration.at("code");
  EXPECT_EQ(c.seeds, (std::vector<uint64_t>{3, 1, 2}));  // file order
  EXPECT_EQ(c.seed, 3u);
  EXPECT_TRUE(c.replicated());
  // `seed: 7` is the one-seed list; no replicates.
  const SweepSpec one = parse_sweep_text(
      "name: t\nmodel: m\ncalibration:\n  code: {source: code, seed: 7}\n" + tail, "s.yaml");
  EXPECT_EQ(one.calibration.at("code").seeds, (std::vector<uint64_t>{7}));
  EXPECT_FALSE(one.calibration.at("code").replicated());
  EXPECT_EQ(error_of("name: t\nmodel: m\ncalibration:\n  code: {source: code, seed: 0, seeds: "
                     "[0, 1]}\n" +
                     tail),
            "s.yaml:4:24: calibration 'code' gives both 'seed' and 'seeds' (at 4:33): keep one");
  EXPECT_NE(
      error_of("name: t\nmodel: m\ncalibration:\n  code: {source: code, seeds: [0, 0]}\n" + tail)
          .find("s.yaml:4:"),
      std::string::npos);
  EXPECT_NE(
      error_of("name: t\nmodel: m\ncalibration:\n  code: {source: code, seeds: [-1]}\n" + tail)
          .find("s.yaml:4:"),
      std::string::npos);
}

}  // namespace
}  // namespace qsweep
