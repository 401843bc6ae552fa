// The format-neutral tables and sentences, and the Markdown and CSV writers.
#include <algorithm>
#include <cmath>
#include <set>

#include "reports/detail/text.h"
#include "reports/reports.h"

namespace qsweep {

using nlohmann::json;
using namespace reports_detail;

namespace reports_detail {
namespace {

std::string value_text(const ReportEval& e, double v) {
  return fixed(v, e.is_perplexity ? 2 : 3);
}

/// The value, with " ±sd" (the sample standard deviation over calibration seeds) when the cell
/// holds the mean of replicates.
std::string value_with_spread(const ReportEval& e, const ReportCell& c) {
  if (!c.present) return kMissing;
  std::string s = value_text(e, c.value);
  if (c.has_seed_sd) s += " ±" + se_fixed(c.seed_sd, e.is_perplexity ? 2 : 3);
  return s;
}

std::string relative_text(const ReportRow& r, const ReportEval& e, const ReportCell& c) {
  if (!c.has_relative) return kMissing;
  std::string s = e.is_perplexity ? fixed(c.relative, 3) : signed_fixed(c.relative, 3);
  if (c.has_seed_sd && !r.is_baseline) {
    // Replicates: ± is the seed spread; ≈ still uses the combined noise (rows_within_noise).
    s += " ±" + se_fixed(c.relative_seed_sd, 3);
    if (c.near_noise) s += " ≈";
  } else if (c.near_noise) {
    if (!r.is_baseline && c.has_relative_se) s += " ±" + se_fixed(c.relative_se, 3);
    s += " ≈";
  }
  return s;
}

std::string or_missing(const std::optional<int64_t>& v) {
  return v ? std::to_string(*v) : std::string(kMissing);
}

/// "code" or "wikitext2 (wiki domain)".
std::string eval_with_domain(const ReportEval& e) {
  if (e.domain.empty() || e.domain == e.name) return e.name;
  return e.name + " (" + e.domain + " domain)";
}

std::string join(const std::vector<std::string>& parts, const std::string& sep,
                 const std::string& last_sep) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) s += i + 1 == parts.size() ? last_sep : sep;
    s += parts[i];
  }
  return s;
}

}  // namespace

Table tradeoff_table(const ReportData& d) {
  Table t;
  t.header = {"Format", "Bits", "bpw file", "bpw linears", "Size (MB)"};
  t.align = "lrrrr";
  for (const auto& e : d.evals) {
    if (e.is_perplexity) {
      t.header.push_back("rel PPL " + e.name);
      t.header.push_back("PPL " + e.name);
    } else {
      t.header.push_back(e.metric + " " + e.name);
      t.header.push_back("Δ " + e.metric + " " + e.name);
    }
    t.align += "rr";
  }
  t.header.push_back("Acceptable?");
  t.align += "l";
  for (size_t i = 0; i < d.n_table_rows; ++i) {
    const ReportRow& r = d.rows[i];
    std::vector<std::string> row = {
        r.label, or_missing(r.bits),
        r.file_bits_per_weight ? fixed(*r.file_bits_per_weight, 3) : std::string(kMissing),
        r.bits_per_weight ? fixed(*r.bits_per_weight, 3) : std::string(kMissing),
        r.size_bytes ? fixed(*r.size_bytes / 1e6, 2) : std::string(kMissing)};
    for (size_t e = 0; e < d.evals.size(); ++e) {
      const ReportCell& c = r.cells[e];
      const std::string value = value_with_spread(d.evals[e], c);
      const std::string rel = relative_text(r, d.evals[e], c);
      if (d.evals[e].is_perplexity) {
        row.push_back(rel);
        row.push_back(value);
      } else {
        row.push_back(value);
        row.push_back(rel);
      }
    }
    row.push_back(r.acceptable);
    t.rows.push_back(std::move(row));
  }
  return t;
}

