// results.json from what the store holds: every variant's metrics, paired with the
// baseline on the same tokens, and how each number was measured. Used by `qsweep run` and
// `qsweep report`, so a resumed run reproduces it exactly.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "common/errors.h"
#include "common/json_reader.h"
#include "common/mapped_file.h"
#include "eval/run_eval.h"
#include "model/model_spec.h"
#include "pipeline/detail/artifacts.h"
#include "pipeline/store.h"
#include "pipeline/sweep.h"
#include "quantize/sensitivity.h"

namespace qsweep {
namespace fs = std::filesystem;
using detail::kVersion;
using detail::read_json;
using nlohmann::json;

namespace {

/// Mean and standard error of the per-token NLL difference (variant − baseline)
/// when both artifacts scored the same number of tokens.
std::optional<std::pair<double, double>> paired_nll_stats(const std::string& variant_dir,
                                                          const std::string& base_dir) {
  const std::string fa = variant_dir + "/" + detail::kTokenNllFile,
                    fb = base_dir + "/" + detail::kTokenNllFile;
  if (!fs::exists(fa) || !fs::exists(fb)) return std::nullopt;
  const MappedFile a(fa), b(fb);
  if (a.size() != b.size() || a.size() < 2 * sizeof(float)) return std::nullopt;
  const size_t n = a.size() / sizeof(float);
  std::vector<float> va(n), vb(n);
  std::memcpy(va.data(), a.data(), a.size());
  std::memcpy(vb.data(), b.data(), b.size());
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += double(va[i]) - double(vb[i]);
  const double mean = sum / double(n);
  double ss = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = double(va[i]) - double(vb[i]) - mean;
    ss += d * d;
  }
  return std::make_pair(mean, std::sqrt(ss / double(n - 1) / double(n)));
}

/// One eval's metrics over the seeds of a replicated variant: every number that differs between
/// the seeds is their mean (value, mean_nll, delta_mean_nll, paired_nll_standard_error,
/// seconds, ...), the rest is kept; `seed_sd` is the sample standard deviation of `value` over
/// the seeds, `n_seeds` how many seeds have the metric. nullopt when no seed has a value.
std::optional<json> mean_over_seeds(const std::vector<const json*>& per_seed) {
  std::vector<const json*> ok;
  for (const json* m : per_seed)
    if (m && m->is_object() && m->contains("value") && (*m)["value"].is_number()) ok.push_back(m);
  if (ok.empty()) return std::nullopt;
  json out = *ok.front();
  for (auto it = out.begin(); it != out.end(); ++it) {
    if (!it->is_number()) continue;
    bool all_numbers = true, all_equal = true;
    double sum = 0;
    for (const json* m : ok) {
      const auto f = m->find(it.key());
      all_numbers = all_numbers && f != m->end() && f->is_number();
      if (!all_numbers) break;
      all_equal = all_equal && *f == it.value();
      sum += f->get<double>();
    }
    if (all_numbers && !all_equal) *it = sum / double(ok.size());
  }
  const double n = double(ok.size());
  double mean = 0, ss = 0;
  for (const json* m : ok) mean += (*m)["value"].get<double>() / n;
  for (const json* m : ok) ss += std::pow((*m)["value"].get<double>() - mean, 2);
  out["value"] = mean;
  out["seed_sd"] = ok.size() > 1 ? json(std::sqrt(ss / (n - 1))) : json();
  out["n_seeds"] = ok.size();
  return out;
}

/// A replicated variant's row fields from its per-seed rows: `replicates` [{seed, metrics}],
/// `metrics` (mean_over_seeds per eval), the seed-independent quantize fields of the first seed
/// that has them, quantize_seconds the mean.
void merge_replicates(json& row, const std::vector<uint64_t>& seeds,
                      const std::vector<json>& seed_metrics, const std::vector<json>& seed_meta,
                      const std::vector<EvalConfig>& evals) {
  row["replicates"] = json::array();
  for (size_t i = 0; i < seeds.size(); ++i)
    row["replicates"].push_back({{"seed", seeds[i]}, {"metrics", seed_metrics[i]}});
  json metrics = json::object();
  for (const EvalConfig& e : evals) {
    std::vector<const json*> per_seed;
    for (const json& m : seed_metrics) per_seed.push_back(m.contains(e.id) ? &m[e.id] : nullptr);
    if (auto mean = mean_over_seeds(per_seed)) metrics[e.id] = std::move(*mean);
  }
  row["metrics"] = metrics;
  double secs = 0;
  int n = 0;
  for (const json& meta : seed_meta) {
    if (meta.is_null()) continue;
    if (n == 0) {
      for (const char* k : {"bits_per_weight", "size_bytes"}) row[k] = meta[k];
      if (meta.contains("file_bits_per_weight"))
        row["file_bits_per_weight"] = meta["file_bits_per_weight"];
    }
    secs += meta["quantize_seconds"].get<double>();
    ++n;
  }
  if (n > 0) row["quantize_seconds"] = secs / n;
}

/// A quantize node's meta.json with the kinds of the fields results.json copies checked
/// (the values are copied as stored).
json read_quantize_meta(const std::string& file) {
  json meta = read_json(file);
  const JsonReader mr(meta, file);
  (void)mr.required<double>("bits_per_weight");
  (void)mr.required_int("size_bytes", 0, INT64_MAX);
  (void)mr.required<double>("quantize_seconds");
  (void)mr.optional<double>("file_bits_per_weight", 0.0);
  return meta;
}

}  // namespace

