// results.json → ReportData: relative values, noise flags, Acceptable?, Pareto
// frontier, and the calibration-domain analysis.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "common/errors.h"
#include "reports/detail/text.h"
#include "reports/reports.h"

namespace qsweep {

using nlohmann::json;
using namespace reports_detail;

namespace {

// Variant fields that do not define the quantization itself: variants equal in
// everything else differ only by calibration (CalibrationGroup).
const std::set<std::string> kNotConfig = {"id",
                                          "label",
                                          "is_baseline",
                                          "calibration",
                                          "calibration_domain",
                                          "status",
                                          "error",
                                          "metrics",
                                          "replicates",
                                          "bits_per_weight",
                                          "size_bytes",
                                          "quantize_seconds",
                                          "file_bits_per_weight"};

ReportEval parse_eval(const json& e, const std::string& where) {
  ReportEval ev;
  ev.id = get_string(e, "id", where);
  QS_THROW_IF_NOT(!ev.id.empty(), "results.json: ", where, ".id is missing");
  ev.task = get_string(e, "task", where);
  ev.dataset = get_string(e, "dataset", where, ev.id);
  ev.domain = get_string(e, "domain", where);
  ev.protocol = get_string(e, "protocol", where);
  ev.metric = get_string(e, "metric", where, ev.task);
  ev.ctx = get_int(e, "ctx", where);
  ev.stride = get_int(e, "stride", where);
  ev.max_tokens = get_int(e, "max_tokens", where);
  ev.higher_is_better = get_bool(e, "higher_is_better", where, false);
  ev.is_perplexity = ev.metric == "perplexity";
  return ev;
}

// Dataset names, made unique with protocol/ctx (then the id) where two evals share one.
void name_evals(std::vector<ReportEval>& evals) {
  auto count = [&](auto key) {
    std::map<std::string, int> n;
    for (const auto& e : evals) ++n[key(e)];
    return n;
  };
  auto with_protocol = [](const ReportEval& e) {
    std::string s = e.dataset;
    if (!e.protocol.empty()) s += " " + e.protocol;
    if (e.ctx) s += " ctx" + std::to_string(*e.ctx);
    if (e.stride) s += "/" + std::to_string(*e.stride);
    return s;
  };
  const auto by_dataset = count([](const ReportEval& e) { return e.dataset; });
  const auto by_protocol = count(with_protocol);
  for (auto& e : evals) {
    if (by_dataset.at(e.dataset) == 1) {
      e.name = e.dataset;
    } else if (by_protocol.at(with_protocol(e)) == 1) {
      e.name = with_protocol(e);
    } else {
      e.name = e.id;
    }
  }
}

ReportRow parse_variant(const json& v, const std::vector<ReportEval>& evals,
                        const std::string& where) {
  QS_THROW_IF_NOT(v.is_object(), "results.json: ", where, " must be an object");
  ReportRow r;
  r.id = get_string(v, "id", where);
  QS_THROW_IF_NOT(!r.id.empty(), "results.json: ", where, ".id is missing");
  r.label = get_string(v, "label", where, r.id);
  r.method = get_string(v, "method", where);
  r.status = get_string(v, "status", where, "ok");
  QS_THROW_IF_NOT(r.status == "ok" || r.status == "failed" || r.status == "skipped",
                  "results.json: ", where,
                  ".status must be \"ok\", \"failed\" or \"skipped\", not \"", r.status, "\"");
  r.error = get_string(v, "error", where);
  r.calibration = get_string(v, "calibration", where);
  r.calibration_domain = get_string(v, "calibration_domain", where);
  r.is_baseline = get_bool(v, "is_baseline", where, false);
  r.bits = get_int(v, "bits", where);
  r.group_size = get_int(v, "group_size", where);
  r.size_bytes = get_int(v, "size_bytes", where);
  r.bits_per_weight = get_number(v, "bits_per_weight", where);
  r.file_bits_per_weight = get_number(v, "file_bits_per_weight", where);
  r.config_key = json::object();
  for (auto it = v.begin(); it != v.end(); ++it)
    if (!kNotConfig.count(it.key())) r.config_key[it.key()] = it.value();

  const json empty = json::object();
  auto mit = v.find("metrics");
  const json& metrics = (mit == v.end() || mit->is_null()) ? empty : *mit;
  QS_THROW_IF_NOT(metrics.is_object(), "results.json: ", where, ".metrics must be an object");
  for (const auto& ev : evals) {
    ReportCell c;
    auto it = metrics.find(ev.id);
    if (it != metrics.end() && !it->is_null()) {
      const std::string mw = where + ".metrics[\"" + ev.id + "\"]";
      const std::string st = get_string(*it, "status", mw);
      if (st != "ok") c.status = st;
      c.protocol = ev.is_perplexity ? "" : get_string(*it, "protocol", mw);
      c.items = get_int(*it, "items", mw).value_or(-1);
      const auto value = get_number(*it, "value", mw);
      if (value) {
        c.present = true;
        c.value = *value;
        const auto se =
            get_number(*it, ev.is_perplexity ? "nll_standard_error" : "standard_error", mw);
        c.has_se = se.has_value();
        c.se = se.value_or(0.0);
        c.scored_tokens = get_int(*it, "scored_tokens", mw).value_or(-1);
        const auto seed_sd = get_number(*it, "seed_sd", mw);
        c.has_seed_sd = seed_sd.has_value();
        c.seed_sd = seed_sd.value_or(0.0);
        c.n_seeds = get_int(*it, "n_seeds", mw).value_or(1);
        QS_THROW_IF_NOT(!c.has_seed_sd || (c.n_seeds >= 2 && c.seed_sd >= 0), "results.json: ", mw,
                        ".seed_sd needs n_seeds >= 2 and must not be negative");
        if (ev.is_perplexity) {
          const auto p = get_number(*it, "paired_nll_standard_error", mw);
          c.has_paired_se = p.has_value();
          c.paired_se = p.value_or(0.0);
        }
        QS_THROW_IF_NOT(!ev.is_perplexity || c.value > 0, "results.json: ", mw,
                        ".value must be positive (a perplexity)");
      }
    }
    r.cells.push_back(c);
  }
  return r;
}

bool better_row_order(const ReportRow& a, const ReportRow& b) {
  if (a.is_baseline != b.is_baseline) return a.is_baseline;
  if (a.axis_bpw.has_value() != b.axis_bpw.has_value()) return a.axis_bpw.has_value();
  if (a.axis_bpw && *a.axis_bpw != *b.axis_bpw) return *a.axis_bpw > *b.axis_bpw;
  return a.id < b.id;
}

}  // namespace

std::string acceptable_category(double worst, double yes, double usually, double marginal) {
  if (worst <= yes) return "yes";
  if (worst <= usually) return "usually";
  if (worst <= marginal) return "marginal";
  return "no";
}

namespace {
/// The variance of a replicated cell's mean `relative` from the calibration seeds.
double seed_variance(const ReportCell& c) {
  return c.has_seed_sd ? c.relative_seed_sd * c.relative_seed_sd / double(c.n_seeds) : 0.0;
}
}  // namespace

bool rows_within_noise(const ReportData& d, size_t e, size_t ia, size_t ib) {
  const ReportCell& a = d.rows[ia].cells[e];
  const ReportCell& b = d.rows[ib].cells[e];
  if (!a.has_relative || !b.has_relative || !a.has_relative_se || !b.has_relative_se) return false;
  double var = 0;
  if (d.evals[e].is_perplexity) {
    // relative = exp(nll − nll_base); the gradient of r_a − r_b is
    // (r_a, −r_b, −(r_a − r_b)) in (nll_a, nll_b, nll_base).
    const ReportRow* base = nullptr;
    for (const auto& r : d.rows)
      if (r.is_baseline) base = &r;
    const double se0 = base ? base->cells[e].se : 0.0;
    const bool a_base = d.rows[ia].is_baseline, b_base = d.rows[ib].is_baseline;
    const bool paired = (a_base || a.has_paired_se) && (b_base || b.has_paired_se);
    if (paired) {
      // Each variant's NLL difference from the baseline on the same tokens:
      // r = exp(Δ), SE(r) ≈ r·SE(Δ). The two differences are treated as
      // independent of each other (they share the baseline, so this is conservative).
      const double pa = a_base ? 0.0 : a.relative * a.paired_se;
      const double pb = b_base ? 0.0 : b.relative * b.paired_se;
      var = pa * pa + pb * pb;
    } else if (a_base || b_base) {
      const ReportCell& q = a_base ? b : a;
      var = q.relative * q.relative * (q.se * q.se + se0 * se0);
    } else {
      const double dr = a.relative - b.relative;
      var = a.relative * a.relative * a.se * a.se + b.relative * b.relative * b.se * b.se +
            dr * dr * se0 * se0;
    }
  } else {
    var = a.se * a.se + b.se * b.se;
  }
  var += seed_variance(a) + seed_variance(b);
  return std::fabs(a.relative - b.relative) < 2.0 * std::sqrt(var);
}

ReportData derive_report(const json& results) {
  QS_THROW_IF_NOT(results.is_object(), "results.json: the top level must be an object");
  ReportData d;
  d.qsweep_version = get_string(results, "qsweep_version", "results");
  const json& sweep = require(results, "sweep", "results");
  d.sweep_name = get_string(sweep, "name", "sweep");
  d.sweep_file = get_string(sweep, "file", "sweep");
  d.model = get_string(sweep, "model", "sweep");
  d.baseline_id = get_string(sweep, "baseline", "sweep");

  const json& evals = require(results, "evals", "results");
  QS_THROW_IF_NOT(evals.is_array(), "results.json: evals must be an array");
  std::set<std::string> eval_ids;
  for (size_t i = 0; i < evals.size(); ++i) {
    d.evals.push_back(parse_eval(evals[i], "evals[" + std::to_string(i) + "]"));
    QS_THROW_IF_NOT(eval_ids.insert(d.evals.back().id).second, "results.json: evals[", i,
                    "]: duplicate id \"", d.evals.back().id, "\"");
  }
  name_evals(d.evals);

  auto cit = results.find("calibrations");
  d.calibrations = (cit == results.end() || cit->is_null()) ? json::object() : *cit;
  QS_THROW_IF_NOT(d.calibrations.is_object(), "results.json: calibrations must be an object");

  if (auto ait = results.find("acceptable"); ait != results.end() && !ait->is_null()) {
    d.accept_yes = get_number(*ait, "yes", "acceptable").value_or(d.accept_yes);
    d.accept_usually = get_number(*ait, "usually", "acceptable").value_or(d.accept_usually);
    d.accept_marginal = get_number(*ait, "marginal", "acceptable").value_or(d.accept_marginal);
  }

  const json& variants = require(results, "variants", "results");
  QS_THROW_IF_NOT(variants.is_array(), "results.json: variants must be an array");
  std::vector<ReportRow> ok, not_ok;
  std::set<std::string> ids;
  for (size_t i = 0; i < variants.size(); ++i) {
    ReportRow r = parse_variant(variants[i], d.evals, "variants[" + std::to_string(i) + "]");
    QS_THROW_IF_NOT(ids.insert(r.id).second, "results.json: variants[", i, "]: duplicate id \"",
                    r.id, "\"");
    r.is_baseline = r.id == d.baseline_id;  // sweep.baseline decides
    (r.in_table() ? ok : not_ok).push_back(std::move(r));
  }
  QS_THROW_IF_NOT(ids.count(d.baseline_id), "results.json: sweep.baseline \"", d.baseline_id,
                  "\" names no variant");
  // One x axis for the whole report: file bits per weight when every table row has it.
  d.axis_is_file = std::all_of(
      ok.begin(), ok.end(), [](const ReportRow& r) { return r.file_bits_per_weight.has_value(); });
  for (ReportRow& r : ok) r.axis_bpw = d.axis_is_file ? r.file_bits_per_weight : r.bits_per_weight;
  std::stable_sort(ok.begin(), ok.end(), better_row_order);
  d.n_table_rows = ok.size();
  d.rows = std::move(ok);
  for (auto& r : not_ok) d.rows.push_back(std::move(r));

  const ReportRow* base = nullptr;
  for (const auto& r : d.rows)
    if (r.is_baseline) base = &r;
  d.baseline_label = base->label;

  // Relative values and their standard errors.
  for (auto& r : d.rows) {
    for (size_t e = 0; e < d.evals.size(); ++e) {
      ReportCell& c = r.cells[e];
      const ReportCell& b = base->cells[e];
      if (!c.present || !b.present || !base->in_table()) continue;
      c.has_relative = true;
      const bool ppl = d.evals[e].is_perplexity;
      c.relative =
          r.is_baseline ? (ppl ? 1.0 : 0.0) : (ppl ? c.value / b.value : c.value - b.value);
      c.has_relative_se = c.has_se && b.has_se;
      if (r.is_baseline) {
        c.relative_se = 0;
      } else if (ppl && c.has_paired_se) {
        c.has_relative_se = true;
        c.relative_se = c.relative * c.paired_se;
      } else if (c.has_relative_se) {
        const double s = std::sqrt(c.se * c.se + b.se * b.se);
        c.relative_se = ppl ? c.relative * s : s;
      }
      if (c.has_seed_sd && !r.is_baseline) {
        c.relative_seed_sd = ppl ? c.seed_sd / b.value : c.seed_sd;
        if (c.has_relative_se)
          c.relative_se = std::sqrt(c.relative_se * c.relative_se + seed_variance(c));
      }
    }
    if (!r.in_table()) {
      r.acceptable = kMissing;
      continue;
    }
    bool all = true, any = false;
    double worst = 0;
    for (size_t e = 0; e < d.evals.size(); ++e) {
      if (!d.evals[e].is_perplexity) continue;
      any = true;
      if (!r.cells[e].has_relative) {
        all = false;
      } else {
        worst = std::max(worst, r.cells[e].relative);
      }
    }
    if (any && all) r.worst_relative_ppl = worst;
    if (r.is_baseline) {
      r.acceptable = "baseline";
    } else if (r.worst_relative_ppl) {
      r.acceptable = acceptable_category(worst, d.accept_yes, d.accept_usually, d.accept_marginal);
    } else {
      r.acceptable = kMissing;
    }
  }

  // Noise flags between adjacent table rows.
  for (size_t e = 0; e < d.evals.size(); ++e) {
    for (size_t i = 0; i + 1 < d.n_table_rows; ++i) {
      if (rows_within_noise(d, e, i, i + 1)) {
        d.rows[i].cells[e].near_noise = true;
        d.rows[i + 1].cells[e].near_noise = true;
      }
    }
  }

  // Pareto frontier: the lowest relative perplexity at ≤ that many bits per weight.
  d.frontier.assign(d.evals.size(), {});
  for (size_t e = 0; e < d.evals.size(); ++e) {
    if (!d.evals[e].is_perplexity) continue;
    std::vector<size_t> pts;
    for (size_t i = 0; i < d.n_table_rows; ++i)
      if (d.rows[i].cells[e].has_relative && d.rows[i].axis_bpw) pts.push_back(i);
    std::stable_sort(pts.begin(), pts.end(), [&](size_t a, size_t b) {
      const double xa = *d.rows[a].axis_bpw, xb = *d.rows[b].axis_bpw;
      if (xa != xb) return xa < xb;
      return d.rows[a].cells[e].relative < d.rows[b].cells[e].relative;
    });
    double best = INFINITY;
    for (size_t i : pts) {
      if (d.rows[i].cells[e].relative < best) {
        best = d.rows[i].cells[e].relative;
        d.rows[i].cells[e].on_frontier = true;
        d.frontier[e].push_back(i);
      }
    }
  }
  return d;
}

CalibrationAnalysis analyze_calibration(const ReportData& d) {
  CalibrationAnalysis a;
  // Group the calibrated variants by their configuration apart from calibration.
  std::map<std::string, std::vector<size_t>> by_key;
  std::vector<std::string> key_order;
  for (size_t i = 0; i < d.rows.size(); ++i) {
    if (d.rows[i].calibration.empty() || d.rows[i].is_baseline) continue;
    const std::string key = d.rows[i].config_key.dump();
    if (!by_key.count(key)) key_order.push_back(key);
    by_key[key].push_back(i);
  }
  for (const auto& key : key_order) {
    std::vector<size_t> rows = by_key[key];
    std::set<std::string> cals;
    for (size_t i : rows) cals.insert(d.rows[i].calibration);
    if (cals.size() < 2) continue;
    std::stable_sort(rows.begin(), rows.end(), [&](size_t x, size_t y) {
      return d.rows[x].calibration < d.rows[y].calibration;
    });
    CalibrationGroup g;
    g.rows = rows;
    // Name: the common prefix of the labels, without a dangling " (" / " -".
    std::string prefix = d.rows[rows[0]].label;
    for (size_t i : rows) {
      const std::string& l = d.rows[i].label;
      size_t n = 0;
      while (n < prefix.size() && n < l.size() && prefix[n] == l[n]) ++n;
      prefix.resize(n);
    }
    while (!prefix.empty() && std::string(" ([-_/,:").find(prefix.back()) != std::string::npos)
      prefix.pop_back();
    g.name = prefix.empty() ? d.rows[rows[0]].label : prefix;
    a.groups.push_back(std::move(g));
  }

  // In-domain vs out-of-domain comparisons.
  for (size_t gi = 0; gi < a.groups.size(); ++gi) {
    const auto& g = a.groups[gi];
    for (size_t e = 0; e < d.evals.size(); ++e) {
      const ReportEval& ev = d.evals[e];
      if (ev.domain.empty()) continue;
      for (size_t in : g.rows) {
        if (d.rows[in].calibration_domain != ev.domain || !d.rows[in].cells[e].present) continue;
        for (size_t out : g.rows) {
          if (d.rows[out].calibration_domain == ev.domain || !d.rows[out].cells[e].present)
            continue;
          CalibrationComparison c;
          c.group = gi;
          c.eval = e;
          c.in_row = in;
          c.out_row = out;
          const double vin = d.rows[in].cells[e].value, vout = d.rows[out].cells[e].value;
          c.change_pct = (vout / vin - 1.0) * 100.0;
          c.in_domain_better = ev.higher_is_better ? vin > vout : vin < vout;
          c.within_noise = rows_within_noise(d, e, in, out);
          a.comparisons.push_back(c);
        }
      }
    }
  }

  // Mean degradation per perplexity eval over the same set of quantized variants.
  a.mean_degradation_pct.assign(d.evals.size(), std::nullopt);
  std::vector<double> sums(d.evals.size(), 0.0);
  for (size_t i = 0; i < d.n_table_rows; ++i) {
    const ReportRow& r = d.rows[i];
    if (r.is_baseline || !r.worst_relative_ppl) continue;
    ++a.n_variants_in_mean;
    for (size_t e = 0; e < d.evals.size(); ++e)
      if (d.evals[e].is_perplexity) sums[e] += (r.cells[e].relative - 1.0) * 100.0;
  }
  if (a.n_variants_in_mean > 0)
    for (size_t e = 0; e < d.evals.size(); ++e)
      if (d.evals[e].is_perplexity) a.mean_degradation_pct[e] = sums[e] / a.n_variants_in_mean;
  return a;
}

std::vector<CapabilityAtBits> analyze_capabilities(const ReportData& d) {
  size_t base = d.rows.size();
  for (size_t i = 0; i < d.n_table_rows; ++i)
    if (d.rows[i].is_baseline) base = i;
  std::map<int64_t, std::vector<size_t>> by_bits;
  for (size_t i = 0; i < d.n_table_rows; ++i)
    if (!d.rows[i].is_baseline && d.rows[i].bits) by_bits[*d.rows[i].bits].push_back(i);
  std::vector<CapabilityAtBits> out;
  if (base == d.rows.size()) return out;
  for (const auto& [bits, rows] : by_bits) {
    CapabilityAtBits a;
    a.bits = bits;
    a.rows = rows;
    for (size_t e = 0; e < d.evals.size(); ++e) {
      const ReportEval& ev = d.evals[e];
      const ReportCell& b = d.rows[base].cells[e];
      if (!b.present || ev.metric == "mean_kld") continue;
      if (!ev.is_perplexity && (!ev.higher_is_better || b.value <= 0)) {
        if (ev.higher_is_better) a.at_floor.push_back(e);
        continue;
      }
      CapabilityLoss l;
      l.eval = e;
      double sum = 0;
      bool all_noise = true;
      for (size_t r : rows) {
        const ReportCell& c = d.rows[r].cells[e];
        if (!c.present || !c.has_relative) continue;
        // relative is value/base for perplexity and value − base otherwise.
        const double loss = ev.is_perplexity ? (c.relative - 1) * 100 : -c.relative / b.value * 100;
        const double dist = ev.is_perplexity ? std::abs(c.relative - 1) : std::abs(c.relative);
        all_noise = all_noise && c.has_relative_se && dist < 2 * c.relative_se;
        sum += loss;
        ++l.variants;
      }
      if (l.variants == 0) continue;
      l.loss_pct = sum / double(l.variants);
      l.within_noise = all_noise;
      a.losses.push_back(l);
    }
    // Measurable losses first: a large change within noise (a few items at chance level)
    // must not be named as what suffers most ahead of a small but certain one.
    std::stable_sort(a.losses.begin(), a.losses.end(),
                     [](const CapabilityLoss& x, const CapabilityLoss& y) {
                       if (x.within_noise != y.within_noise) return !x.within_noise;
                       return x.loss_pct > y.loss_pct;
                     });
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace qsweep
