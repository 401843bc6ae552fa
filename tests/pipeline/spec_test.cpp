// Sweep-file parser: the issue's example, matrix expansion, id rules, every error's file:line:col.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/errors.h"
#include "pipeline/spec.h"
#include "tests/pipeline/sweep_error.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

using test::error_of;

std::vector<std::string> variant_ids(const SweepSpec& s) {
  std::vector<std::string> ids;
  for (const auto& v : s.variants) ids.push_back(v.id);
  return ids;
}

std::vector<std::string> eval_ids(const SweepSpec& s) {
  std::vector<std::string> ids;
  for (const auto& e : s.evals) ids.push_back(e.id);
  return ids;
}

const char* const kExample = R"(name: tinycode-bitwidths
model: tinycode                     # a name in the data directory, or a path to an HF dir / GGUF file
baseline: fp16
calibration:
  code: {source: code, n_samples: 128, seqlen: 256, seed: 0}
  wiki: {source: wikitext2, n_samples: 128, seqlen: 256, seed: 0}
variants:
  - {method: gptq, bits: [3, 4, 8], group_size: [64, 128], desc_act: [false, true], calibration: [code, wiki]}
  - {method: rtn, bits: [4, 8], group_size: 128}
eval:
  - {task: perplexity, dataset: wikitext2, protocol: chunks, ctx: 256, max_tokens: 32768}
  - {task: perplexity, dataset: code-heldout, protocol: chunks, ctx: 256}
report:
  formats: [md, csv, json, html]
  acceptable: {yes: 1.05, usually: 1.12, marginal: 1.20}   # relative-perplexity bounds
)";

// Lines 1-8; a test's variants start at line 9.
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

TEST(SweepSpec, IssueExampleExpandsTo26Variants) {
  const SweepSpec s = parse_sweep_text(kExample, "example.yaml");
  EXPECT_EQ(s.file, "example.yaml");
  EXPECT_EQ(s.name, "tinycode-bitwidths");
  EXPECT_EQ(s.model, "tinycode");
  EXPECT_EQ(s.baseline, "fp16");
  ASSERT_EQ(s.calibration.size(), 2u);
  EXPECT_EQ(s.calibration.at("wiki").source, "wikitext2");
  EXPECT_EQ(s.calibration.at("code").seqlen, 256);

  std::vector<std::string> want;
  for (const char* b : {"3", "4", "8"})
    for (const char* g : {"64", "128"})
      for (const char* act : {"", "-act"})
        for (const char* cal : {"code", "wiki"})
          want.push_back(std::string("gptq-b") + b + "-g" + g + act + "-" + cal);
  want.push_back("rtn-b4-g128");
  want.push_back("rtn-b8-g128");
  EXPECT_EQ(variant_ids(s), want);
  ASSERT_EQ(s.variants.size(), 26u);
  EXPECT_EQ(s.variants[0].source_line, 8);
  EXPECT_EQ(s.variants[25].source_line, 9);
  EXPECT_TRUE(s.variants[2].config.gptq()->desc_act);
  EXPECT_EQ(s.variants[2].calibration, "code");
  EXPECT_EQ(s.variants[25].calibration, "");

  EXPECT_EQ(eval_ids(s), (std::vector<std::string>{"ppl-wikitext2-chunks-ctx256-n32768",
                                                   "ppl-code-heldout-chunks-ctx256"}));
  EXPECT_EQ(s.evals[0].max_tokens, 32768);
  EXPECT_EQ(s.report.formats, (std::vector<std::string>{"md", "csv", "json", "html"}));
  EXPECT_DOUBLE_EQ(s.report.yes, 1.05);  // the key `yes` is read as a string, not a boolean
  EXPECT_DOUBLE_EQ(s.report.usually, 1.12);
  EXPECT_DOUBLE_EQ(s.report.marginal, 1.20);
}

TEST(SweepSpec, EveryShippedConfigParses) {
  namespace fs = std::filesystem;
  int n = 0;
  for (const auto& f : fs::directory_iterator(std::string(QSWEEP_SOURCE_DIR) + "/configs")) {
    if (f.path().extension() != ".yaml") continue;
    SCOPED_TRACE(f.path().string());
    EXPECT_NO_THROW(parse_sweep(f.path().string()));
    ++n;
  }
  EXPECT_GT(n, 0);
}

