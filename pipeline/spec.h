// The sweep file (YAML) as data: what to quantize, how to calibrate, what to
// evaluate, how to report. parse_sweep() validates everything before any work
// starts: unknown keys (with a "did you mean"), wrong types, impossible
// combinations, each reported as `file:line:column: message`.
// The syntax is documented key by key in docs/sweep-format.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "quantize/method.h"

namespace qsweep {

/// A named calibration set (`calibration:` map entry).
struct CalibrationSpec {
  std::string name;    ///< the map key, e.g. "code"; variants refer to it
  std::string source;  ///< built-in name (wikitext2, code, docs), file, file.jsonl:field or glob
  std::string domain;  ///< optional override of the source's domain label ("" = default)
  int n_samples = 128;
  int seqlen = 256;
  uint64_t seed = 0;
  std::string sampling = "random";  ///< "random" or "contiguous"
};

/// One concrete variant after matrix expansion (every list resolved to one value).
struct VariantSpec {
  std::string id;            ///< unique, stable, filesystem-safe: "gptq-b4-g128-act-code"
  QuantMethodConfig config;  ///< the method and its options (quantize/method.h)
  std::string calibration;   ///< a CalibrationSpec name, "" for methods without calibration
  int source_line = 0;       ///< line of the `variants:` entry it came from (for messages)
};

/// What reports show: config.label(), then " (<calibration>)", or " imatrix (<calibration>)"
/// for a llama.cpp mix: "GPTQ 4-bit g128 act-order (code)", "Q4_K_M imatrix (code)".
std::string variant_label(const VariantSpec& v);
/// results.json's option columns of a variant row (bits, group_size, sym, desc_act,
/// static_groups, true_sequential, damp_percent): the method's own options, GPTQ's defaults
/// for those it has not; group_size null for a llama.cpp mix.
nlohmann::json variant_option_columns(const QuantMethodConfig& config);

/// The id rule (docs/sweep-format.md, "Variant ids"): config.id(), then "-<calibration>", or
/// "-imat-<calibration>" for a llama.cpp mix's importance matrix.
std::string variant_id(const QuantMethodConfig& config, const std::string& calibration);

/// One evaluation (`eval:` list entry). Which keys a task takes is in docs/sweep-format.md
/// ("Tasks"); keys a task does not use keep their defaults.
struct EvalSpec {
  std::string id;  ///< unique, stable: "ppl-wikitext2-chunks-ctx256"
  std::string task = "perplexity";
  /// perplexity, kld, line_completion: a text dataset name or file; humaneval, mbpp, gsm8k,
  /// mmlu, ceval: the benchmark's file/folder, defaulting to its place in the data directory.
  std::string dataset;
  std::string protocol = "chunks";  ///< perplexity: "chunks" or "strided"
  int ctx = 0;                      ///< perplexity, kld: 0 = the model's max_position_embeddings
  int stride = 0;                   ///< strided only; 0 = ctx / 2
  int64_t max_tokens = 0;           ///< perplexity, kld: 0 = all
  int top_k = 32;                   ///< kld: baseline top-k stored per position
  int64_t limit = 0;                ///< items (mmlu/ceval: per subject); 0 = the task's default
  std::string subjects;             ///< mmlu/ceval: comma-separated subject names; "" = all
  int shots = -1;                   ///< mmlu/ceval/gsm8k/mbpp; -1 = the task's default
  int samples = 1;                  ///< humaneval/mbpp: completions per problem (pass@k)
  double temperature = 0;           ///< humaneval/mbpp: 0 = greedy
  int max_new_tokens = 0;           ///< generative tasks; 0 = the task's default
  uint64_t seed = 0;                ///< line_completion positions, sampling seeds
};

struct ReportSpec {
  std::vector<std::string> formats = {"md", "csv", "json", "html"};
  /// Relative-perplexity bounds of the "Acceptable?" column, ascending.
  double yes = 1.05, usually = 1.12, marginal = 1.20;
};

struct SweepSpec {
  std::string file;  ///< the YAML file it was read from
  std::string name;
  std::string model;  ///< as written: a name in the data directory or a path
  std::string baseline = "fp16";
  std::map<std::string, CalibrationSpec> calibration;
  std::vector<VariantSpec> variants;  ///< expanded, in file order, ids unique
  std::vector<EvalSpec> evals;
  ReportSpec report;
};

/// Parses and validates a sweep file. Throws qsweep::Error with
/// "FILE:LINE:COL: message" (one line; a suggestion for typos) on the first problem.
SweepSpec parse_sweep(const std::string& path);
/// The same from text (`file` is used in messages only).
SweepSpec parse_sweep_text(const std::string& yaml, const std::string& file);

/// One evaluation from command-line options (`qsweep eval`): `options` are an eval entry's
/// keys and values as text, e.g. {{"task", "humaneval"}, {"limit", "20"}}; the same checks,
/// defaults and id as in a sweep file. Errors name the option as the flag `--max-new-tokens`.
EvalSpec parse_eval_options(const std::vector<std::pair<std::string, std::string>>& options);

}  // namespace qsweep