std::vector<std::string> tradeoff_notes(const ReportData& d) {
  const std::string& b = d.baseline_label;
  std::vector<std::string> n;
  n.push_back("Rows: the baseline (" + b + ") first, then by " +
              (d.axis_is_file ? "bpw file" : "bpw linears (not every row has a file size)") +
              ", highest first (quality falls downward); failed and skipped variants are listed "
              "below the table. The Pareto frontier uses the same bits per weight.");
  n.push_back("rel PPL = the variant's perplexity / " + b +
              "'s perplexity on the same eval (lower is better); PPL = the absolute perplexity.");
  bool other = false;
  for (const auto& e : d.evals) other = other || !e.is_perplexity;
  if (other)
    n.push_back("Δ = the variant's value − " + b +
                "'s value, in the metric's own units (points for percentages).");
  n.push_back(
      "bpw file = the variant's bytes on disk × 8 / the model's parameter count (every tensor, "
      "quantized or not); bpw linears = measured bits per weight of the quantized linear "
      "layers only, scales and zero points included; Size = size_bytes / 10^6.");
  n.push_back(
      "Acceptable? = the category of the worst relative perplexity over the perplexity "
      "evals: yes ≤ " +
      fixed(d.accept_yes, 2) + ", usually ≤ " + fixed(d.accept_usually, 2) + ", marginal ≤ " +
      fixed(d.accept_marginal, 2) + ", no above.");
  n.push_back(
      "≈ = this row and the row next to it differ by less than twice the standard error of "
      "their difference on that eval, so the table cannot order them; ±x = the standard error of "
      "the relative perplexity (delta method): rel × SE of the mean per-token NLL difference "
      "from the baseline on the same tokens (paired) where the results carry it, else "
      "rel × √(se² + se_base²) with se the standard errors of the mean NLL treated as "
      "independent, which overstates the noise of runs scored on the same tokens.");
  bool replicated = false;
  for (const auto& r : d.rows)
    for (const auto& c : r.cells) replicated = replicated || c.has_seed_sd;
  if (replicated)
    n.push_back(
        "Variants calibrated with several seeds show the mean over the seeds ± the sample "
        "standard deviation over the seeds; their ≈ uses the token noise and the seed noise "
        "together: σ² of a row's mean = (paired token SE)² + sd² / n_seeds (docs/methodology.md).");
  n.push_back(std::string(kMissing) + " = not measured.");
  return n;
}

std::vector<std::string> how_measured_lines(const ReportData& d) {
  std::vector<std::string> lines;
  for (size_t e = 0; e < d.evals.size(); ++e) {
    const ReportEval& ev = d.evals[e];
    int64_t lo = -1, hi = -1;
    bool missing = false;
    for (const auto& r : d.rows) {
      const ReportCell& c = r.cells[e];
      if (!c.present) continue;
      if (c.scored_tokens < 0) {
        missing = true;
        continue;
      }
      lo = lo < 0 ? c.scored_tokens : std::min(lo, c.scored_tokens);
      hi = std::max(hi, c.scored_tokens);
    }
    std::string tokens;
    if (lo < 0) {
      tokens = "tokens scored not reported";
    } else if (lo == hi) {
      tokens = thousands(lo) + " tokens scored per variant";
    } else {
      tokens = thousands(lo) + " to " + thousands(hi) + " tokens scored (differs between variants)";
    }
    if (missing && lo >= 0) tokens += "; some variants did not report it";
    if (!ev.is_perplexity) {
      // Tasks describe their own protocol (shots, decoding, sandbox, ...): quote the
      // baseline's (every variant ran the same options), with the item count.
      std::string protocol, skipped;
      int64_t items = -1;
      for (const auto& r : d.rows) {
        const ReportCell& c = r.cells[e];
        if (!c.status.empty() && skipped.empty()) skipped = c.status;
        if (c.present && protocol.empty()) {
          protocol = c.protocol;
          items = c.items;
        }
      }
      std::string s = ev.name + " (" + ev.id + "): " + (ev.metric.empty() ? ev.task : ev.metric) +
                      " on " + ev.dataset;
      if (!ev.domain.empty()) s += ", domain " + ev.domain;
      if (!skipped.empty()) s += "; " + skipped + " (the task did not run)";
      if (!protocol.empty()) s += "; " + protocol;
      if (items >= 0) s += "; " + thousands(items) + " items";
      s += ev.higher_is_better ? "; higher is better." : "; lower is better.";
      lines.push_back(s);
      continue;
    }
    std::string s = ev.name + " (" + ev.id + "): " + (ev.metric.empty() ? ev.task : ev.metric) +
                    " on " + ev.dataset;
    if (!ev.domain.empty()) s += ", domain " + ev.domain;
    if (!ev.protocol.empty()) s += "; protocol " + ev.protocol;
    s += ", ctx " + or_missing(ev.ctx) + ", stride " + or_missing(ev.stride) + ", max_tokens " +
         (ev.max_tokens ? thousands(*ev.max_tokens) : std::string(kMissing)) + "; " + tokens +
         (ev.higher_is_better ? "; higher is better." : "; lower is better.");
    lines.push_back(s);
  }
  for (auto it = d.calibrations.begin(); it != d.calibrations.end(); ++it) {
    const json& c = it.value();
    const std::string w = "calibrations." + it.key();
    auto str = [&](const char* k) {
      const std::string v = c.is_object() ? get_string(c, k, w) : "";
      return v.empty() ? std::string(kMissing) : v;
    };
    auto num = [&](const char* k) {
      const auto v = c.is_object() ? get_int(c, k, w) : std::nullopt;
      return v ? thousands(*v) : std::string(kMissing);
    };
    // Replicated sets list their seeds: each calibrated variant was quantized once per seed.
    std::string seeds = "seed " + num("seed");
    const auto sit = c.is_object() ? c.find("seeds") : c.end();
    if (sit != c.end() && sit->is_array() && sit->size() > 1) {
      std::vector<std::string> list;
      for (const auto& v : *sit) list.push_back(v.dump());
      seeds = "seeds " + join(list, ", ", ", ") + " (one quantization per seed; mean ± sd)";
    }
    lines.push_back("calibration " + it.key() + ": source " + str("source") + ", domain " +
                    str("domain") + ", " + num("n_samples") + " samples × " + num("seqlen") +
                    " tokens, " + seeds + ", " + str("sampling") + " sampling.");
  }
  return lines;
}

