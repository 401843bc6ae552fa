// The evaluation tasks and their configuration: ONE table of what each task is called (in a
// sweep file and on the command line), the options it takes, its default data and headline
// metric, and EvalConfig — one evaluation, with every default resolved once for a model.
// The only place task names are strings; everything else compares `Task` values.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qsweep {

enum class Task { Perplexity, Kld, LineCompletion, HumanEval, Mbpp, Mmlu, Ceval, Gsm8k };

struct TaskInfo {
  Task task;
  std::string name;               ///< as written in YAML and on the command line: "line_completion"
  std::string id_prefix;          ///< first fragment of an eval id: "linecomp"
  std::vector<std::string> keys;  ///< the option keys it takes besides `task`
  std::string default_dataset;    ///< "" = `dataset` is required
  std::string metric;             ///< headline metric: "perplexity", "mean_kld", "pass@1_pct", ...
  bool higher_is_better = false;
  /// The data's domain for a benchmark ("code", "math", "knowledge"); "" for the text tasks,
  /// whose domain is their dataset's (eval/datasets.h).
  std::string domain;
};

/// Every task, in enum order.
const std::vector<TaskInfo>& task_table();
const TaskInfo& task_info(Task t);
const std::string& task_name(Task t);
std::optional<Task> task_from_name(std::string_view name);
/// "perplexity", "kld", ... in table order (for error messages).
std::vector<std::string> task_names();
/// perplexity, kld and line_completion read a text dataset; the others a benchmark file/folder.
bool is_text_task(Task t);

/// The longest context an eval uses when the sweep names none: Llama-3.1 declares 131072
/// positions and Qwen3 40960, and one window's logits alone (ctx × vocab fp32) would then
/// take 67 GB and 25 GB. Pass ctx: explicitly to evaluate longer windows.
constexpr int kDefaultMaxCtx = 4096;

/// One evaluation. Which keys a task takes is in its TaskInfo (and docs/sweep-format.md,
/// "Tasks"); keys a task does not use keep their defaults. 0 / -1 mean "the default" until
/// `resolved()` fills them in for a model.
struct EvalConfig {
  std::string id;  ///< unique, stable: "ppl-wikitext2-chunks-ctx256" (pipeline/spec.cpp's rule)
  Task task = Task::Perplexity;
  /// perplexity, kld, line_completion: a text dataset name or file; humaneval, mbpp, gsm8k,
  /// mmlu, ceval: the benchmark's file/folder, defaulting to its place in the data directory.
  std::string dataset;
  std::string protocol = "chunks";  ///< perplexity: "chunks" or "strided"
  int ctx = 0;     ///< perplexity, kld: 0 = the model's max_position_embeddings, ≤ kDefaultMaxCtx
  int stride = 0;  ///< strided only; 0 = ctx / 2
  int64_t max_tokens = 0;  ///< perplexity, kld: 0 = all
  int top_k = 32;          ///< kld: baseline top-k stored per position
  int64_t limit = 0;       ///< items (mmlu/ceval: per subject); 0 = the task's default
  std::string subjects;    ///< mmlu/ceval: comma-separated subject names; "" = all
  int shots = -1;          ///< mmlu/ceval/gsm8k/mbpp; -1 = the task's default
  int samples = 1;         ///< humaneval/mbpp: completions per problem (pass@k)
  double temperature = 0;  ///< humaneval/mbpp: 0 = greedy
  int max_new_tokens = 0;  ///< generative tasks; 0 = the task's default
  uint64_t seed = 0;       ///< line_completion positions, sampling seeds
  /// A sweep eval entry's own `device:` (auto|cpu|cuda) for its eval nodes; "" = the sweep's.
  /// Where it runs, not what it measures: not in the id, options_json() or the node key.
  std::string device;

  /// Every default resolved for a model whose context is `model_ctx`: ctx 0 →
  /// min(model_ctx, kDefaultMaxCtx);
  /// strided stride 0 → ctx / 2; line_completion limit 200; shots mbpp 3, gsm8k 8, mmlu/ceval
  /// 5; max_new_tokens line_completion 48, humaneval/mbpp 512, gsm8k 256, each capped at
  /// ctx / 2 (at least 1). Explicit values are kept; resolving twice changes nothing.
  EvalConfig resolved(int model_ctx) const;

  /// The evaluation's options as hashed into an eval node's key and written as results.json's
  /// "options": task, dataset, protocol, ctx, stride, max_tokens, and for tasks other than
  /// perplexity top_k, limit, subjects, shots, samples, temperature, max_new_tokens and seed.
  /// Meant for a resolved config.
  nlohmann::json options_json() const;
};

}  // namespace qsweep
