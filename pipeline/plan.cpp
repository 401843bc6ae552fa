// The plan: a sweep's DAG of calibration, quantization and evaluation nodes, each with a
// content key that hashes everything its artifact depends on (docs/architecture.md).
#include <algorithm>
#include <filesystem>
#include <sstream>

#include "calibration/calibration.h"
#include "common/errors.h"
#include "eval/run_eval.h"
#include "model/model_spec.h"
#include "pipeline/detail/artifacts.h"
#include "pipeline/store.h"
#include "pipeline/sweep.h"

namespace qsweep {
namespace fs = std::filesystem;
using detail::kStoreFormat;
using detail::kVersion;
using nlohmann::json;

namespace {

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

}  // namespace

std::string replicate_name(const std::string& name, uint64_t seed) {
  return cat(name, "@seed", seed);
}

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

  // One calibration node per seed; its key hashes that seed alone, so a seed's nodes (and
  // everything downstream) keep their keys when seeds are added to the list.
  std::map<std::string, std::vector<int>> calib_node;  // per seed
  for (const auto& [name, c] : spec.calibration) {
    const CalibrationSource src = resolve_calibration_source(c.source, plan.data_dir, c.domain);
    const std::string files_hash = hash_files(src.files, cache);
    for (size_t si = 0; si < c.seeds.size(); ++si) {
      SweepNode n;
      n.kind = SweepNodeKind::Calibrate;
      n.seed = c.seeds[si];
      n.replicate = c.replicated() ? int(si) : -1;
      n.id = "calib:" + (c.replicated() ? replicate_name(name, n.seed) : name);
      n.calibration = name;
      n.config = {{"model", plan.model_hash},   {"source", c.source},
                  {"source_files", files_hash}, {"jsonl_field", src.jsonl_field},
                  {"domain", src.domain},       {"n_samples", c.n_samples},
                  {"seqlen", c.seqlen},         {"seed", n.seed},
                  {"sampling", c.sampling}};
      n.key = key_of("calib", n.config);
      n.memory_bytes = int64_t(c.n_samples) * c.seqlen * 4 + (int64_t(64) << 20);
      calib_node[name].push_back(int(plan.nodes.size()));
      plan.nodes.push_back(std::move(n));
    }
    plan.calibration_domains[name] = src.domain;
  }

  // The sensitivity study (issue #19): one node per (calibration seed, candidate type), each
  // measuring every tensor group at that type. Per type rather than per type x group: a
  // node then costs one FP16 forward (its cache) + one partial forward per group, and a
  // 7B model's study is ~6 nodes, not ~1300 (the store and the executor handle both, but
  // per-group nodes would repeat the FP16 cache 200x). Keyed by the calibration node (model,
  // source files, seed, sampling: the windows it excludes), the type and the study options.
  std::map<std::string, std::vector<std::vector<int>>> sens_node;  // calibration → seed → types
  {
    std::vector<std::string> studied;
    auto study = [&](const std::string& name) {
      if (!name.empty() && std::find(studied.begin(), studied.end(), name) == studied.end())
        studied.push_back(name);
    };
    study(spec.sensitivity.calibration);
    for (const VariantSpec& v : spec.variants)
      if (v.config.family() == MethodFamily::AutoMix) study(v.calibration);
    for (const std::string& name : studied) {
      const CalibrationSpec& c = spec.calibration.at(name);
      const int n_samples = spec.sensitivity.n_samples ? spec.sensitivity.n_samples : c.n_samples;
      const int seqlen = spec.sensitivity.seqlen ? spec.sensitivity.seqlen : c.seqlen;
      for (size_t si = 0; si < c.seeds.size(); ++si) {
        const int cn = calib_node.at(name)[si];
        sens_node[name].emplace_back();
        for (const std::string& type : spec.sensitivity.types) {
          SweepNode n;
          n.kind = SweepNodeKind::Sensitivity;
          n.seed = c.seeds[si];
          n.replicate = plan.nodes[size_t(cn)].replicate;
          n.calibration = name;
          n.sensitivity_type = type;
          n.id = cat("sensitivity:", n.replicate >= 0 ? replicate_name(name, n.seed) : name, ":",
                     type);
          n.deps.push_back(cn);
          n.config = {{"model", plan.model_hash},
                      {"calibration", plan.nodes[size_t(cn)].key},
                      {"type", type},
                      {"n_samples", n_samples},
                      {"seqlen", seqlen},
                      {"windows", "held out: seqlen tiles disjoint from the calibration windows"},
                      {"version", kVersion}};
          n.key = key_of("sens", n.config);
          const int64_t tokens = int64_t(n_samples) * seqlen;
          n.memory_bytes =
              2 * model_bytes + tokens * 4 *
                                    (2 * int64_t(mspec.vocab_size) +
                                     int64_t(mspec.num_layers + 1) * mspec.hidden_size);
          sens_node[name].back().push_back(int(plan.nodes.size()));
          plan.nodes.push_back(std::move(n));
        }
      }
    }
  }

