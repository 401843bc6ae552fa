// Running one evaluation of any task on a model: the one call the sweep's eval nodes and
// `qsweep eval` make. The tasks themselves live beside this (perplexity.h, kl_divergence.h,
// line_completion.h, code_tasks.h, multiple_choice.h, gsm8k.h); this is their dispatch.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "eval/task.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

namespace qsweep {

class Backend;

/// An eval's data: a text file (perplexity, kld, line_completion) or a benchmark file/folder.
struct TaskData {
  std::string path;                ///< the file or folder read
  std::string domain;              ///< "code", "wiki", "knowledge", "math", ...
  bool present = false;            ///< false: the task reports "skipped: <path> not found"
  std::vector<std::string> files;  ///< what to hash for a node key (sorted; empty if absent)
};
/// Throws Error for a text dataset that does not exist (perplexity, kld and line_completion
/// need theirs); benchmark data that is absent is `present = false`.
TaskData resolve_task_data(const EvalConfig& e, const std::string& data_dir);

/// What one evaluation measured, whatever the task.
struct EvalResult {
  Task task = Task::Perplexity;
  std::optional<double> value;           ///< the headline metric (task_info(task).metric)
  std::optional<double> standard_error;  ///< of `value` (none for perplexity)
  int64_t items = 0;                     ///< items, problems or (perplexity) scored tokens
  std::string status = "ok";             ///< "ok" or "skipped: <why>"
  std::string protocol;                  ///< what exactly was measured, in words
  /// The task's own numbers: perplexity mean_nll, nll_standard_error, scored_tokens,
  /// tokens_used, tokens_dropped, tokens_in_text, windows, ctx, stride, seconds,
  /// tokens_per_second; the other tasks what their metrics.json carries besides the above.
  nlohmann::json details = nlohmann::json::object();
  std::vector<float> token_nll;  ///< perplexity: NLL per scored token, in text order

  /// An eval node's metrics.json (without its "config"). Perplexity: value, protocol, mean_nll,
  /// nll_standard_error, scored_tokens, tokens_used, tokens_dropped, windows, ctx, stride,
  /// seconds. The other tasks: value (null when skipped), standard_error, status, items,
  /// protocol and the details.
  nlohmann::json to_json() const;
};

struct EvalInputs {
  EvalInputs(const Transformer& model_, const Tokenizer& tokenizer_, TaskData data_ = {})
      : model(model_), tokenizer(tokenizer_), data(std::move(data_)) {}
  const Transformer& model;
  const Tokenizer& tokenizer;
  TaskData data;  ///< resolve_task_data for the config
  /// perplexity, kld: the dataset's text already tokenized (no BOS), e.g. shared by a sweep's
  /// nodes; nullptr: run_eval reads and tokenizes it.
  const std::vector<int>* text_tokens = nullptr;
  /// kld: the baseline's stored top-k distributions. `write_kld_baseline`: this model is the
  /// baseline — compute them and write this file; otherwise read it.
  std::string kld_baseline_file;
  bool write_kld_baseline = false;
  /// Where the model runs: nullptr = its own backend (the CPU), else every task runs the
  /// Transformer on this backend (perplexity through PerplexityOptions::backend).
  Backend* backend = nullptr;
  bool progress = false;  ///< draw progress on stderr (perplexity)
  /// Names the model / variant in errors about its metrics (e.g. a non-finite NLL).
  std::string label;
};

/// Runs `config` (resolved: EvalConfig::resolved for the model) on `in`. Throws Error for bad
/// data or options; a benchmark whose data is absent returns status "skipped: ...". A
/// non-finite metric (value, standard error or any number in details) is an Error naming
/// `in.label` and the eval, never a reported value.
EvalResult run_eval(const EvalConfig& config, const EvalInputs& in);

}  // namespace qsweep
