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

#include "eval/task.h"

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
  std::string id;      ///< unique, stable, filesystem-safe: "gptq-b4-g128-act-code"
  std::string method;  ///< "rtn", "gptq" (later "awq", "gguf:Q4_K_M", ...)
  int bits = 4;
  int group_size = 128;  ///< -1 = per output channel
  bool sym = false;
  bool desc_act = false;
  bool static_groups = false;
  bool true_sequential = true;
  double damp_percent = 0.01;
  std::string calibration;  ///< a CalibrationSpec name, "" for methods without calibration
  int source_line = 0;      ///< line of the `variants:` entry it came from (for messages)
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
  std::vector<EvalConfig> evals;      ///< `eval:` entries, in file order, ids unique (unresolved)
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
EvalConfig parse_eval_options(const std::vector<std::pair<std::string, std::string>>& options);

/// llama.cpp quantization mixes as sweep methods (lower case of llama-quantize's names).
inline constexpr const char* kKQuantMixMethods[] = {"q2_k",   "q3_k_s", "q3_k_m", "q3_k_l",
                                                    "q4_0",   "q4_k_s", "q4_k_m", "q5_k_s",
                                                    "q5_k_m", "q6_k",   "q8_0"};
bool is_kquant_mix(const std::string& method);
/// The mix's default width: q3_k_m → 3, q8_0 → 8 (reports group rows by it).
int kquant_mix_nominal_bits(const std::string& method);

/// Methods the pipeline can run today. A known-but-not-yet-implemented method
/// (awq, gguf K-quant mixes) is rejected by validation with a message saying so.
bool method_is_available(const std::string& method);

}  // namespace qsweep
