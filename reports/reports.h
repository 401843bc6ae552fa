// reports/: the tradeoff table and the calibration-domain table of one sweep,
// rendered from the sweep's results.json to Markdown, CSV, JSON and one
// self-contained HTML file with inline SVG charts.
//
// reports/ knows nothing about how the numbers were computed: everything it
// prints comes from results.json (schema: docs/reports.md), and every number
// it prints carries how it was measured ("How measured" footnotes).
//
// All renderers are pure functions of the JSON (no clock, no locale, no file
// system), so their output is byte-for-byte reproducible; tests pin them with
// golden files. Malformed input throws qsweep::Error naming the JSON key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qsweep {

/// One evaluation (a column group of the tradeoff table), from results.json "evals".
struct ReportEval {
  std::string id;        ///< e.g. "ppl-wikitext2-chunks-ctx256-n32768"
  std::string task;      ///< "perplexity", later "multiple_choice", ...
  std::string dataset;   ///< "wikitext2", "code", ...
  std::string domain;    ///< "wiki", "code", ... (compared with calibration domains)
  std::string protocol;  ///< "chunks" | "strided" (perplexity); free text otherwise
  std::string metric;    ///< "perplexity", "accuracy", ...
  std::optional<int64_t> ctx, stride, max_tokens;
  bool higher_is_better = false;
  /// metric == "perplexity": shown relative to the baseline (value / baseline)
  /// and used for "Acceptable?". Other metrics are shown as value − baseline.
  bool is_perplexity = false;
  /// Short column name: the dataset, plus protocol and ctx when two evals share
  /// a dataset.
  std::string name;
};

/// One variant × one eval.
struct ReportCell {
  bool present = false;  ///< the variant has this metric
  double value = 0;      ///< the metric as measured (perplexity, accuracy, ...)
  /// Standard error of the quantity the metric is built from: nll_standard_error
  /// (of the mean NLL, nats) for perplexity, standard_error otherwise.
  double se = 0;
  bool has_se = false;
  /// Perplexity only: standard error of the mean per-token NLL *difference* from
  /// the baseline on the same tokens ("paired_nll_standard_error"), when the
  /// pipeline could pair them. Much tighter than se and se_base combined.
  bool has_paired_se = false;
  double paired_se = 0;        ///< the metric reported its standard error
  int64_t scored_tokens = -1;  ///< -1 when not reported
  /// present and the baseline's metric present: perplexity → value / baseline;
  /// other metrics → value − baseline (in the metric's own units).
  bool has_relative = false;
  double relative = 0;
  /// Standard error of `relative` by the delta method, errors treated as
  /// independent: perplexity rel·√(se² + se_base²); others √(se² + se_base²).
  /// 0 for the baseline itself; has_relative_se false when either se is missing.
  bool has_relative_se = false;
  double relative_se = 0;
  /// Calibration-seed replicates (results.json "seed_sd", "n_seeds"): `value` is then the mean
  /// over n_seeds seeds, seed_sd their sample standard deviation (metric units) and
  /// relative_seed_sd that of `relative` (seed_sd / baseline for perplexity). relative_se then
  /// combines both noises: √(token² + relative_seed_sd² / n_seeds) (docs/methodology.md).
  bool has_seed_sd = false;
  double seed_sd = 0, relative_seed_sd = 0;
  int64_t n_seeds = 1;
  /// The table neighbour above or below is within noise on this eval (see
  /// rows_within_noise); the table prints "±se ≈".
  bool near_noise = false;
  bool on_frontier = false;  ///< on this eval's Pareto frontier (perplexity evals only)
  /// The metric's own "status" when it is not "ok", e.g. "skipped: data/mmlu not found"
  /// (the value is then null and `present` false).
  std::string status;
  std::string protocol;  ///< the metric's "protocol" line (non-perplexity tasks), "" if none
  int64_t items = -1;    ///< items scored (questions, problems, positions); -1 when not reported
};