TEST(SweepSpec, DefaultsOfAMinimalSweep) {
  const SweepSpec s = parse_sweep_text(
      "name: m\nmodel: /models/x\nvariants: [{method: rtn}]\neval: [{task: perplexity, "
      "dataset: ./data/my  eval.txt}]\n",
      "m.yaml");
  ASSERT_EQ(s.variants.size(), 1u);
  const VariantSpec& v = s.variants[0];
  EXPECT_EQ(v.id, "rtn-b4-g128");
  EXPECT_EQ(v.config.bits(), 4);
  EXPECT_EQ(v.config.group_size(), 128);
  EXPECT_FALSE(v.config.sym());
  EXPECT_EQ(v.source_line, 3);
  ASSERT_EQ(s.evals.size(), 1u);
  EXPECT_EQ(s.evals[0].id, "ppl-data_my_eval.txt-chunks-ctxmax");
  EXPECT_EQ(s.evals[0].ctx, 0);
  EXPECT_EQ(s.evals[0].protocol, "chunks");
  EXPECT_EQ(s.report.formats.size(), 4u);
  EXPECT_TRUE(s.calibration.empty());
}

TEST(SweepSpec, KQuantMixesTakeAnOptionalImatrixCalibration) {
  const SweepSpec s = parse_sweep_text(
      kHead + "  - {method: [q2_k, q3_k_m], calibration: [code, wiki]}\n  - {method: q8_0}\n",
      "s.yaml");
  EXPECT_EQ(variant_ids(s),
            (std::vector<std::string>{"q2_k-imat-code", "q2_k-imat-wiki", "q3_k_m-imat-code",
                                      "q3_k_m-imat-wiki", "q8_0"}));
  EXPECT_EQ(s.variants[2].config.bits(), 3);
  EXPECT_EQ(s.variants[4].config.bits(), 8);
  EXPECT_EQ(s.variants[4].calibration, "");  // no imatrix unless asked for
  EXPECT_EQ(s.variants[0].config.group_size(), 0);
}

TEST(SweepSpec, VariantIdNamesEveryNonDefaultField) {
  const SweepSpec s = parse_sweep_text(
      kHead +
          "  - {method: gptq, bits: 3, group_size: -1, sym: true, true_sequential: false, "
          "damp_percent: 0.1, calibration: wiki}\n"
          "  - {method: gptq, desc_act: true, static_groups: true, damp_percent: 0.010, "
          "calibration: code}\n"
          "  - {method: rtn, bits: 2, group_size: 32, sym: True}\n",
      "s.yaml");
  EXPECT_EQ(variant_ids(s),
            (std::vector<std::string>{"gptq-b3-gch-sym-nts-damp0.1-wiki",
                                      "gptq-b4-g128-act-static-code", "rtn-b2-g32-sym"}));
  EXPECT_EQ(s.variants[0].config.group_size(), -1);
  EXPECT_FALSE(s.variants[0].config.gptq()->true_sequential);
  EXPECT_DOUBLE_EQ(s.variants[0].config.gptq()->damp_percent, 0.1);
  EXPECT_TRUE(s.variants[1].config.gptq()->static_groups);
}

TEST(SweepSpec, VariantIdIsTheConfigIdPlusTheCalibration) {
  GptqOptions g;
  EXPECT_EQ(variant_id(QuantMethodConfig{Method::Gptq, g}, "code"), "gptq-b4-g128-code");
  EXPECT_EQ(variant_id(QuantMethodConfig::defaults(Method::Q4_K_M), "code"), "q4_k_m-imat-code");
  EXPECT_EQ(variant_id(QuantMethodConfig::defaults(Method::Q4_K_M), ""), "q4_k_m");
  EXPECT_EQ(variant_id(QuantMethodConfig{Method::Rtn, RtnOptions{3, 128, false}}, ""),
            "rtn-b3-g128");
}

TEST(SweepSpec, TheOnlyCalibrationSetIsTheDefault) {
  const SweepSpec s = parse_sweep_text(
      "name: t\nmodel: m\ncalibration: {c4: {source: docs, sampling: contiguous, seed: 7}}\n"
      "variants: [{method: gptq, bits: [4, 8]}]\neval: [{task: perplexity, dataset: d}]\n",
      "s.yaml");
  EXPECT_EQ(variant_ids(s), (std::vector<std::string>{"gptq-b4-g128-c4", "gptq-b8-g128-c4"}));
  EXPECT_EQ(s.calibration.at("c4").sampling, "contiguous");
  EXPECT_EQ(s.calibration.at("c4").seed, 7u);
}