Table calibration_table(const ReportData& d, const CalibrationAnalysis& a) {
  std::set<std::string> cal_set;
  for (const auto& g : a.groups)
    for (size_t i : g.rows) cal_set.insert(d.rows[i].calibration);
  const std::vector<std::string> cals(cal_set.begin(), cal_set.end());
  Table t;
  t.header = {"Variant", "Eval"};
  t.align = "ll";
  for (const auto& c : cals) {
    t.header.push_back("calibrated on " + c);
    t.align += "r";
  }
  t.header.push_back("out vs in");
  t.align += "l";
  for (size_t gi = 0; gi < a.groups.size(); ++gi) {
    const auto& g = a.groups[gi];
    for (size_t e = 0; e < d.evals.size(); ++e) {
      const ReportEval& ev = d.evals[e];
      std::vector<std::string> row = {g.name, ev.name};
      bool has_in = false;
      for (const auto& cal : cals) {
        std::vector<std::string> parts;
        for (size_t i : g.rows) {
          const ReportRow& r = d.rows[i];
          if (r.calibration != cal) continue;
          const bool in = !ev.domain.empty() && r.calibration_domain == ev.domain;
          has_in = has_in || in;
          std::string s = r.cells[e].present ? value_with_spread(ev, r.cells[e])
                                             : (r.in_table() ? kMissing : r.status);
          parts.push_back(s + (in ? " (in)" : " (out)"));
        }
        row.push_back(join(parts, "; ", "; "));
      }
      std::vector<std::string> changes;
      for (const auto& c : a.comparisons)
        if (c.group == gi && c.eval == e)
          changes.push_back(signed_fixed(c.change_pct, 1) + "% (" + d.rows[c.out_row].calibration +
                            " vs " + d.rows[c.in_row].calibration + ")" +
                            (c.within_noise ? " ≈" : ""));
      if (changes.empty())
        changes.push_back(has_in ? std::string(kMissing) : "— (no in-domain calibration)");
      row.push_back(join(changes, "; ", "; "));
      t.rows.push_back(std::move(row));
    }
  }
  return t;
}

std::vector<std::string> calibration_notes(const ReportData&, const CalibrationAnalysis& a) {
  bool noise = false;
  for (const auto& c : a.comparisons) noise = noise || c.within_noise;
  std::vector<std::string> n = {
      "Each group holds variants that differ only by their calibration set. (in) = the "
      "calibration's domain is the eval's domain; (out) = it is not.",
      "out vs in = (value with the out-of-domain calibration / value with the in-domain one − 1) "
      "× 100; for perplexity a positive change means calibrating in-domain helped."};
  if (noise)
    n.push_back(
        "≈ = within noise: the two values differ by less than twice the standard error of their "
        "difference (token noise, plus the calibration-seed spread where there are replicates); "
        "not counted as an effect.");
  return n;
}

