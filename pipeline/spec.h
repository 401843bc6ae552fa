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
#include "quantize/method.h"

namespace qsweep {

/// A named calibration set (`calibration:` map entry).
struct CalibrationSpec {
  std::string name;    ///< the map key, e.g. "code"; variants refer to it
  std::string source;  ///< built-in name (wikitext2, code, docs), file, file.jsonl:field or glob
  std::string domain;  ///< optional override of the source's domain label ("" = default)
  int n_samples = 128;
  int seqlen = 256;
  uint64_t seed = 0;  ///< the first of `seeds`
  /// Every calibration seed (`seed: s` or `seeds: [s, ...]`), in file order, distinct. With
  /// more than one, each variant calibrated with this set is quantized and evaluated once per
  /// seed (replicates) and results.json reports the mean and the spread over seeds.
  std::vector<uint64_t> seeds = {0};
  bool replicated() const { return seeds.size() > 1; }
  std::string sampling = "random";  ///< "random" or "contiguous"
};

/// One concrete variant after matrix expansion (every list resolved to one value).
struct VariantSpec {
  std::string id;            ///< unique, stable, filesystem-safe: "gptq-b4-g128-act-code"
  QuantMethodConfig config;  ///< the method and its options (quantize/method.h)
  std::string calibration;   ///< a CalibrationSpec name, "" for methods without calibration
  /// The variant's own `device:` (auto|cpu|cuda) for its quantize node; "" = the sweep's.
  std::string device;
  int source_line = 0;  ///< line of the `variants:` entry it came from (for messages)
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

struct ReportSpec {
  std::vector<std::string> formats = {"md", "csv", "json", "html"};
  /// Relative-perplexity bounds of the "Acceptable?" column, ascending.
  double yes = 1.05, usually = 1.12, marginal = 1.20;
};

/// What a Slurm job of one node kind asks for (`resources:` section; docs/sweep-format.md).
/// Unset fields (0 or "") are not passed to sbatch: the cluster's defaults apply.
struct SlurmResources {
  int gpus = 0;      ///< --gpus
  int cpus = 0;      ///< --cpus-per-task
  std::string mem;   ///< --mem, e.g. "64G"
  std::string time;  ///< --time, e.g. "4:00:00" or "1-00:00:00"
};

/// The `sensitivity:` section (issue #19): which candidate types the study measures every
/// tensor group at, on which calibration source, on how many held-out windows. One
/// sensitivity node per (calibration seed, type); auto_mix variants read those nodes.
struct SensitivitySpec {
  /// Sweep-file names, distinct, in file order ("q2_k", ...: quantize/sensitivity.h).
  std::vector<std::string> types = {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_0"};
  /// The calibration set whose source the study's windows come from when no auto_mix variant
  /// names one ("" = only the auto_mix variants' own sets); also auto_mix's default set.
  std::string calibration;
  /// Held-out windows (calibration/calibration.h held_out_windows); 0 = the calibration set's.
  int n_samples = 0;
  int seqlen = 0;
};

struct SweepSpec {
  std::string file;  ///< the YAML file it was read from
  std::string name;
  std::string model;  ///< as written: a name in the data directory or a path
  std::string baseline = "fp16";
  /// `device:` where quantize and eval nodes run: "auto" (a CUDA device when one is usable at
  /// run time, else the CPU), "cpu" or "cuda" (fails without a usable CUDA device).
  std::string device = "auto";
  std::map<std::string, CalibrationSpec> calibration;
  std::vector<VariantSpec> variants;  ///< expanded, in file order, ids unique
  std::vector<EvalConfig> evals;      ///< `eval:` entries, in file order, ids unique (unresolved)
  ReportSpec report;
  /// `resources:` entries by kind: "default", "calibrate", "quantize", "eval".
  std::map<std::string, SlurmResources> resources;
  /// The `sensitivity:` section as written, or its defaults (applied to auto_mix variants'
  /// calibration sets) when absent.
  SensitivitySpec sensitivity;
  bool has_sensitivity_section = false;
};

/// The resources of a node kind ("calibrate", "quantize", "eval"): `default`'s fields, then
/// the kind's own over them.
SlurmResources resources_for(const SweepSpec& spec, const std::string& kind);

/// Parses and validates a sweep file. Throws qsweep::Error with
/// "FILE:LINE:COL: message" (one line; a suggestion for typos) on the first problem.
SweepSpec parse_sweep(const std::string& path);
/// The same from text (`file` is used in messages only).
SweepSpec parse_sweep_text(const std::string& yaml, const std::string& file);

/// One evaluation from command-line options (`qsweep eval`): `options` are an eval entry's
/// keys and values as text, e.g. {{"task", "humaneval"}, {"limit", "20"}}; the same checks,
/// defaults and id as in a sweep file. Errors name the option as the flag `--max-new-tokens`.
EvalConfig parse_eval_options(const std::vector<std::pair<std::string, std::string>>& options);

}  // namespace qsweep