TEST(SweepSpec, GptqWithoutCalibrationWhenTwoAreDefined) {
  EXPECT_EQ(error_of(kHead + "  - {method: gptq, bits: 4}\n"),
            "s.yaml:9:14: method 'gptq' needs a calibration set: add 'calibration: <name>' (one "
            "of code or wiki)");
  EXPECT_EQ(error_of("name: t\nmodel: m\nvariants:\n  - method: gptq\neval: [{task: perplexity, "
                     "dataset: d}]\n"),
            "s.yaml:4:13: method 'gptq' needs a calibration set: add 'calibration: <name>' and a "
            "'calibration:' section");
}

// --- include / exclude -------------------------------------------------------------------

TEST(SweepMatrix, ExcludeRemovesEveryMatchingCombination) {
  const SweepSpec s = parse_sweep_text(kHead +
                                           "  - method: gptq\n"
                                           "    bits: [3, 4]\n"
                                           "    group_size: [64, 128]\n"
                                           "    calibration: [code, wiki]\n"
                                           "    exclude:\n"
                                           "      - {bits: 3, calibration: wiki}\n"
                                           "      - {group_size: 64, calibration: code}\n",
                                       "s.yaml");
  EXPECT_EQ(variant_ids(s), (std::vector<std::string>{"gptq-b3-g128-code", "gptq-b4-g64-wiki",
                                                      "gptq-b4-g128-code", "gptq-b4-g128-wiki"}));
}

TEST(SweepMatrix, ExcludeErrors) {
  // A key the entry does not list.
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, bits: [4, 8], exclude: [{group_size: 128}]}\n"),
            "s.yaml:9:44: exclude key 'group_size' is not a key of this variant; exclude can only "
            "remove values the variant lists");
  // A value that matches nothing (a typo would otherwise exclude nothing).
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, bits: [4, 8], exclude: [{bits: 5}]}\n"),
            "s.yaml:9:43: exclude entry matches no combination of this variant");
  // A misspelt key in the exclude entry.
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, bits: [4, 8], exclude: [{bist: 4}]}\n"),
            "s.yaml:9:44: unknown key 'bist' in exclude entry of variant; did you mean 'bits'?");
  // Excluding everything.
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, bits: [4, 8], exclude: [{method: rtn}]}\n"),
            "s.yaml:9:5: this variant expands to nothing: exclude removes every combination");
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, bits: [4, 8], exclude: {bits: 4}}\n"),
            "s.yaml:9:42: 'exclude' must be a non-empty list of maps, got a map");
}

TEST(SweepMatrix, IncludeExtendsMatchingCombinationsOrAddsNewOnes) {
  const SweepSpec s = parse_sweep_text(kHead +
                                           "  - method: gptq\n"
                                           "    bits: [4, 8]\n"
                                           "    calibration: code\n"
                                           "    include:\n"
                                           "      - {bits: 8, damp_percent: 0.1}\n"  // extends
                                           "      - {sym: true}\n"  // no matrix key: extends all
                                           "      - {bits: 3, group_size: 32}\n"      // new
                                           "      - {calibration: wiki, bits: 4}\n",  // new
                                       "s.yaml");
  EXPECT_EQ(variant_ids(s),
            (std::vector<std::string>{"gptq-b4-g128-sym-code", "gptq-b8-g128-sym-damp0.1-code",
                                      "gptq-b3-g32-code", "gptq-b4-g128-wiki"}));
  // A new combination keeps the entry's single values (method, calibration) and says where
  // it came from.
  EXPECT_EQ(s.variants[2].config.method, Method::Gptq);
  EXPECT_EQ(s.variants[0].source_line, 9);
  EXPECT_EQ(s.variants[2].source_line, 15);
}

TEST(SweepMatrix, TheDocumentedExample) {
  // docs/sweep-format.md, "Matrix expansion, exclude and include".
  const SweepSpec s = parse_sweep_text(kHead +
                                           "  - method: gptq\n"
                                           "    calibration: code\n"
                                           "    bits: [3, 4]\n"
                                           "    group_size: [64, 128]\n"
                                           "    desc_act: [false, true]\n"
                                           "    exclude:\n"
                                           "      - {bits: 3, desc_act: true}\n"
                                           "    include:\n"
                                           "      - {bits: 4, group_size: 128, damp_percent: 0.1}\n"
                                           "      - {bits: 2, group_size: 32}\n",
                                       "s.yaml");
  EXPECT_EQ(variant_ids(s),
            (std::vector<std::string>{"gptq-b3-g64-code", "gptq-b3-g128-code", "gptq-b4-g64-code",
                                      "gptq-b4-g64-act-code", "gptq-b4-g128-damp0.1-code",
                                      "gptq-b4-g128-act-damp0.1-code", "gptq-b2-g32-code"}));
}