std::vector<std::string> calibration_summary(const ReportData& d, const CalibrationAnalysis& a) {
  std::vector<std::string> s;
  const std::string n_var = std::to_string(a.n_variants_in_mean);
  std::vector<size_t> ppl;
  for (size_t e = 0; e < d.evals.size(); ++e)
    if (a.mean_degradation_pct[e]) ppl.push_back(e);
  if (ppl.empty()) {
    s.push_back(
        "No quantized variant has every perplexity eval yet, so no capability is compared.");
  } else if (ppl.size() == 1) {
    s.push_back("Across all " + n_var + " quantized variants, " +
                eval_with_domain(d.evals[ppl[0]]) + " (the only perplexity eval) lost a mean " +
                signed_fixed(*a.mean_degradation_pct[ppl[0]], 1) + "% relative perplexity vs " +
                d.baseline_label + ".");
  } else {
    size_t worst = ppl[0];
    for (size_t e : ppl)
      if (*a.mean_degradation_pct[e] > *a.mean_degradation_pct[worst]) worst = e;
    std::vector<std::string> others;
    for (size_t e : ppl)
      if (e != worst)
        others.push_back(signed_fixed(*a.mean_degradation_pct[e], 1) + "% on " +
                         eval_with_domain(d.evals[e]));
    s.push_back("Across all " + n_var + " quantized variants, " + eval_with_domain(d.evals[worst]) +
                " suffered most: mean " + signed_fixed(*a.mean_degradation_pct[worst], 1) +
                "% relative perplexity vs " + d.baseline_label + ", against " +
                join(others, ", ", " and ") + ".");
  }
  size_t m = 0, helped = 0, noise = 0;
  double sum = 0, lo = INFINITY, hi = -INFINITY;
  for (const auto& c : a.comparisons) {
    if (!d.evals[c.eval].is_perplexity) continue;
    ++m;
    helped += c.in_domain_better && !c.within_noise;
    noise += c.within_noise;
    sum += c.change_pct;
    lo = std::min(lo, c.change_pct);
    hi = std::max(hi, c.change_pct);
  }
  if (m == 0) {
    s.push_back(
        "No variant was calibrated both in and out of a perplexity eval's domain, so the "
        "calibration-domain effect is not measured.");
  } else {
    s.push_back("Calibrating on the evaluation's own domain helped in " + std::to_string(helped) +
                " of " + std::to_string(m) + " perplexity comparisons" +
                (noise ? " (" + std::to_string(noise) + " within noise, counted as no effect)"
                       : std::string()) +
                "; the out-of-domain "
                "calibration's perplexity was " +
                signed_fixed(sum / m, 1) + "% vs the in-domain one on average (from " +
                signed_fixed(lo, 1) + "% to " + signed_fixed(hi, 1) + "%).");
  }
  return s;
}

}  // namespace reports_detail

namespace reports_detail {

std::vector<std::string> capability_lines(const ReportData& d) {
  const std::vector<CapabilityAtBits> caps = analyze_capabilities(d);
  size_t tasks = 0;
  for (const auto& e : d.evals) tasks += !e.is_perplexity;
  std::vector<std::string> lines;
  if (tasks == 0) return lines;
  for (const auto& c : caps) {
    if (c.losses.empty()) continue;
    std::vector<std::string> labels;
    for (size_t r : c.rows) labels.push_back(d.rows[r].label);
    auto loss_text = [&](const CapabilityLoss& l) {
      const ReportEval& ev = d.evals[l.eval];
      const double signed_pct = ev.is_perplexity ? l.loss_pct : -l.loss_pct;
      return ev.name + " " + (ev.is_perplexity ? "perplexity" : ev.metric) + " " +
             (signed_pct >= 0 ? "+" : "") + fixed(signed_pct, 1) + "%";
    };
    std::vector<std::string> clear, noise;
    for (const auto& l : c.losses) (l.within_noise ? noise : clear).push_back(loss_text(l));
    std::string line =
        "at " + std::to_string(c.bits) + " bits (" + join(labels, ", ", ", ") + "): ";
    if (!clear.empty()) {
      line += d.evals[c.losses[0].eval].name + " loses most: " + clear[0];
      if (clear.size() > 1)
        line += " vs " + join(std::vector<std::string>(clear.begin() + 1, clear.end()), ", ", ", ");
      if (!noise.empty()) line += "; within noise: " + join(noise, ", ", ", ");
    } else {
      line += "every change is within noise: " + join(noise, ", ", ", ");
    }
    if (!c.at_floor.empty()) {
      std::vector<std::string> floor;
      for (size_t e : c.at_floor) floor.push_back(d.evals[e].name);
      line += "; not ranked (the baseline scores 0, nothing to lose): " + join(floor, ", ", ", ");
    }
    lines.push_back(line + ".");
  }
  return lines;
}

std::string capability_footnote(const ReportData& d) {
  return "Loss = mean over the variants of that bit width of the relative change vs " +
         d.baseline_label +
         ": perplexity (relative − 1), other metrics (value − baseline) / baseline; "
         "\"within noise\" = every variant's change is under twice its standard error. "
         "KL divergence has no relative form and is shown in the table only.";
}

}  // namespace reports_detail

