// The sweep file's `resources:` section (Slurm requests per node kind): values, the default
// merged under each kind, every bad value an error at its file:line:col, and no effect on the
// plan's node keys (where a node runs does not change what it computes). Also an eval entry's
// own `device:`, checked like the sweep's.
#include <gtest/gtest.h>

#include <string>

#include "common/errors.h"
#include "pipeline/spec.h"
#include "pipeline/sweep.h"
#include "tests/pipeline/sweep_error.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

std::string sweep(const std::string& resources) {
  return "name: r\nmodel: " + test::tinycode_dir() +
         "\nvariants:\n  - {method: rtn, bits: 4, group_size: 128}\n"
         "eval:\n  - {task: perplexity, dataset: code-heldout, protocol: chunks, ctx: 128, "
         "max_tokens: 256}\n" +
         resources;
}

using test::error_of;

TEST(SweepResources, DefaultThenTheKindsOwnFields) {
  const SweepSpec s = parse_sweep_text(sweep("resources:\n"
                                             "  default: {cpus: 4, mem: 16G, time: \"1:00:00\"}\n"
                                             "  quantize: {gpus: 1, cpus: 8, mem: 64G}\n"
                                             "  eval: {time: 2-00:00:00}\n"),
                                       "s.yaml");
  const SlurmResources q = resources_for(s, "quantize");
  EXPECT_EQ(q.gpus, 1);
  EXPECT_EQ(q.cpus, 8);
  EXPECT_EQ(q.mem, "64G");
  EXPECT_EQ(q.time, "1:00:00");  // from default
  const SlurmResources e = resources_for(s, "eval");
  EXPECT_EQ(e.gpus, 0);
  EXPECT_EQ(e.cpus, 4);
  EXPECT_EQ(e.mem, "16G");
  EXPECT_EQ(e.time, "2-00:00:00");
  const SlurmResources c = resources_for(s, "calibrate");
  EXPECT_EQ(c.cpus, 4);
  EXPECT_EQ(c.mem, "16G");
  const SlurmResources none = resources_for(parse_sweep_text(sweep(""), "s.yaml"), "quantize");
  EXPECT_EQ(none.gpus + none.cpus, 0);
  EXPECT_TRUE(none.mem.empty() && none.time.empty());
}

TEST(SweepResources, BadValuesAreErrorsAtTheirPlace) {
  // Line 7 is the `resources:` line, 8 the first entry under it.
  EXPECT_EQ(error_of(sweep("resources:\n  quantise: {cpus: 2}\n")),
            "s.yaml:8:3: unknown key 'quantise' in resources; did you mean 'quantize'?");
  EXPECT_EQ(error_of(sweep("resources:\n  eval: {cpu: 2}\n")),
            "s.yaml:8:10: unknown key 'cpu' in resources.eval; did you mean 'cpus'?");
  EXPECT_EQ(error_of(sweep("resources:\n  eval: {cpus: 0}\n")),
            "s.yaml:8:16: 'cpus' must be an integer 1..4096, got '0'");
  EXPECT_EQ(error_of(sweep("resources:\n  eval: {mem: 64GB}\n")),
            "s.yaml:8:15: 'mem' must be a memory size such as 64G (digits, then K, M, G or T), "
            "got '64GB'");
  EXPECT_EQ(error_of(sweep("resources:\n  eval: {time: 4h}\n")),
            "s.yaml:8:16: 'time' must be a Slurm time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM "
            "or D-HH:MM:SS, got '4h'");
  EXPECT_EQ(error_of(sweep("resources:\n  default: {gpus: -1}\n")),
            "s.yaml:8:19: 'gpus' must be an integer 0..64, got '-1'");
  EXPECT_EQ(error_of(sweep("resources: 4\n")),
            "s.yaml:7:12: resources must be a map of keys, got '4'");
}

TEST(SweepResources, DoNotChangeNodeKeys) {
  const std::string data = test::shared_dir() + "/data";
  const SweepPlan a =
      make_sweep_plan(parse_sweep_text(sweep(""), "s.yaml"), test::tinycode_dir(), data);
  const SweepPlan b = make_sweep_plan(
      parse_sweep_text(sweep("resources:\n  default: {gpus: 1, cpus: 8, mem: 64G}\n"), "s.yaml"),
      test::tinycode_dir(), data);
  ASSERT_EQ(a.nodes.size(), b.nodes.size());
  for (size_t i = 0; i < a.nodes.size(); ++i) EXPECT_EQ(a.nodes[i].key, b.nodes[i].key);
}

// Lines 1-4; the eval entries start at line 5.
const std::string kDeviceEvalHead =
    "name: t\n"
    "model: tinycode\n"
    "variants: [{method: rtn}]\n"
    "eval:\n";

// An eval entry's own `device:` (issue #16): the sweep's choices, typos named with the file,
// line, key and the allowed values; where it runs is not part of the eval id.
TEST(SweepErrors, PerEvalDeviceIsCheckedLikeTheSweeps) {
  EXPECT_EQ(error_of(kDeviceEvalHead + "  - {task: perplexity, dataset: d, device: gpu}\n"),
            "s.yaml:5:44: 'device' must be auto, cpu or cuda, got 'gpu'; did you mean 'cpu'?");
  EXPECT_EQ(error_of(kDeviceEvalHead + "  - {task: perplexity, dataset: d, devcie: cpu}\n"),
            "s.yaml:5:36: unknown key 'devcie' in eval entry; did you mean 'device'?");
  EXPECT_EQ(error_of(kDeviceEvalHead + "  - {task: perplexity, dataset: d, device: [cpu, cuda]}\n"),
            "s.yaml:5:5: eval 'ppl-d-chunks-ctxmax' is defined twice: by the eval entry at line 5 "
            "and the one at line 5");
  const SweepSpec s = parse_sweep_text(kDeviceEvalHead +
                                           "  - {task: perplexity, dataset: d, device: cuda}\n"
                                           "  - {task: gsm8k, limit: 3}\n",
                                       "s.yaml");
  ASSERT_EQ(s.evals.size(), 2u);
  EXPECT_EQ(s.evals[0].device, "cuda");
  EXPECT_EQ(s.evals[0].id, "ppl-d-chunks-ctxmax");
  EXPECT_EQ(s.evals[0].options_json().count("device"), 0u);
  EXPECT_EQ(s.evals[1].device, "");
}

}  // namespace
}  // namespace qsweep