TEST(SweepMatrix, IncludeValuesAreSingle) {
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, bits: [4, 8], include: [{bits: [2, 3]}]}\n"),
            "s.yaml:9:50: 'bits' must be an integer 2..8, got a list");
}

TEST(SweepMatrix, ListsInEvalEntriesExpandToo) {
  const SweepSpec s =
      parse_sweep_text(kEvalHead +
                           "  - {task: perplexity, dataset: [wikitext2, code], ctx: [128, 256], "
                           "exclude: [{dataset: code, ctx: 128}]}\n",
                       "s.yaml");
  EXPECT_EQ(eval_ids(s),
            (std::vector<std::string>{"ppl-wikitext2-chunks-ctx128", "ppl-wikitext2-chunks-ctx256",
                                      "ppl-code-chunks-ctx256"}));
}

// --- errors, each at its exact place ------------------------------------------------------

TEST(SweepErrors, UnknownKeySuggestsTheClosest) {
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, grup_size: 128}\n"),
            "s.yaml:9:19: unknown key 'grup_size' in variant; did you mean 'group_size'?");
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, colour: red}\n"),
            "s.yaml:9:19: unknown key 'colour' in variant");
  EXPECT_EQ(error_of("name: t\nmodel: m\nvariants: [{method: rtn}]\nevals: []\n"),
            "s.yaml:4:1: unknown key 'evals' in the sweep file; did you mean 'eval'?");
  EXPECT_EQ(error_of("name: t\nmodel: m\ncalibration:\n  code: {sorce: code}\n"),
            "s.yaml:4:10: unknown key 'sorce' in calibration 'code'; did you mean 'source'?");
}

TEST(SweepErrors, WrongTypesPointAtTheValue) {
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, bits: four}\n"),
            "s.yaml:9:25: 'bits' must be an integer 2..8 or a list of them, got 'four'");
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, bits: [4, 9]}\n"),
            "s.yaml:9:29: 'bits' must be an integer 2..8 or a list of them, got '9'");
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, group_size: 0}\n"),
            "s.yaml:9:31: 'group_size' must be a positive integer or -1 (one group per output "
            "channel) or a list of them, got '0'");
  EXPECT_EQ(error_of(kHead + "  - method: gptq\n    calibration: code\n    desc_act: yes\n"),
            "s.yaml:11:15: 'desc_act' must be true or false or a list of them, got 'yes'");
  EXPECT_EQ(error_of(kHead + "  - method: rtn\n    bits:\n"),
            "s.yaml:10:5: 'bits' must be an integer 2..8 or a list of them, got nothing");
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, bits: [4, 4]}\n"),
            "s.yaml:9:29: 'bits' lists 4 twice");
  EXPECT_EQ(error_of(kHead + "  - {method: gptq, calibration: code, damp_percent: 0}\n"),
            "s.yaml:9:53: 'damp_percent' must be a number in (0, 1] or a list of them, got '0'");
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, bits: 4, bits: 8}\n"),
            "s.yaml:9:28: key 'bits' is given twice in variant (first at line 9)");
  EXPECT_EQ(error_of(kHead + "  - rtn\n"), "s.yaml:9:5: variant must be a map of keys, got 'rtn'");
  EXPECT_EQ(error_of("name: t\nmodel: [a, b]\n"),
            "s.yaml:2:8: 'model' must be a model name or a path, got a list");
}

TEST(SweepErrors, UndefinedCalibrationSuggestsTheClosest) {
  EXPECT_EQ(error_of(kHead + "  - {method: gptq, calibration: [code, wkii]}\n"),
            "s.yaml:9:40: calibration 'wkii' is not defined under 'calibration:' (defined: code "
            "or wiki); did you mean 'wiki'?");
}

TEST(SweepErrors, ImpossibleCombinations) {
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, desc_act: [false, true]}\n"),
            "s.yaml:9:30: 'desc_act' does not apply to method 'rtn' (it uses bits, group_size or "
            "sym)");
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, calibration: code}\n"),
            "s.yaml:9:32: 'calibration' does not apply to method 'rtn' (it uses bits, "
            "group_size or sym)");
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, static_groups: true}\n"),
            "s.yaml:9:34: 'static_groups' does not apply to method 'rtn' (it uses bits, "
            "group_size or sym)");
  EXPECT_EQ(error_of(kHead + "  - {method: gptq, calibration: code, group_size: -1, "
                             "static_groups: true}\n"),
            "s.yaml:9:70: 'static_groups' needs groups: it means nothing with group_size -1");
}

