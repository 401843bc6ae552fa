// The stage runner: each node kind handed to the stage that owns it. The pipeline only
// moves artifacts between them: calibration windows to the quantize node, the written
// checkpoint to its eval nodes (which reload it: what the format stores is what is measured).
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>

#include "backends/backend.h"
#include "calibration/calibration.h"
#include "common/errors.h"
#include "common/json_reader.h"
#include "common/mapped_file.h"
#include "eval/datasets.h"
#include "eval/run_eval.h"
#include "formats/formats.h"
#include "model/tokenizer.h"
#include "pipeline/detail/artifacts.h"
#include "pipeline/sweep.h"
#include "quantize/auto_mix_model.h"
#include "quantize/export.h"
#include "quantize/quantize.h"

namespace qsweep {
namespace fs = std::filesystem;
using detail::read_json;
using detail::write_json;
using nlohmann::json;

namespace {

/// The node's backend: null on the CPU; on CUDA, made on the device the executor gave the node
/// (run_sweep resolved the device; calibration, RTN, the llama.cpp mixes and auto_mix are never
/// "cuda").
std::unique_ptr<Backend> node_backend(const NodeTask& t) {
  if (t.device != "cuda") return nullptr;
  if (t.gpu >= 0) use_cuda_device(t.gpu);  // this node's thread only
  return make_backend("cuda");
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

/// The sampling of one calibration node: the set's options with the node's own seed.
SamplingOptions sampling_of(const CalibrationSpec& c, uint64_t seed) {
  SamplingOptions so;
  so.n_samples = c.n_samples;
  so.seqlen = c.seqlen;
  so.seed = seed;
  so.mode = c.sampling == "contiguous" ? SamplingMode::Contiguous : SamplingMode::Random;
  return so;
}

class StageRunner final : public NodeRunner {
 public:
  explicit StageRunner(const SweepPlan& plan) : plan_(plan), shared_(plan) {}

  void run(const NodeTask& t) override {
    switch (t.node.kind) {
      case SweepNodeKind::Calibrate:
        return calibrate(t);
      case SweepNodeKind::Quantize:
        return quantize(t);
      case SweepNodeKind::Evaluate:
        return evaluate(t);
      case SweepNodeKind::Sensitivity:
        return sensitivity(t);
    }
  }

 private:
  // calibration/: the token windows, and where they came from.
  void calibrate(const NodeTask& t) {
    const CalibrationSpec& c = plan_.spec.calibration.at(t.node.calibration);
    const CalibrationSet set = build_calibration_set(c.source, plan_.data_dir, shared_.tokenizer(),
                                                     sampling_of(c, t.node.seed), c.domain);
    write_json(t.out + "/meta.json", {{"source", set.source},
                                      {"domain", set.domain},
                                      {"tokens_in_source", set.tokens_in_source},
                                      {"offsets", set.offsets},
                                      {"config", t.node.config}});
    write_json(t.out + "/windows.json", set.windows);
  }

  // Token windows written by a calibration or sensitivity node.
  static CalibrationSet read_windows(const std::string& windows_file) {
    CalibrationSet set;
    const json windows = read_json(windows_file);
    QS_THROW_IF_NOT(windows.is_array(), windows_file, ": expected a list of token windows");
    for (const json& w : windows) {
      QS_THROW_IF_NOT(w.is_array(), windows_file, ": expected a list of token windows");
      std::vector<int>& out = set.windows.emplace_back();
      for (const json& t : w) {
        QS_THROW_IF_NOT(t.is_number_integer() && t.get<int64_t>() >= 0 &&
                            t.get<int64_t>() <= std::numeric_limits<int>::max(),
                        windows_file, ": a token id must be a non-negative integer, got ",
                        t.dump());
        out.push_back(t.get<int>());
      }
    }
    return set;
  }

  // The calibration node's windows, read back from its artifact.
  CalibrationSet read_calibration(const NodeTask& t, const CalibrationSpec& c) {
    const std::string dir = t.upstream(0);
    const std::string meta_file = dir + "/meta.json";
    const json meta = read_json(meta_file);
    const JsonReader mr(meta, meta_file);
    CalibrationSet set;
    set.source = mr.required<std::string>("source");
    set.domain = mr.required<std::string>("domain");
    set.options = sampling_of(c, t.node.seed);
    const CalibrationSet w = read_windows(dir + "/windows.json");
    set.windows = w.windows;
    return set;
  }

  // quantize/sensitivity.h: every tensor group at one type, on windows of the calibration
  // source held out from the calibration node's windows (their offsets, from its meta.json).
  void sensitivity(const NodeTask& t) {
    const CalibrationSpec& c = plan_.spec.calibration.at(t.node.calibration);
    const std::string meta_file = t.upstream(0) + "/meta.json";
    const json meta = read_json(meta_file);
    std::vector<int64_t> exclude;
    for (const json& o : JsonReader(meta, meta_file).array("offsets")) {
      QS_THROW_IF_NOT(o.is_number_integer() && o.get<int64_t>() >= 0, meta_file,
                      ": key 'offsets' must hold non-negative integers, got ", o.dump());
      exclude.push_back(o.get<int64_t>());
    }
    const CalibrationSource src = resolve_calibration_source(c.source, plan_.data_dir, c.domain);
    const std::vector<int> tokens =
        shared_.tokenizer().encode(read_calibration_text(src), /*add_bos=*/false);
    const CalibrationSet held =
        held_out_windows(tokens, exclude, c.seqlen, t.node.config.at("n_samples").get<int>(),
                         t.node.config.at("seqlen").get<int>(), src.name, src.domain);
    SensitivityStudy study(shared_.base(), held.windows);
    const std::vector<SensitivityMeasurement> rows =
        study.measure_type(*sensitivity_type_from_name(t.node.sensitivity_type));
    json table = json::array();
    for (const auto& m : rows) table.push_back(sensitivity_to_json(m));
    write_json(t.out + "/windows.json", held.windows);
    write_json(t.out + "/sensitivity.json", {{"type", t.node.sensitivity_type},
                                             {"source", held.source},
                                             {"domain", held.domain},
                                             {"offsets", held.offsets},
                                             {"excluded_offsets", exclude},
                                             {"tokens", study.tokens()},
                                             {"setup_seconds", study.setup_seconds()},
                                             {"measurements", table},
                                             {"config", t.node.config}});
  }

  // auto_mix: the table from the sensitivity nodes (deps 1..), the windows they measured on.
  QuantizedModel auto_mix_from_nodes(const NodeTask& t, const VariantSpec& v) {
    std::vector<SensitivityMeasurement> table;
    CalibrationSet held;
    for (size_t i = 1; i < t.node.deps.size(); ++i) {
      const std::string file = t.upstream(i) + "/sensitivity.json";
      const json j = read_json(file);
      for (const json& m : JsonReader(j, file).array("measurements"))
        table.push_back(sensitivity_from_json(m, file));
      if (i == 1) {
        const JsonReader r(j, file);
        held = read_windows(t.upstream(i) + "/windows.json");
        held.source = r.required<std::string>("source");
        held.domain = r.required<std::string>("domain");
        for (const json& o : r.array("offsets")) {
          QS_THROW_IF_NOT(o.is_number_integer(), file, ": key 'offsets' must hold integers");
          held.offsets.push_back(o.get<int64_t>());
        }
      }
    }
    QS_THROW_IF_NOT(!held.windows.empty(), "quantize:", v.id, ": no sensitivity nodes upstream");
    return quantize_auto_mix_from_table(shared_.base(), v.config, table, held);
  }

  // quantize/: every method through one dispatch and one export (which writes through
  // formats/); the eval nodes reload what was written.
  void quantize(const NodeTask& t) {
    const VariantSpec& v = plan_.spec.variants.at(size_t(t.node.variant_index));
    // The node's device (run_sweep resolved it; only GPTQ and AWQ nodes are ever "cuda").
    const std::unique_ptr<Backend> backend = node_backend(t);
    QuantRunOptions run;
    run.backend = backend.get();
    std::optional<CalibrationSet> calib;
    if (!v.calibration.empty())
      calib = read_calibration(t, plan_.spec.calibration.at(v.calibration));
    const QuantizedModel qm =
        v.config.family() == MethodFamily::AutoMix && t.node.deps.size() > 1
            ? auto_mix_from_nodes(t, v)
            : quantize_model(shared_.base(), v.config, calib ? &*calib : nullptr, {}, run);
    const ExportSummary ex =
        write_quantized(qm, plan_.model_dir, quantized_model_path(v.config, t.out + "/model"));
    json meta = {{"bits_per_weight", ex.linear_bits_per_weight},
                 {"size_bytes", ex.file_bytes},
                 {"quantize_seconds", qm.seconds + ex.quantize_seconds},
                 {"model_path", fs::relative(ex.path, t.out).string()},
                 {"config", t.node.config}};
    if (ex.layout == CheckpointLayout::Gguf) {
      meta["file_bits_per_weight"] = *ex.file_bits_per_weight;
      meta["imatrix"] = calib && v.config.info().calibration == CalibrationUse::Optional
                            ? json(calib->source)
                            : json();
      meta["tensors"] = ex.records;
    } else {
      meta["max_layer_loss"] = ex.max_layer_loss;
      meta["linears"] = ex.records;
    }
    // auto_mix's measurements and choices; a budgeted GPTQ's per-linear costs and widths.
    if (!qm.method_meta.is_null())
      meta[qm.config.gptq() ? "gptq_bits" : "auto_mix"] = qm.method_meta;
    write_json(t.out + "/meta.json", meta);
  }

  // eval/: one run_eval call, whatever the task; the artifact is its metrics.json (+ the
  // per-token NLLs of a perplexity, + the baseline's stored top-k of a kld).
  void evaluate(const NodeTask& t) {
    const EvalConfig& e = plan_.evals.at(size_t(t.node.eval_index));
    std::unique_ptr<Transformer> owned;
    const Transformer* model = &shared_.base();
    if (t.node.variant_index >= 0) {
      // Evaluate what the format stores: reload the written checkpoint.
      const std::string dir = t.upstream(0);
      LoadedModel m = load_model(dir + "/" +
                                 JsonReader(read_json(dir + "/meta.json"), dir + "/meta.json")
                                     .required<std::string>("model_path"));
      owned = std::make_unique<Transformer>(m.spec, std::move(m.weights));
      model = owned.get();
    }
    EvalInputs in(*model, shared_.tokenizer(), resolve_task_data(e, plan_.data_dir));
    // Every task on the node's device (run_eval runs the Transformer there).
    const std::unique_ptr<Backend> backend = node_backend(t);
    in.backend = backend.get();
    std::shared_ptr<const std::vector<int>> tokens;  // each dataset tokenized once per run
    if (e.task == Task::Perplexity || e.task == Task::Kld)
      tokens = shared_.tokens({e.dataset, in.data.path, in.data.domain});
    in.text_tokens = tokens.get();
    if (e.task == Task::Kld) {
      // The baseline's node writes the stored top-k; the variants' read it (their 2nd dep).
      in.write_kld_baseline = t.node.variant_index < 0;
      in.kld_baseline_file =
          (in.write_kld_baseline ? t.out : t.upstream(1)) + "/" + detail::kKldBaselineFile;
    }
    const EvalResult res = run_eval(e, in);
    if (!res.token_nll.empty())
      write_file_atomic(t.out + "/" + detail::kTokenNllFile, res.token_nll.data(),
                        res.token_nll.size() * sizeof(float));
    json m = res.to_json();
    m["config"] = t.node.config;
    write_json(t.out + "/metrics.json", m);
  }

  const SweepPlan& plan_;
  SharedInputs shared_;
};

}  // namespace

std::unique_ptr<NodeRunner> make_stage_runner(const SweepPlan& plan) {
  return std::make_unique<StageRunner>(plan);
}

}  // namespace qsweep