/// One variant. Table rows are the variants with status "ok".
struct ReportRow {
  std::string id, label, method, status, error;
  std::string calibration;         ///< calibration set name, "" when none
  std::string calibration_domain;  ///< "" when none
  bool is_baseline = false;
  std::optional<int64_t> bits, group_size, size_bytes;
  std::optional<double> bits_per_weight;  ///< linears: measured, scales and zeros included
  /// The variant's bytes on disk × 8 / the model's parameter count (every tensor counted).
  std::optional<double> file_bits_per_weight;
  /// The bits per weight rows are ordered by and the Pareto frontier and chart use:
  /// file_bits_per_weight when every table row has it (ReportData::axis_is_file), else
  /// bits_per_weight (results.json files written before file sizes were recorded).
  std::optional<double> axis_bpw;
  /// The variant's fields that define "the same quantization apart from the
  /// calibration" (everything but id, label, calibration, status, metrics, ...).
  nlohmann::json config_key;
  std::vector<ReportCell> cells;  ///< one per ReportData::evals, same order
  /// Largest relative perplexity over the perplexity evals; empty when any is missing.
  std::optional<double> worst_relative_ppl;
  /// "baseline", "yes", "usually", "marginal", "no"; "—" when unknown or not ok.
  std::string acceptable;

  bool in_table() const { return status == "ok"; }
};

/// Everything the renderers print, derived from results.json.
struct ReportData {
  std::string qsweep_version;
  std::string sweep_name, sweep_file, model, baseline_id, baseline_label;
  std::vector<ReportEval> evals;
  /// All variants. First the table rows (status "ok"): the baseline, then by
  /// bits_per_weight descending (quality decreases downward), ties by id; then
  /// the failed and skipped variants in input order.
  std::vector<ReportRow> rows;
  size_t n_table_rows = 0;
  /// Whether ReportRow::axis_bpw is the file bits per weight (else the linears').
  bool axis_is_file = false;
  /// Calibration sets by name (as in results.json "calibrations").
  nlohmann::json calibrations;
  double accept_yes = 1.05, accept_usually = 1.12, accept_marginal = 1.20;
  /// Per eval: indices into `rows` of the Pareto frontier (the lowest relative
  /// perplexity at ≤ that many bits per weight), by bits_per_weight ascending.
  /// Empty for non-perplexity evals.
  std::vector<std::vector<size_t>> frontier;
};

/// Parses and derives; throws qsweep::Error on malformed input (naming the key)
/// or when sweep.baseline names no variant.
ReportData derive_report(const nlohmann::json& results);

/// "yes" (≤ yes), "usually" (≤ usually), "marginal" (≤ marginal) or "no".
std::string acceptable_category(double worst_relative_ppl, double yes, double usually,
                                double marginal);

/// The noise rule: two adjacent rows a, b on one eval differ by less than 2σ,
/// where σ is the delta-method standard error of relative_a − relative_b with
/// the NLL errors treated as independent. For perplexity (r = relative):
///   σ² = r_a²·se_a² + r_b²·se_b² + (r_a − r_b)²·se_base²   (neither is the baseline)
///   σ² = r_a²·(se_a² + se_base²)                           (b is the baseline)
/// For other metrics σ² = se_a² + se_b². A row with calibration-seed replicates adds its
/// seed variance of the mean, relative_seed_sd² / n_seeds, to σ². False when an se is missing.
bool rows_within_noise(const ReportData& data, size_t eval, size_t row_a, size_t row_b);

/// A set of variants that differ only by their calibration set.
struct CalibrationGroup {
  std::string name;          ///< common prefix of the members' labels, e.g. "GPTQ 3-bit g128"
  std::vector<size_t> rows;  ///< indices into ReportData::rows, by calibration name
};

/// One in-domain vs out-of-domain comparison (same group, same eval, both measured).
struct CalibrationComparison {
  size_t group = 0, eval = 0;
  size_t in_row = 0, out_row = 0;  ///< indices into ReportData::rows
  /// (out / in − 1) × 100: for perplexity, how much worse the out-of-domain
  /// calibration is (positive: calibrating in-domain helped).
  double change_pct = 0;
  bool in_domain_better = false;  ///< respects higher_is_better
  /// The two values differ by less than 2σ (rows_within_noise: token and seed noise): the
  /// table marks the change ≈ and the summary does not count it as an effect.
  bool within_noise = false;
};