// Issue #19's variant syntax, exactly; each mistake names its place.
TEST(SweepSpec, AutoMixTakesABudgetMixOrBitsPerWeight) {
  const SweepSpec s =
      parse_sweep_text(kHead +
                           "  - {method: auto_mix, budget: q3_k_m, calibration: code}\n"
                           "  - {method: auto_mix, budget_bpw: 3.9, calibration: code}\n",
                       "s.yaml");
  ASSERT_EQ(s.variants.size(), 2u);
  ASSERT_NE(s.variants[0].config.auto_mix(), nullptr);
  EXPECT_EQ(s.variants[0].config.auto_mix()->budget, "q3_k_m");
  EXPECT_EQ(s.variants[0].id, "auto_mix-q3_k_m-code");
  EXPECT_EQ(s.variants[1].config.auto_mix()->budget_bpw, 3.9);
  EXPECT_EQ(s.variants[1].id, "auto_mix-bpw3.9-code");
  EXPECT_EQ(error_of(kHead + "  - {method: auto_mix, budget: q3_k_x, calibration: code}\n"),
            "s.yaml:9:32: budget 'q3_k_x' is not a llama.cpp mix (use q2_k, q3_k_s, q3_k_m, "
            "q3_k_l, q4_0, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, q8_0)");
  EXPECT_EQ(error_of(kHead + "  - {method: auto_mix, calibration: code}\n"),
            "s.yaml:9:14: auto_mix needs exactly one of 'budget: <llama.cpp mix such as q3_k_m>' "
            "and 'budget_bpw: <bits per weight>'");
  EXPECT_EQ(error_of(kHead + "  - {method: auto_mix, budget_bpw: 1, calibration: code}\n"),
            "s.yaml:9:36: 'budget_bpw' must be a number of bits 2..16 or a list of them, got '1'");
  EXPECT_EQ(error_of(kHead + "  - {method: q4_k_m, budget: q3_k_m}\n"),
            "s.yaml:9:30: 'budget' does not apply to method 'q4_k_m' (it uses calibration)");
}

TEST(SweepErrors, UnknownAndUnimplementedMethods) {
  EXPECT_EQ(error_of(kHead + "  - {method: gtpq}\n"),
            "s.yaml:9:14: unknown method 'gtpq'; did you mean 'gptq'? (methods: rtn, gptq, awq, "
            "q2_k, q3_k_s, q3_k_m, q3_k_l, q4_0, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, q8_0, "
            "auto_mix)");
  // AWQ is available (issue #5); its checkpoint layout holds 4-bit zero-point grids only.
  EXPECT_EQ(error_of(kHead + "  - {method: awq, bits: 3, calibration: code}\n"),
            "s.yaml:9:25: method 'awq' writes AutoAWQ gemm checkpoints, which hold 4-bit codes "
            "only (got bits 3); use gptq or rtn for other widths");
  EXPECT_EQ(error_of(kHead + "  - {method: awq, calibration: code, desc_act: true}\n"),
            "s.yaml:9:48: 'desc_act' does not apply to method 'awq' (it uses bits, group_size, "
            "sym or calibration)");
  EXPECT_EQ(error_of(kHead + "  - {method: [rtn, q4_k_m], bits: 4}\n"),
            "s.yaml:9:35: 'bits' does not apply to method 'q4_k_m' (it uses calibration)");
  EXPECT_EQ(error_of(kHead + "  - {method: q4_k_x}\n"),
            "s.yaml:9:14: unknown method 'q4_k_x'; did you mean 'q4_k_s'? (methods: rtn, gptq, "
            "awq, q2_k, q3_k_s, q3_k_m, q3_k_l, q4_0, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, q8_0, "
            "auto_mix)");
  for (const std::string& m : method_names()) EXPECT_TRUE(method_from_name(m).has_value()) << m;
  EXPECT_FALSE(method_from_name("nonsense").has_value());
}

