#include "pipeline/sweep.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

#include "calibration/calibration.h"
#include "common/errors.h"
#include "common/mapped_file.h"
#include "eval/datasets.h"
#include "eval/run_eval.h"
#include "formats/formats.h"
#include "formats/gguf.h"
#include "model/tokenizer.h"
#include "pipeline/store.h"
#include "quantize/export.h"
#include "quantize/quantize.h"
#include "reports/reports.h"

namespace qsweep {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Bump when an artifact's content or meaning changes: every key changes with it.
constexpr const char* kStoreFormat = "qsweep-store-v1";
constexpr const char* kVersion = "0.1.0";
/// The file a K-quant mix's quantize node writes under model/ (eval nodes look for it).
constexpr const char* kGgufFile = "model.gguf";
/// The FP16 baseline's stored top-k log-probs, written by its kld eval node.
constexpr const char* kKldBaselineFile = "baseline.kld";

std::vector<std::string> model_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name == "config.json" || name == "tokenizer.model" || name == "tokenizer.json" ||
        name == "tokenizer_config.json" || name == "model.safetensors.index.json" ||
        name.ends_with(".safetensors"))
      files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  QS_THROW_IF_NOT(!files.empty(), dir, ": no model files to hash");
  return files;
}

std::string key_of(const std::string& prefix, const json& config) {
  json k = config;
  k["store_format"] = kStoreFormat;
  return prefix + "-" + hash_hex(k.dump());
}

json variant_config(const VariantSpec& v) {
  return v.config.to_json();
}

int64_t physical_memory() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), size = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? int64_t(pages) * size : (int64_t(8) << 30);
}

/// What nodes share in memory during one run: the base model, the tokenizer and
/// tokenized evaluation sets, each built once.
class SharedInputs {
 public:
  explicit SharedInputs(const SweepPlan& plan) : plan_(plan) {}
  const Transformer& base() {
    std::call_once(base_once_, [&] {
      LoadedModel m = load_model(plan_.model_dir);
      QS_THROW_IF_NOT(m.format == "hf", plan_.model_dir, " is already quantized (", m.description,
                      "); a sweep starts from the unquantized checkpoint");
      base_ = std::make_unique<Transformer>(m.spec, std::move(m.weights));
    });
    return *base_;
  }
  const Tokenizer& tokenizer() {
    std::call_once(tok_once_, [&] { tok_ = load_tokenizer(plan_.model_dir); });
    return *tok_;
  }
  std::shared_ptr<const std::vector<int>> tokens(const EvalDataset& ds) {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (auto it = tokens_.find(ds.path); it != tokens_.end()) return it->second;
    }
    auto t = std::make_shared<const std::vector<int>>(
        tokenizer().encode(read_dataset_text(ds), /*add_bos=*/false));
    std::lock_guard<std::mutex> g(mu_);
    return tokens_.emplace(ds.path, t).first->second;
  }

 private:
  const SweepPlan& plan_;
  std::once_flag base_once_, tok_once_;
  std::unique_ptr<Transformer> base_;
  std::unique_ptr<Tokenizer> tok_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const std::vector<int>>> tokens_;
};

/// Mean and standard error of the per-token NLL difference (variant − baseline)
/// when both artifacts scored the same number of tokens.
std::optional<std::pair<double, double>> paired_nll_stats(const std::string& variant_dir,
                                                          const std::string& base_dir) {
  const std::string fa = variant_dir + "/token_nll.f32", fb = base_dir + "/token_nll.f32";
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

void write_json(const std::string& path, const json& j) {
  const std::string s = j.dump(1) + "\n";
  write_file_atomic(path, s.data(), s.size());
}

json read_json(const std::string& path) {
  return json::parse(read_text_file(path));
}

}  // namespace