struct CalibrationAnalysis {
  std::vector<CalibrationGroup> groups;
  std::vector<CalibrationComparison> comparisons;
  /// Per eval: mean of (relative − 1) × 100 over the quantized table rows that
  /// have every perplexity eval (so the means are over the same variants);
  /// empty for non-perplexity evals or when no such row exists.
  std::vector<std::optional<double>> mean_degradation_pct;
  size_t n_variants_in_mean = 0;
};

CalibrationAnalysis analyze_calibration(const ReportData& data);

/// One eval's loss for the variants of one bit width.
struct CapabilityLoss {
  size_t eval = 0;
  /// Mean over the variants of the relative degradation in percent, positive = worse:
  /// perplexity (relative − 1)·100; higher-is-better metrics (baseline − value)/baseline·100.
  double loss_pct = 0;
  size_t variants = 0;
  bool within_noise = false;  ///< every variant's change is within 2σ of the baseline's
};

/// The capability summary: for each nominal bit width of the quantized table rows
/// (ascending), every eval that has a relative degradation (perplexity, and metrics whose
/// baseline value is above 0; KL divergence has no relative form and is left out), sorted by
/// loss, largest first — those outside noise before those within it.
struct CapabilityAtBits {
  int64_t bits = 0;
  std::vector<size_t> rows;  ///< the variants averaged
  std::vector<CapabilityLoss> losses;
  /// Evals left out because the baseline scored 0 (nothing to lose: chance or floor level).
  std::vector<size_t> at_floor;
};
std::vector<CapabilityAtBits> analyze_capabilities(const ReportData& data);

/// The tradeoff table with its notes, the failed variants, "How measured" and
/// the calibration-domain section (render_calibration_md) — table.md.
std::string render_table_md(const nlohmann::json& results);
/// One line per variant (failed ones last), RFC 4180 (CRLF, quoted when needed) — table.csv.
std::string render_table_csv(const nlohmann::json& results);
/// The calibration-domain section of table.md: table plus the two summary sentences.
std::string render_calibration_md(const nlohmann::json& results);
/// One self-contained HTML page (inline CSS and SVG, no scripts, no URLs) — report.html.
std::string render_html(const nlohmann::json& results);

/// One measured (tensor group, type) of results.json's "sensitivity" list (issue #19).
struct SensitivityCell {
  std::string name, role;  ///< "blk.3.attn_v.weight", "attn_v"
  int layer = -1;          ///< -1: token_embd, output
  double kl = 0, kl_se = 0;
  int64_t bytes = 0, bytes_f16 = 0;
};
/// One sensitivity node: every group at one type.
struct SensitivityMap {
  std::string calibration, type, status;
  uint64_t seed = 0;
  int layers = 0;  ///< 1 + the largest layer measured
  std::vector<SensitivityCell> cells;
};
/// results.json's "sensitivity" list (absent: none); Error naming the entry for a bad value.
std::vector<SensitivityMap> sensitivity_maps(const nlohmann::json& results);
/// The layers × roles heat map of one map (SVG): rows "embd/out" then each layer, columns
/// attn_q … ffn_down, token_embd, output; each cell a <g class="cell" data-group=NAME
/// data-kl=KL> with the KL printed (3 significant digits) and a <title>.
std::string sensitivity_heatmap_svg(const SensitivityMap& map);
/// table.md's "Most sensitive tensor groups" sections (one per calibration set studied).
std::string sensitivity_md(const nlohmann::json& results);
/// report.html's "Sensitivity per tensor group" section ("" without a study).
std::string sensitivity_html(const nlohmann::json& results);

/// Writes the requested formats into out_dir (created if needed), each file atomically:
/// "md" → table.md, "csv" → table.csv, "json" → results.json (pretty, as given),
/// "html" → report.html. An empty list means all four; an unknown name throws Error.
void render_reports(const nlohmann::json& results, const std::string& out_dir,
                    const std::vector<std::string>& formats);

}  // namespace qsweep