TEST(SweepErrors, DuplicateVariantIdsNameBothLines) {
  EXPECT_EQ(error_of(kHead + "  - {method: rtn, bits: [4, 8]}\n"
                             "  - {method: rtn, bits: 8, group_size: 128}\n"),
            "s.yaml:10:5: variant 'rtn-b8-g128' is defined twice: by the variant at line 9 and "
            "the one at line 10");
  // The default damp written out is the same variant.
  EXPECT_EQ(error_of(kHead + "  - {method: gptq, calibration: code}\n"
                             "  - {method: gptq, calibration: code, damp_percent: 0.01}\n"),
            "s.yaml:10:5: variant 'gptq-b4-g128-code' is defined twice: by the variant at line "
            "9 and the one at line 10");
}

TEST(SweepErrors, MissingAndMalformedSections) {
  EXPECT_EQ(error_of("name: t\nmodel: m\neval: [{task: perplexity, dataset: d}]\n"),
            "s.yaml:1:1: the sweep file has no 'variants'");
  EXPECT_EQ(error_of("name: t\nmodel: m\nvariants: []\neval: [{task: perplexity, dataset: d}]\n"),
            "s.yaml:3:11: 'variants' must be a non-empty list of variants, got a list");
  EXPECT_EQ(
      error_of(kHead + "  - {bits: 4}\n"),
      "s.yaml:9:5: variant has no 'method' (rtn, gptq, awq or a llama.cpp mix such as q4_k_m)");
  EXPECT_EQ(error_of("name: t\nmodel: m\ncalibration:\n  code: {n_samples: 4}\n"),
            "s.yaml:4:9: calibration 'code' has no 'source'");
  EXPECT_EQ(error_of("name: t\nmodel: m\ncalibration:\n  my set: {source: code}\n"),
            "s.yaml:4:3: calibration name 'my set' must use only letters, digits, '.', '_' and "
            "'-' (it becomes part of variant ids)");
  EXPECT_EQ(error_of("name: t\nmodel: m\nbaseline: bf16\n"),
            "s.yaml:3:11: baseline 'bf16' is not supported; only fp16 for now");
  EXPECT_EQ(error_of("name: t\nmodel: m\ndevice: gpu\n"),
            "s.yaml:3:9: 'device' must be auto, cpu or cuda, got 'gpu'; did you mean 'cpu'?");
  EXPECT_EQ(error_of("name: t\nmodel: m\ndevice: [cuda]\n"),
            "s.yaml:3:9: 'device' must be auto, cpu or cuda, got a list");
  EXPECT_EQ(error_of("name: my sweep\n"),
            "s.yaml:1:7: 'name' must use only letters, digits, '.', '_' and '-' (it names the "
            "sweep's folder), got 'my sweep'");
  EXPECT_EQ(error_of("- a\n- b\n"), "s.yaml:1:1: the sweep file must be a map of keys, got a list");
}

TEST(SweepErrors, SyntaxErrorsAndTabs) {
  EXPECT_EQ(error_of("name: t\nvariants: [{method: rtn}\n"),
            "s.yaml:3:1: end of sequence flow not found");
  EXPECT_EQ(error_of("name: t\nreport:\n\tformats: [md]\n"),
            "s.yaml:3:1: tab in indentation; YAML indents with spaces (parser: illegal map value "
            "at 3:9)");
}

TEST(SweepErrors, EmptyAndMissingFiles) {
  EXPECT_EQ(error_of(""),
            "s.yaml: the sweep file is empty (it needs name, model, variants and eval)");
  EXPECT_EQ(error_of("# nothing but a comment\n"),
            "s.yaml: the sweep file is empty (it needs name, model, variants and eval)");
  const std::string dir = test::make_temp_dir("spec");
  EXPECT_THROW(
      {
        try {
          parse_sweep(dir + "/missing.yaml");
        } catch (const Error& e) {
          EXPECT_EQ(std::string(e.what()), "sweep file '" + dir + "/missing.yaml' does not exist");
          throw;
        }
      },
      Error);
  const std::string path = dir + "/example.yaml";
  std::ofstream(path) << kExample;
  const SweepSpec s = parse_sweep(path);
  EXPECT_EQ(s.file, path);
  EXPECT_EQ(s.variants.size(), 26u);
  std::ofstream(path) << "name: t\nmodel: m\nvariants: [{method: rtn, bits: 1}]\n";
  try {
    parse_sweep(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              path + ":3:32: 'bits' must be an integer 2..8 or a list of them, got '1'");
  }
  std::filesystem::remove_all(dir);
}

// --- eval and report ----------------------------------------------------------------------