SweepPlan make_sweep_plan(const SweepSpec& spec, const std::string& model_dir,
                          const std::string& data_dir) {
  SweepPlan plan;
  plan.spec = spec;
  plan.data_dir = data_dir;
  plan.model_dir = fs::weakly_canonical(model_dir).string();
  // File hashes are cached beside the user's home-independent temp space: keyed by
  // path+size+mtime, so the cache can never make a changed file look unchanged.
  const std::string cache = (fs::temp_directory_path() / "qsweep-hash-cache.json").string();
  plan.model_hash = hash_files(model_files(plan.model_dir), cache);
  const ModelSpec mspec = load_model_spec(plan.model_dir);
  const int64_t model_bytes = mspec.parameter_count() * 4;

  std::map<std::string, int> calib_node;
  for (const auto& [name, c] : spec.calibration) {
    const CalibrationSource src = resolve_calibration_source(c.source, plan.data_dir, c.domain);
    SweepNode n{SweepNodeKind::Calibrate, "calib:" + name, "", {}, "", "", name, {}, 0};
    n.config = {{"model", plan.model_hash},
                {"source", c.source},
                {"source_files", hash_files(src.files, cache)},
                {"jsonl_field", src.jsonl_field},
                {"domain", src.domain},
                {"n_samples", c.n_samples},
                {"seqlen", c.seqlen},
                {"seed", c.seed},
                {"sampling", c.sampling}};
    n.key = key_of("calib", n.config);
    n.memory_bytes = int64_t(c.n_samples) * c.seqlen * 4 + (int64_t(64) << 20);
    plan.calibration_domains[name] = src.domain;
    calib_node[name] = int(plan.nodes.size());
    plan.nodes.push_back(std::move(n));
  }

  std::map<std::string, int> quant_node;
  for (const auto& v : spec.variants) {
    SweepNode n{
        SweepNodeKind::Quantize, "quantize:" + v.id, "", {}, v.id, "", v.calibration, {}, 0};
    n.config = {{"model", plan.model_hash}, {"variant", variant_config(v)}, {"version", kVersion}};
    int64_t act = 0;
    if (!v.calibration.empty()) {
      const int c = calib_node.at(v.calibration);
      n.deps.push_back(c);
      n.config["calibration"] = plan.nodes[size_t(c)].key;
      const CalibrationSpec& cs = spec.calibration.at(v.calibration);
      act = int64_t(cs.n_samples) * cs.seqlen *
            std::max(mspec.hidden_size, mspec.intermediate_size) * 4 * 4;
    }
    n.key = key_of("quant", n.config);
    n.memory_bytes = 3 * model_bytes + act;
    quant_node[v.id] = int(plan.nodes.size());
    plan.nodes.push_back(std::move(n));
  }

  for (const auto& spec_eval : spec.evals) {
    // Every default resolved once, here, for this model.
    const EvalConfig& e =
        plan.evals.emplace_back(spec_eval.resolved(mspec.max_position_embeddings));
    const TaskData data = resolve_task_data(e, plan.data_dir);
    // Absent benchmark data is part of the key: when it appears, the evals run again.
    const std::string ds_hash = data.present ? hash_files(data.files, cache) : "absent";
    int base_node = -1;  // kld variants read the baseline's stored top-k
    auto add_eval = [&](const std::string& variant, int dep, const std::string& upstream) {
      SweepNode n{SweepNodeKind::Evaluate,
                  cat("eval:", variant, ":", e.id),
                  "",
                  {},
                  variant,
                  e.id,
                  "",
                  {},
                  0};
      if (dep >= 0) n.deps.push_back(dep);
      n.config = {{"upstream", upstream},
                  {"eval", e.options_json()},
                  {"dataset_file", ds_hash},
                  {"version", kVersion}};
      if (e.task == Task::Kld && dep >= 0) {
        n.deps.push_back(base_node);
        n.config["baseline"] = plan.nodes[size_t(base_node)].key;
      }
      n.key = key_of("eval", n.config);
      n.memory_bytes = 2 * model_bytes + (int64_t(256) << 20);
      if (dep < 0) base_node = int(plan.nodes.size());
      plan.nodes.push_back(std::move(n));
    };
    add_eval(spec.baseline, -1, plan.model_hash);
    for (const auto& v : spec.variants) {
      const int q = quant_node.at(v.id);
      add_eval(v.id, q, plan.nodes[size_t(q)].key);
    }
  }
  return plan;
}