json collect_results(const SweepPlan& plan, const std::string& out_dir,
                     const std::vector<NodeResult>* run_results) {
  const ArtifactStore store(out_dir + "/store");
  const SweepSpec& s = plan.spec;
  json r;
  r["qsweep_version"] = kVersion;
  r["sweep"] = {{"name", s.name},
                {"file", s.file},
                {"model", s.model},
                {"model_dir", plan.model_dir},
                {"model_hash", plan.model_hash},
                {"baseline", s.baseline}};
  const ModelSpec mspec = load_model_spec(plan.model_dir);
  r["evals"] = json::array();
  for (const EvalConfig& e : plan.evals) {
    const TaskData data = resolve_task_data(e, plan.data_dir);
    const TaskInfo& task = task_info(e.task);
    r["evals"].push_back({{"id", e.id},
                          {"task", task.name},
                          {"dataset", e.dataset},
                          {"file", data.path},
                          {"data_present", data.present},
                          {"domain", data.domain},
                          {"protocol", e.protocol},
                          {"ctx", e.ctx},
                          {"stride", e.protocol == "strided" ? json(e.stride) : json()},
                          {"max_tokens", e.max_tokens},
                          {"tokenization", "text as-is, no BOS"},
                          {"metric", task.metric},
                          {"higher_is_better", task.higher_is_better}});
    if (e.task != Task::Perplexity) r["evals"].back()["options"] = e.options_json();
  }
  r["calibrations"] = json::object();
  for (const auto& [name, c] : s.calibration) {
    r["calibrations"][name] = {
        {"source", c.source},     {"n_samples", c.n_samples},
        {"seqlen", c.seqlen},     {"seed", c.seed},
        {"sampling", c.sampling}, {"domain", plan.calibration_domains.at(name)}};
    if (c.replicated()) r["calibrations"][name]["seeds"] = c.seeds;
  }
  r["acceptable"] = {
      {"yes", s.report.yes}, {"usually", s.report.usually}, {"marginal", s.report.marginal}};

  // Index the nodes' outcomes.
  std::map<std::string, const SweepNode*> node_by_id;
  std::map<std::string, int> index_by_id;
  for (size_t i = 0; i < plan.nodes.size(); ++i) {
    node_by_id[plan.nodes[i].id] = &plan.nodes[i];
    index_by_id[plan.nodes[i].id] = int(i);
    if (plan.nodes[i].kind == SweepNodeKind::Calibrate && store.has(plan.nodes[i].key)) {
      const std::string file = store.path(plan.nodes[i].key) + "/meta.json";
      const json meta = read_json(file);
      (void)JsonReader(meta, file).required_int("tokens_in_source", 0, INT64_MAX);  // kind, range
      r["calibrations"][plan.nodes[i].calibration]["tokens_in_source"] = meta["tokens_in_source"];
    }
  }
  auto outcome = [&](const std::string& id, std::string* error) -> std::string {
    const SweepNode* n = node_by_id.at(id);
    if (store.has(n->key)) return "ok";
    if (run_results) {
      const NodeResult& nr = (*run_results)[size_t(index_by_id.at(id))];
      if (nr.status == NodeStatus::Failed || nr.status == NodeStatus::Skipped) {
        *error = nr.error;
        return nr.status == NodeStatus::Failed ? "failed" : "skipped";
      }
    }
    return "pending";
  };
  auto metrics_of = [&](const std::string& variant, std::string* status, std::string* error) {
    json m = json::object();
    for (const auto& e : s.evals) {
      const std::string id = cat("eval:", variant, ":", e.id);
      std::string err;
      const std::string st = outcome(id, &err);
      if (st == "ok") {
        const std::string file = store.path(node_by_id.at(id)->key) + "/metrics.json";
        m[e.id] = read_json(file);
        const JsonReader mr(m[e.id], file);  // an object whose value is null or finite
        if (mr.has("value")) (void)mr.required<double>("value");
        m[e.id].erase("config");
        const std::string base_id = cat("eval:", s.baseline, ":", e.id);
        if (variant != s.baseline && store.has(node_by_id.at(base_id)->key)) {
          const auto paired = paired_nll_stats(store.path(node_by_id.at(id)->key),
                                               store.path(node_by_id.at(base_id)->key));
          if (paired) {
            m[e.id]["delta_mean_nll"] = paired->first;
            m[e.id]["paired_nll_standard_error"] = paired->second;
          }
        }
      } else if (*status == "ok") {
        *status = st;
        *error = cat(id, ": ", err);
      }
    }
    return m;
  };

  // The sensitivity study (issue #19): each node's table, for the heat maps and the ranking.
  r["sensitivity"] = json::array();
  for (const SweepNode& n : plan.nodes) {
    if (n.kind != SweepNodeKind::Sensitivity) continue;
    std::string err;
    json e = {{"id", n.id},
              {"calibration", n.calibration},
              {"seed", n.seed},
              {"type", n.sensitivity_type},
              {"status", outcome(n.id, &err)}};
    if (e["status"] == "ok") {
      const std::string file = store.path(n.key) + "/sensitivity.json";
      const json t = read_json(file);
      const JsonReader tr(t, file);
      e["source"] = tr.required<std::string>("source");
      e["tokens"] = tr.required_int("tokens", 0, INT64_MAX);
      e["measurements"] = json::array();
      for (const json& m : tr.array("measurements")) {
        json row = sensitivity_to_json(sensitivity_from_json(m, file));
        row.erase("seconds");
        e["measurements"].push_back(row);
      }
    } else {
      e["error"] = err.empty() ? json() : json(err);
    }
    r["sensitivity"].push_back(e);
  }

  r["variants"] = json::array();
  {
    std::string status = "ok", error;
    json base = {{"id", s.baseline},
                 {"label", mspec.torch_dtype == "bfloat16" ? "BF16" : "FP16"},
                 {"is_baseline", true},
                 {"method", "fp16"},
                 {"bits", 16},
                 {"group_size", nullptr},
                 {"sym", nullptr},
                 {"desc_act", false},
                 {"calibration", nullptr},
                 {"calibration_domain", nullptr},
                 {"bits_per_weight", 16.0},
                 {"file_bits_per_weight", 16.0},
                 {"size_bytes", mspec.parameter_count() * 2},
                 {"quantize_seconds", 0.0}};
    base["metrics"] = metrics_of(s.baseline, &status, &error);
    base["status"] = status;
    base["error"] = error.empty() ? json() : json(error);
    r["variants"].push_back(base);
  }
  for (const auto& v : s.variants) {
    json j = {{"id", v.id},
              {"label", variant_label(v)},
              {"is_baseline", false},
              {"method", v.config.info().name}};
    j.update(variant_option_columns(v.config));
    j.update({{"calibration", v.calibration.empty() ? json() : json(v.calibration)},
              {"calibration_domain", nullptr},
              {"file_bits_per_weight", nullptr},
              {"bits_per_weight", nullptr},
              {"size_bytes", nullptr},
              {"quantize_seconds", nullptr}});
    if (!v.calibration.empty())
      j["calibration_domain"] = plan.calibration_domains.at(v.calibration);
    std::string status = "ok", error;
    const CalibrationSpec* cs = v.calibration.empty() ? nullptr : &s.calibration.at(v.calibration);
    const std::vector<uint64_t> seeds = cs ? cs->seeds : std::vector<uint64_t>{0};
    std::vector<json> seed_metrics, seed_meta;
    for (const uint64_t seed : seeds) {
      const std::string name = cs && cs->replicated() ? replicate_name(v.id, seed) : v.id;
      const std::string qid = "quantize:" + name;
      std::string qerr;
      const std::string qst = outcome(qid, &qerr);
      if (qst == "ok") {
        seed_meta.push_back(read_quantize_meta(store.path(node_by_id.at(qid)->key) + "/meta.json"));
      } else {
        seed_meta.push_back(json());
        if (status == "ok") {
          status = qst;
          error = cat(qid, ": ", qerr);
        }
      }
      seed_metrics.push_back(metrics_of(name, &status, &error));
    }
    if (cs && cs->replicated()) {
      merge_replicates(j, seeds, seed_metrics, seed_meta, s.evals);
    } else {
      if (!seed_meta[0].is_null()) {
        const json& meta = seed_meta[0];
        for (const char* k : {"bits_per_weight", "size_bytes", "quantize_seconds"}) j[k] = meta[k];
        if (meta.contains("file_bits_per_weight"))
          j["file_bits_per_weight"] = meta["file_bits_per_weight"];
      }
      j["metrics"] = seed_metrics[0];
    }
    // Every layout alike (GGUF's meta has the same number): bytes on disk × 8 / parameters.
    if (j["size_bytes"].is_number())
      j["file_bits_per_weight"] =
          8.0 * j["size_bytes"].get<double>() / double(mspec.parameter_count());
    j["status"] = status;
    j["error"] = error.empty() || status == "ok" ? json() : json(error);
    r["variants"].push_back(j);
  }
  return r;
}

}  // namespace qsweep