TEST(SweepEval, IdsAndStrides) {
  const SweepSpec s = parse_sweep_text(
      kEvalHead +
          "  - {task: perplexity, dataset: wikitext2, protocol: strided, ctx: 512}\n"
          "  - {task: perplexity, dataset: wikitext2, protocol: strided, ctx: 512, stride: 64}\n"
          "  - {task: perplexity, dataset: /data/x.jsonl:text, protocol: strided}\n",
      "s.yaml");
  EXPECT_EQ(eval_ids(s), (std::vector<std::string>{"ppl-wikitext2-strided-ctx512-s256",
                                                   "ppl-wikitext2-strided-ctx512-s64",
                                                   "ppl-data_x.jsonl_text-strided-ctxmax"}));
  EXPECT_EQ(s.evals[0].stride, 256);  // the default ctx / 2, resolved
  EXPECT_EQ(s.evals[2].stride, 0);    // ctx unknown until the model is read
}

TEST(SweepEval, Errors) {
  EXPECT_EQ(error_of(kEvalHead + "  - {task: perplexty, dataset: d}\n"),
            "s.yaml:5:12: unknown task 'perplexty'; did you mean 'perplexity'?");
  EXPECT_EQ(error_of(kEvalHead + "  - {task: kld, dataset: d, limit: 5}\n"),
            "s.yaml:5:36: 'limit' does not apply to task 'kld' (it uses dataset, ctx, "
            "max_tokens or top_k)");
  EXPECT_EQ(error_of(kEvalHead + "  - {task: humaneval, samples: 5}\n"),
            "s.yaml:5:32: 'samples' > 1 needs 'temperature' > 0: greedy decoding repeats one "
            "completion");
  EXPECT_EQ(error_of(kEvalHead + "  - {task: perplexity}\n"),
            "s.yaml:5:5: eval entry has no 'dataset' (task 'perplexity' needs one)");
  EXPECT_EQ(error_of(kEvalHead + "  - {dataset: d}\n"),
            "s.yaml:5:5: eval entry has no 'task' (perplexity, kld, line_completion, "
            "humaneval, mbpp, mmlu, ceval or gsm8k)");
  EXPECT_EQ(error_of(kEvalHead + "  - {task: perplexity, dataset: d, ctx: 1}\n"),
            "s.yaml:5:41: 'ctx' must be an integer >= 2 or a list of them, got '1'");
  EXPECT_EQ(error_of(kEvalHead + "  - {task: perplexity, dataset: d, protocol: strdied}\n"),
            "s.yaml:5:46: 'protocol' must be chunks or strided, got 'strdied'; did you mean "
            "'strided'?");
  EXPECT_EQ(error_of(kEvalHead + "  - {task: perplexity, dataset: d, ctx: 256, stride: 128}\n"),
            "s.yaml:5:54: 'stride' applies only to protocol: strided");
  EXPECT_EQ(
      error_of(kEvalHead +
               "  - {task: perplexity, dataset: d, protocol: strided, ctx: 256, stride: 300}\n"),
      "s.yaml:5:73: 'stride' must be at most ctx (256), got 300");
  EXPECT_EQ(error_of(kEvalHead + "  - {task: perplexity, dataset: d, max_tokens: -1}\n"),
            "s.yaml:5:48: 'max_tokens' must be a non-negative integer (0 = all) or a list of "
            "them, got '-1'");
  // ctx/2 written out is the default stride: the same evaluation twice.
  EXPECT_EQ(
      error_of(kEvalHead +
               "  - {task: perplexity, dataset: d, protocol: strided, ctx: 256}\n"
               "  - {task: perplexity, dataset: d, protocol: strided, ctx: 256, stride: 128}\n"),
      "s.yaml:6:5: eval 'ppl-d-strided-ctx256-s128' is defined twice: by the eval entry at "
      "line 5 and the one at line 6");
  EXPECT_EQ(error_of(kEvalHead + "  - {task: perplexity, dataset: d, cxt: 256}\n"),
            "s.yaml:5:36: unknown key 'cxt' in eval entry; did you mean 'ctx'?");
}