std::string describe_plan(const SweepPlan& plan, const std::string& out_dir) {
  const ArtifactStore store(out_dir + "/store");
  std::ostringstream os;
  int cached = 0;
  const char* kinds[] = {"calibrate", "quantize", "evaluate"};
  int per_kind[3] = {0, 0, 0};
  os << "sweep " << plan.spec.name << " (" << plan.spec.file << ")\n";
  os << "model " << plan.model_dir << " (hash " << plan.model_hash << ")\n";
  os << "nodes:\n";
  for (const auto& n : plan.nodes) {
    const bool have = store.has(n.key);
    cached += have;
    ++per_kind[int(n.kind)];
    std::string deps;
    for (int d : n.deps) deps += (deps.empty() ? "" : ", ") + plan.nodes[size_t(d)].id;
    os << "  " << (have ? "[cached] " : "[to run] ") << n.id << "  key " << n.key;
    if (!deps.empty()) os << "  after " << deps;
    if (!have) os << "  (no artifact " << n.key << " in " << out_dir << "/store)";
    os << "\n";
  }
  os << plan.nodes.size() << " nodes (" << per_kind[0] << " " << kinds[0] << ", " << per_kind[1]
     << " " << kinds[1] << ", " << per_kind[2] << " " << kinds[2] << "), " << cached << " cached, "
     << plan.nodes.size() - size_t(cached) << " to run\n";
  return os.str();
}

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
      const json meta = read_json(store.path(plan.nodes[i].key) + "/meta.json");
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
        m[e.id] = read_json(store.path(node_by_id.at(id)->key) + "/metrics.json");
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
      const json meta = read_json(store.path(node_by_id.at(qid)->key) + "/meta.json");
      for (const char* k : {"bits_per_weight", "size_bytes", "quantize_seconds"}) j[k] = meta[k];
      if (meta.contains("file_bits_per_weight"))
        j["file_bits_per_weight"] = meta["file_bits_per_weight"];
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

