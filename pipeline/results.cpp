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
    const std::string qid = "quantize:" + v.id;
    const std::string qst = outcome(qid, &error);
    if (qst == "ok") {
      const std::string file = store.path(node_by_id.at(qid)->key) + "/meta.json";
      const json meta = read_json(file);
      const JsonReader mr(meta, file);  // kinds checked; the values are copied as stored
      (void)mr.required<double>("bits_per_weight");
      (void)mr.required_int("size_bytes", 0, INT64_MAX);
      (void)mr.required<double>("quantize_seconds");
      (void)mr.optional<double>("file_bits_per_weight", 0.0);
      for (const char* k : {"bits_per_weight", "size_bytes", "quantize_seconds"}) j[k] = meta[k];
      if (mr.has("file_bits_per_weight")) j["file_bits_per_weight"] = meta["file_bits_per_weight"];
    } else {
      status = qst;
      error = cat(qid, ": ", error);
    }
    j["metrics"] = metrics_of(v.id, &status, &error);
    j["status"] = status;
    j["error"] = error.empty() || status == "ok" ? json() : json(error);
    r["variants"].push_back(j);
  }
  return r;
}

}  // namespace qsweep
