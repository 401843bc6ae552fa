// The sweep file's `sensitivity:` section (issue #19): values, defaults, errors at their place.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/errors.h"
#include "pipeline/spec.h"
#include "tests/pipeline/sweep_error.h"

namespace qsweep {
namespace {

const std::string kHead =
    "name: t\n"
    "model: tinycode\n"
    "calibration:\n"
    "  code: {source: code}\n"
    "  wiki: {source: wikitext2}\n"
    "eval:\n"
    "  - {task: perplexity, dataset: wikitext2}\n"
    "variants:\n";

using test::error_of;

// The `sensitivity:` section (issue #19): its values, its defaults, each mistake at its place.
TEST(SweepSpec, SensitivitySectionTypesCalibrationAndWindows) {
  const std::string sens = "sensitivity: {types: [q2_k, q6_k], calibration: wiki, seqlen: 128}\n";
  const SweepSpec s =
      parse_sweep_text(sens + kHead + "  - {method: auto_mix, budget: q3_k_m}\n", "s.yaml");
  EXPECT_TRUE(s.has_sensitivity_section);
  EXPECT_EQ(s.sensitivity.types, (std::vector<std::string>{"q2_k", "q6_k"}));
  EXPECT_EQ(s.sensitivity.seqlen, 128);
  EXPECT_EQ(s.sensitivity.n_samples, 0);         // the calibration set's
  EXPECT_EQ(s.variants[0].calibration, "wiki");  // auto_mix's default set: the section's
  const SweepSpec d = parse_sweep_text(
      kHead + "  - {method: auto_mix, budget: q3_k_m, calibration: code}\n", "s.yaml");
  EXPECT_FALSE(d.has_sensitivity_section);
  EXPECT_EQ(d.sensitivity.types,
            (std::vector<std::string>{"q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_0"}));
  const std::string rtn = "  - {method: rtn}\n";
  EXPECT_EQ(error_of("sensitivity: {types: [q2_k, q4k]}\n" + kHead + rtn),
            "s.yaml:1:29: unknown candidate type 'q4k'; did you mean 'q4_k'? (types: q2_k, q3_k, "
            "q4_k, q5_k, q6_k, q8_0, q4_0, q4_1, q5_0 or q5_1)");
  EXPECT_EQ(error_of("sensitivity: {types: q4_k, calibration: cod}\n" + kHead + rtn),
            "s.yaml:1:41: calibration 'cod' is not defined under 'calibration:' (defined: code or "
            "wiki); did you mean 'code'?");
  EXPECT_EQ(error_of("sensitivity: {typs: [q4_k]}\n" + kHead + rtn),
            "s.yaml:1:15: unknown key 'typs' in sensitivity; did you mean 'types'?");
  EXPECT_EQ(error_of("sensitivity: {seqlen: 1}\n" + kHead + rtn),
            "s.yaml:1:23: 'seqlen' must be an integer >= 2, got '1'");
  EXPECT_EQ(error_of("sensitivity: {types: q4_k}\n" + kHead + rtn),
            "s.yaml:1:1: 'sensitivity' needs 'calibration: <name>' (the sweep defines several "
            "sets and no auto_mix variant names one)");
}

// GPTQ's budget_bpw (issue #19's GPTQ twin): a list sweeps it, the id names it, a value out
// of range is named at its place.
TEST(SweepSpec, GptqTakesABitsPerWeightBudget) {
  const SweepSpec s = parse_sweep_text(
      kHead + "  - {method: gptq, budget_bpw: [3.5, 4.25], calibration: code}\n", "s.yaml");
  ASSERT_EQ(s.variants.size(), 2u);
  ASSERT_NE(s.variants[0].config.gptq(), nullptr);
  EXPECT_EQ(s.variants[0].config.gptq()->budget_bpw, 3.5);
  EXPECT_EQ(s.variants[0].id, "gptq-bpw3.5-g128-code");
  EXPECT_EQ(s.variants[1].id, "gptq-bpw4.25-g128-code");
  EXPECT_EQ(error_of(kHead + "  - {method: gptq, budget_bpw: 20, calibration: code}\n"),
            "s.yaml:9:32: 'budget_bpw' must be a number of bits 2..16 or a list of them, got '20'");
  EXPECT_EQ(error_of(kHead + "  - {method: awq, budget_bpw: 3.5, calibration: code}\n"),
            "s.yaml:9:31: 'budget_bpw' does not apply to method 'awq' (it uses bits, group_size, "
            "sym or calibration)");
}

}  // namespace
}  // namespace qsweep