TEST(SweepEval, TaskIdsDefaultsAndOptions) {
  const SweepSpec s =
      parse_sweep_text(kEvalHead +
                           "  - {task: kld, dataset: code-heldout, ctx: 256, max_tokens: 8192}\n"
                           "  - {task: line_completion, limit: 100}\n"
                           "  - {task: humaneval}\n"
                           "  - {task: humaneval, samples: 10, temperature: 0.8, limit: 20}\n"
                           "  - {task: mmlu, subjects: 'anatomy,astronomy', shots: 0, limit: 10}\n"
                           "  - {task: gsm8k, limit: 50, max_new_tokens: 96}\n"
                           "  - {task: line_completion, limit: 100, ctx: 512}\n",
                       "s.yaml");
  EXPECT_EQ(eval_ids(s),
            (std::vector<std::string>{"kld-code-heldout-ctx256-n8192", "linecomp-code-heldout-l100",
                                      "humaneval-humaneval", "humaneval-humaneval-l20-x10-t0.8",
                                      "mmlu-mmlu-l10-anatomy_astronomy-shot0",
                                      "gsm8k-gsm8k-l50-m96", "linecomp-code-heldout-ctx512-l100"}));
  EXPECT_EQ(s.evals[6].ctx, 512);                 // line_completion's window (prompt + generation)
  EXPECT_EQ(s.evals[1].dataset, "code-heldout");  // the task's default data
  EXPECT_EQ(s.evals[3].samples, 10);
  EXPECT_DOUBLE_EQ(s.evals[3].temperature, 0.8);
  EXPECT_EQ(s.evals[4].subjects, "anatomy,astronomy");
  EXPECT_EQ(s.evals[4].shots, 0);
  EXPECT_EQ(s.evals[5].max_new_tokens, 96);
  // The task is eval's enum; the file's defaults stay unresolved until the model is known.
  EXPECT_EQ(s.evals[0].task, Task::Kld);
  EXPECT_EQ(s.evals[1].task, Task::LineCompletion);
  EXPECT_EQ(s.evals[1].max_new_tokens, 0);
  EXPECT_EQ(s.evals[2].task, Task::HumanEval);
  EXPECT_EQ(s.evals[4].task, Task::Mmlu);
  EXPECT_EQ(s.evals[5].task, Task::Gsm8k);
}

// `qsweep eval` options go through the same reader; an unknown task lists every task.
TEST(SweepEval, CommandLineOptions) {
  const EvalConfig e = parse_eval_options({{"task", "mbpp"}, {"limit", "20"}});
  EXPECT_EQ(e.task, Task::Mbpp);
  EXPECT_EQ(e.limit, 20);
  EXPECT_EQ(e.dataset, "mbpp");
  EXPECT_EQ(e.id, "mbpp-mbpp-l20");
  try {
    parse_eval_options({{"task", "nope"}});
    FAIL() << "no error";
  } catch (const Error& err) {
    const std::string m = err.what();
    EXPECT_EQ(m.rfind("unknown task 'nope'", 0), 0u) << m;
    for (const std::string& name : task_names()) EXPECT_NE(m.find(name), std::string::npos) << m;
    EXPECT_NE(m.find("(tasks: perplexity, kld, line_completion, humaneval, mbpp, mmlu, ceval or "
                     "gsm8k)"),
              std::string::npos)
        << m;
  }
  EXPECT_THROW(parse_eval_options({{"task", "gsm8k"}, {"temperature", "0.5"}}), Error);
}

TEST(SweepReport, FormatsAndBounds) {
  const std::string head = kEvalHead + "  - {task: perplexity, dataset: d}\nreport:\n";  // to 6
  const SweepSpec s = parse_sweep_text(head + "  formats: md\n  acceptable: {marginal: 2}\n", "s");
  EXPECT_EQ(s.report.formats, std::vector<std::string>{"md"});
  EXPECT_DOUBLE_EQ(s.report.yes, 1.05);
  EXPECT_DOUBLE_EQ(s.report.marginal, 2.0);
  EXPECT_EQ(error_of(head + "  formats: [md, htm]\n"),
            "s.yaml:7:17: 'formats' must be md, csv, json or html, got 'htm'; did you mean "
            "'html'?");
  EXPECT_EQ(error_of(head + "  acceptable: {yes: 1.05, usually: 1.02}\n"),
            "s.yaml:7:36: report.acceptable must be ascending (yes < usually < marginal), but "
            "usually = 1.02 is not above yes = 1.05");
  EXPECT_EQ(error_of(head + "  acceptable: {yes: -1}\n"),
            "s.yaml:7:21: 'yes' must be a positive number, got '-1'");
  EXPECT_EQ(error_of(head + "  acceptable: {no: 1}\n"),
            "s.yaml:7:16: unknown key 'no' in report.acceptable");
}

}  // namespace
}  // namespace qsweep