  std::vector<std::vector<int>> quant_node;  // by variant index, one per seed
  for (size_t vi = 0; vi < spec.variants.size(); ++vi) {
    const VariantSpec& v = spec.variants[vi];
    const CalibrationSpec* cs =
        v.calibration.empty() ? nullptr : &spec.calibration.at(v.calibration);
    const size_t n_seeds = cs ? cs->seeds.size() : 1;
    quant_node.emplace_back();
    for (size_t si = 0; si < n_seeds; ++si) {
      SweepNode n;
      n.kind = SweepNodeKind::Quantize;
      // GPTQ's column loop and AWQ's searches run on a backend; RTN, the llama.cpp mixes and
      // auto_mix never hold a GPU.
      if (v.config.family() == MethodFamily::Gptq || v.config.family() == MethodFamily::Awq)
        n.device = v.device.empty() ? spec.device : v.device;
      n.variant = v.id;
      n.variant_index = int(vi);
      n.calibration = v.calibration;
      // The method's typed configuration, as one JSON (quantize/method.h's round trip).
      n.config = {
          {"model", plan.model_hash}, {"variant", v.config.to_json()}, {"version", kVersion}};
      // GPTQ and AWQ hold the calibration hidden states between layers in fp16 since #15
      // (quantize/layer_inputs.h); results computed with fp32 ones are not reused for them.
      if (v.config.family() == MethodFamily::Gptq || v.config.family() == MethodFamily::Awq)
        n.config["layer_inputs"] = "f16";
      int64_t act = 0;
      if (cs) {
        const int c = calib_node.at(v.calibration)[si];
        n.seed = cs->seeds[si];
        n.replicate = plan.nodes[size_t(c)].replicate;
        n.deps.push_back(c);
        n.config["calibration"] = plan.nodes[size_t(c)].key;
        if (v.config.family() == MethodFamily::AutoMix) {
          // The measured table comes from the sensitivity nodes (deps 1..): an edit of the
          // budget changes this key only.
          n.config["sensitivity"] = json::array();
          for (const int sn : sens_node.at(v.calibration)[si]) {
            n.deps.push_back(sn);
            n.config["sensitivity"].push_back(plan.nodes[size_t(sn)].key);
          }
        }
        act = int64_t(cs->n_samples) * cs->seqlen *
              std::max(mspec.hidden_size, mspec.intermediate_size) * 4 * 4;
      }
      n.id = "quantize:" + (n.replicate >= 0 ? replicate_name(v.id, n.seed) : v.id);
      n.key = key_of("quant", n.config);
      n.memory_bytes = 3 * model_bytes + act;
      quant_node.back().push_back(int(plan.nodes.size()));
      plan.nodes.push_back(std::move(n));
    }
  }

  for (const auto& spec_eval : spec.evals) {
    // Every default resolved once, here, for this model.
    const int eval_index = int(plan.evals.size());
    const EvalConfig& e =
        plan.evals.emplace_back(spec_eval.resolved(mspec.max_position_embeddings));
    const TaskData data = resolve_task_data(e, plan.data_dir);
    // Absent benchmark data is part of the key: when it appears, the evals run again.
    const std::string ds_hash = data.present ? hash_files(data.files, cache) : "absent";
    int base_node = -1;  // kld variants read the baseline's stored top-k
    auto add_eval = [&](const std::string& variant, int variant_index, int dep,
                        const std::string& upstream) {
      SweepNode n;
      n.kind = SweepNodeKind::Evaluate;
      // Every task runs its Transformer on the node's backend (eval/run_eval.h): the eval
      // entry's own `device:`, else the sweep's.
      n.device = e.device.empty() ? spec.device : e.device;
      n.variant = variant;
      if (dep >= 0) {
        n.seed = plan.nodes[size_t(dep)].seed;
        n.replicate = plan.nodes[size_t(dep)].replicate;
      }
      n.id = cat("eval:", n.replicate >= 0 ? replicate_name(variant, n.seed) : variant, ":", e.id);
      n.eval = e.id;
      n.variant_index = variant_index;
      n.eval_index = eval_index;
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
    add_eval(spec.baseline, -1, -1, plan.model_hash);
    for (size_t vi = 0; vi < spec.variants.size(); ++vi)
      for (const int q : quant_node[vi])
        add_eval(spec.variants[vi].id, int(vi), q, plan.nodes[size_t(q)].key);
  }
  return plan;
}

std::string describe_plan(const SweepPlan& plan, const std::string& out_dir) {
  const ArtifactStore store(out_dir + "/store", ArtifactStore::Access::Read);  // no lock, no writes
  std::ostringstream os;
  int cached = 0;
  const char* kinds[] = {"calibrate", "quantize", "evaluate", "sensitivity"};
  int per_kind[4] = {0, 0, 0, 0};
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
     << " " << kinds[1] << ", " << per_kind[2] << " " << kinds[2]
     << (per_kind[3] ? cat(", ", per_kind[3], " ", kinds[3]) : "") << "), " << cached << " cached, "
     << plan.nodes.size() - size_t(cached) << " to run\n";
  return os.str();
}

}  // namespace qsweep
