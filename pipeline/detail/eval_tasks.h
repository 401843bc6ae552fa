// The sweep's evaluation tasks other than perplexity: where their data lives, what their
// headline metric is, and running one on a model into the metrics.json of an eval node.
// Keeps pipeline/sweep.cpp about the DAG; the tasks themselves live in eval/.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "model/transformer.h"
#include "pipeline/spec.h"

namespace qsweep::detail {

/// An eval's data: a text file (perplexity, kld, line_completion) or a benchmark file/folder.
struct TaskData {
  std::string path;                ///< the file or folder read
  std::string domain;              ///< "code", "wiki", "knowledge", "math", ...
  bool present = false;            ///< false: the task reports "skipped: <path> not found"
  std::vector<std::string> files;  ///< what to hash for the node key (sorted; empty if absent)
};
/// Throws Error for a text dataset that does not exist (perplexity, kld and line_completion
/// need theirs); benchmark data that is absent is `present = false`.
TaskData resolve_task_data(const EvalSpec& e, const std::string& data_dir);

struct TaskMetric {
  const char* metric;  ///< "perplexity", "mean_kld", "exact_match_pct", "pass@1_pct", ...
  bool higher_is_better;
};
TaskMetric task_metric(const std::string& task);

/// Defaults resolved for a model with context `ctx` (e.g. max_new_tokens ≤ ctx/2), so the
/// protocol written to results says what actually ran.
EvalSpec with_task_defaults(const EvalSpec& e, int ctx);

/// Runs task `e` (not perplexity) on `model`. kld: `kld_baseline_in` empty means this is the
/// baseline — it computes and writes the baseline file to `kld_baseline_out`. The returned
/// object is the node's metrics.json: value (null when skipped), standard_error, status
/// ("ok" or "skipped: ..."), items, protocol and the task's own details.
nlohmann::json run_eval_task(const EvalSpec& e, const TaskData& data, const Transformer& model,
                             const Tokenizer& tokenizer, const std::vector<int>* text_tokens,
                             const std::string& kld_baseline_in,
                             const std::string& kld_baseline_out);

}  // namespace qsweep::detail