namespace {

std::string md_bullets(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += "- " + l + "\n";
  return s;
}

std::string capabilities_md(const ReportData& d) {
  const std::vector<std::string> lines = capability_lines(d);
  if (lines.empty()) return "";
  return "## Which capability suffers most\n\n" + md_bullets(lines) + "\n" +
         capability_footnote(d) + "\n\n";
}

std::string calibration_md(const ReportData& d) {
  const CalibrationAnalysis a = analyze_calibration(d);
  std::string s = "## Calibration domain\n\n";
  if (a.groups.empty()) {
    s += "No variants differ only by their calibration set.\n\n";
  } else {
    s += table_to_md(calibration_table(d, a)) + "\n" + md_bullets(calibration_notes(d, a)) + "\n";
  }
  for (const auto& l : calibration_summary(d, a)) s += l + "\n\n";
  return s;
}

}  // namespace

std::string render_calibration_md(const json& results) {
  return calibration_md(derive_report(results));
}

std::string render_table_md(const json& results) {
  const ReportData d = derive_report(results);
  std::string s = "# Tradeoff table: " + d.sweep_name + "\n\n";
  s += "Model `" + d.model + "`, baseline " + d.baseline_label + " (`" + d.baseline_id +
       "`), sweep `" + d.sweep_file + "`, qsweep " + d.qsweep_version + ".\n\n";
  s += table_to_md(tradeoff_table(d)) + "\n" + md_bullets(tradeoff_notes(d)) + "\n";
  if (d.n_table_rows < d.rows.size()) {
    s += "### Not in the table\n\n";
    for (size_t i = d.n_table_rows; i < d.rows.size(); ++i) {
      const ReportRow& r = d.rows[i];
      s += "- " + md_cell(r.label) + " (" + md_code(r.id) + "): " + r.status;
      if (!r.error.empty()) s += ": " + md_code(r.error);
      s += "\n";
    }
    s += "\n";
  }
  s += "### How measured\n\n" + md_bullets(how_measured_lines(d)) + "\n";
  s += capabilities_md(d);
  s += calibration_md(d);
  s += sensitivity_md(results);
  return s;
}

std::string render_table_csv(const json& results) {
  const ReportData d = derive_report(results);
  std::vector<std::string> header = {"id",
                                     "label",
                                     "status",
                                     "method",
                                     "bits",
                                     "group_size",
                                     "calibration",
                                     "bits_per_weight",
                                     "file_bits_per_weight",
                                     "size_bytes"};
  for (const auto& e : d.evals)
    for (const char* f : {"value", "relative", "relative_se", "near_noise", "pareto"})
      header.push_back(e.id + ":" + f);
  for (const char* f : {"worst_relative_ppl", "acceptable", "error"}) header.push_back(f);
  std::string s;
  auto line = [&](const std::vector<std::string>& fields) {
    for (size_t i = 0; i < fields.size(); ++i) {
      if (i) s += ',';
      s += csv_field(fields[i]);
    }
    s += "\r\n";
  };
  line(header);
  auto opt = [](const auto& v) { return v ? std::to_string(*v) : std::string(); };
  for (const auto& r : d.rows) {
    std::vector<std::string> f = {r.id,
                                  r.label,
                                  r.status,
                                  r.method,
                                  opt(r.bits),
                                  opt(r.group_size),
                                  r.calibration,
                                  r.bits_per_weight ? shortest(*r.bits_per_weight) : "",
                                  r.file_bits_per_weight ? shortest(*r.file_bits_per_weight) : "",
                                  opt(r.size_bytes)};
    for (size_t e = 0; e < d.evals.size(); ++e) {
      const ReportCell& c = r.cells[e];
      const bool ppl = d.evals[e].is_perplexity;
      f.push_back(c.present ? shortest(c.value) : "");
      f.push_back(c.has_relative ? fixed(c.relative, 6) : "");
      f.push_back(c.has_relative && c.has_relative_se ? fixed(c.relative_se, 6) : "");
      f.push_back(c.has_relative && r.in_table() ? (c.near_noise ? "true" : "false") : "");
      f.push_back(ppl && c.has_relative && r.in_table() ? (c.on_frontier ? "true" : "false") : "");
    }
    f.push_back(r.worst_relative_ppl ? fixed(*r.worst_relative_ppl, 6) : "");
    f.push_back(r.in_table() && r.acceptable != kMissing ? r.acceptable : "");
    f.push_back(r.error);
    line(f);
  }
  return s;
}

}  // namespace qsweep