SweepRunSummary run_sweep(const SweepPlan& plan, const SweepRunOptions& opt) {
  fs::create_directories(opt.out_dir);
  const ArtifactStore store(opt.out_dir + "/store");
  SharedInputs shared(plan);
  std::map<std::string, int> by_id;
  std::vector<DagNode> dag;
  for (size_t i = 0; i < plan.nodes.size(); ++i) {
    const SweepNode& n = plan.nodes[i];
    by_id[n.id] = int(i);
    dag.push_back({n.id, n.deps, store.has(n.key), n.memory_bytes});
  }
  const SweepSpec& spec = plan.spec;

  auto run_node = [&](int i) {
    const SweepNode& n = plan.nodes[size_t(i)];
    const std::string tmp = store.begin(n.key);
    try {
      if (n.kind == SweepNodeKind::Calibrate) {
        const CalibrationSpec& c = spec.calibration.at(n.calibration);
        SamplingOptions so;
        so.n_samples = c.n_samples;
        so.seqlen = c.seqlen;
        so.seed = c.seed;
        so.mode = c.sampling == "contiguous" ? SamplingMode::Contiguous : SamplingMode::Random;
        const CalibrationSet set =
            build_calibration_set(c.source, plan.data_dir, shared.tokenizer(), so, c.domain);
        write_json(tmp + "/meta.json", {{"source", set.source},
                                        {"domain", set.domain},
                                        {"tokens_in_source", set.tokens_in_source},
                                        {"offsets", set.offsets},
                                        {"config", n.config}});
        write_json(tmp + "/windows.json", set.windows);
      } else if (n.kind == SweepNodeKind::Quantize) {
        const VariantSpec& v =
            *std::find_if(spec.variants.begin(), spec.variants.end(),
                          [&](const VariantSpec& x) { return x.id == n.variant; });
        CalibrationSet set;
        const CalibrationSet* calib = nullptr;
        if (!v.calibration.empty()) {
          const SweepNode& cn = plan.nodes[size_t(n.deps.at(0))];
          const json meta = read_json(store.path(cn.key) + "/meta.json");
          set.source = meta["source"];
          set.domain = meta["domain"];
          const CalibrationSpec& cs = spec.calibration.at(v.calibration);
          set.options.n_samples = cs.n_samples;
          set.options.seqlen = cs.seqlen;
          set.options.seed = cs.seed;
          set.windows =
              read_json(store.path(cn.key) + "/windows.json").get<std::vector<std::vector<int>>>();
          calib = &set;
        }
        // Every method through one dispatch and one export; the eval node reloads what was
        // written (load_model dispatches on the directory's quant_method or the .gguf file).
        const QuantizedModel qm = quantize_model(shared.base(), v.config, calib);
        const ExportSummary ex =
            write_quantized(qm, plan.model_dir, quantized_model_path(v.config, tmp + "/model"));
        json meta = {{"bits_per_weight", ex.linear_bits_per_weight},
                     {"size_bytes", ex.file_bytes},
                     {"quantize_seconds", qm.seconds},
                     {"config", n.config}};
        if (ex.layout == CheckpointLayout::Gguf) {
          meta["file_bits_per_weight"] = *ex.file_bits_per_weight;
          meta["imatrix"] = calib ? json(calib->source) : json();
          meta["tensors"] = ex.records;
        } else {
          meta["max_layer_loss"] = ex.max_layer_loss;
          meta["linears"] = ex.records;
        }
        write_json(tmp + "/meta.json", meta);
      } else {
        const EvalConfig& e = *std::find_if(plan.evals.begin(), plan.evals.end(),
                                            [&](const EvalConfig& x) { return x.id == n.eval; });
        std::unique_ptr<Transformer> owned;
        const Transformer* model = nullptr;
        if (n.deps.empty()) {
          model = &shared.base();
        } else {
          // Evaluate what the format stores: reload the exported checkpoint.
          const std::string dir = store.path(plan.nodes[size_t(n.deps[0])].key) + "/model";
          const std::string gguf = dir + "/" + kGgufFile;
          LoadedModel m = load_model(fs::exists(gguf) ? gguf : dir);
          owned = std::make_unique<Transformer>(m.spec, std::move(m.weights));
          model = owned.get();
        }
        EvalInputs in(*model, shared.tokenizer(), resolve_task_data(e, plan.data_dir));
        std::shared_ptr<const std::vector<int>> tokens;  // each dataset tokenized once per run
        if (e.task == Task::Perplexity || e.task == Task::Kld)
          tokens = shared.tokens({e.dataset, in.data.path, in.data.domain});
        in.text_tokens = tokens.get();
        if (e.task == Task::Kld) {
          // The baseline's node writes the stored top-k; the variants' read it.
          in.write_kld_baseline = n.deps.size() < 2;
          in.kld_baseline_file =
              in.write_kld_baseline
                  ? tmp + "/" + kKldBaselineFile
                  : store.path(plan.nodes[size_t(n.deps[1])].key) + "/" + kKldBaselineFile;
        }
        const EvalResult res = run_eval(e, in);
        // Per-token NLLs (fp32, text order) let reports pair every variant with the
        // baseline on the same tokens.
        if (e.task == Task::Perplexity)
          write_file_atomic(tmp + "/token_nll.f32", res.token_nll.data(),
                            res.token_nll.size() * sizeof(float));
        json m = res.to_json();
        m["config"] = n.config;
        write_json(tmp + "/metrics.json", m);
      }
      store.commit(n.key, tmp);
    } catch (...) {
      store.abort(tmp);
      throw;
    }
  };

  ExecutorOptions eo;
  eo.jobs = opt.jobs;
  eo.max_memory_bytes = opt.max_memory_bytes > 0 ? opt.max_memory_bytes : physical_memory() * 3 / 4;
  eo.event_log = opt.out_dir + "/events.jsonl";
  eo.progress = opt.progress;
  const std::vector<NodeResult> results = execute_dag(dag, run_node, eo);

  SweepRunSummary sum;
  for (const auto& r : results) {
    sum.ran += r.status == NodeStatus::Done;
    sum.cached += r.status == NodeStatus::Cached;
    sum.failed += r.status == NodeStatus::Failed;
    sum.skipped += r.status == NodeStatus::Skipped;
  }
  const json res = collect_results(plan, opt.out_dir, &results);
  render_reports(res, opt.out_dir, spec.report.formats);
  sum.results_file = opt.out_dir + "/results.json";
  if (std::find(spec.report.formats.begin(), spec.report.formats.end(), "json") ==
      spec.report.formats.end())
    write_json(sum.results_file, res);  // always kept: `qsweep report` re-renders from it
  return sum;
}

}  // namespace qsweep
