// A sweep from spec to results: the DAG plan (calibration sets, quantized
// variants, evaluations), content-addressed keys, execution with cache and
// resume, and results.json with every number's provenance.
//
// The pipeline plans and runs nodes; it does not know how a method quantizes or how a task
// scores. What a node does is a NodeRunner's job: the stage runner hands a node to its stage
// (calibration/, quantize/ + formats/, eval/); tests substitute a fake that writes the
// artifact files and counts work, as ninja's tests do.
//   plan.cpp     make_sweep_plan, describe_plan      (the DAG and its content keys)
//   run.cpp      run_sweep                           (store + executor + a NodeRunner)
//   stage_runner.cpp  make_stage_runner               (each node kind → its stage)
//   results.cpp  collect_results                     (results.json from the store)
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipeline/executor.h"
#include "pipeline/spec.h"
#include "pipeline/store.h"

namespace qsweep {

/// Sensitivity (issue #19): every tensor group of the base model quantized alone at one
/// candidate type, its KL vs FP16 on windows held out from the calibration set's.
enum class SweepNodeKind { Calibrate, Quantize, Evaluate, Sensitivity };

struct SweepNode {
  SweepNodeKind kind = SweepNodeKind::Calibrate;
  /// "calib:code", "quantize:<variant>", "eval:<variant>:<eval>", "sensitivity:code:q4_k"
  std::string id;
  std::string key;  ///< content key = artifact directory name in the store
  std::vector<int> deps;
  std::string variant;      ///< variant id ("fp16" for the baseline) — Quantize, Evaluate
  std::string eval;         ///< eval id — Evaluate
  int variant_index = -1;   ///< into spec.variants; -1 for the baseline — Quantize, Evaluate
  int eval_index = -1;      ///< into SweepPlan::evals — Evaluate
  std::string calibration;  ///< calibration name — Calibrate, Sensitivity (and Quantize's input)
  std::string sensitivity_type;  ///< "q4_k" — Sensitivity
  /// The calibration seed this node is for (Calibrate; Quantize and Evaluate of a calibrated
  /// variant), and its index in CalibrationSpec::seeds when the set is replicated (-1 when not:
  /// ids then carry no seed).
  uint64_t seed = 0;
  int replicate = -1;
  nlohmann::json config;  ///< everything hashed into `key`
  int64_t memory_bytes = 0;
  /// GPTQ/AWQ quantize and every eval: the variant's or the sweep's `device:` (auto, cpu,
  /// cuda; not part of `key`);
  /// "" for nodes that never use a GPU. run_sweep resolves auto and holds a GPU for cuda.
  std::string device;
};

/// The name a replicated node uses in its id: "code@seed1" for a calibration, "<variant>@seed1"
/// for a variant (ids "calib:code@seed1", "quantize:<variant>@seed1",
/// "eval:<variant>@seed1:<eval>"). Keys do not use it: a seed's keys are the same whatever the list
/// of seeds.
std::string replicate_name(const std::string& name, uint64_t seed);

struct SweepPlan {
  SweepSpec spec;
  std::string model_dir;
  std::string model_hash;
  std::string data_dir;
  std::map<std::string, std::string> calibration_domains;  ///< calibration name → domain
  /// spec.evals resolved for the model (EvalConfig::resolved), same order: what the eval
  /// nodes run, hash and report.
  std::vector<EvalConfig> evals;
  std::vector<SweepNode> nodes;
};

/// Hashes the inputs and builds the DAG. `model_dir` and `data_dir` are already
/// resolved (the CLI resolves flags and environment: cli/data_dir.h).
SweepPlan make_sweep_plan(const SweepSpec& spec, const std::string& model_dir,
                          const std::string& data_dir);

/// The plan as text: every node, its key, cached or why it must run, and totals.
std::string describe_plan(const SweepPlan& plan, const std::string& out_dir);

struct SweepRunOptions {
  std::string out_dir;
  int jobs = 1;
  int64_t max_memory_bytes = 0;  ///< 0 = 75% of physical memory
  int gpus = -1;                 ///< CUDA devices to schedule on; -1 = detect (cuda_device_count())
  bool progress = true;
};

struct SweepRunSummary {
  int ran = 0, cached = 0, failed = 0, skipped = 0;
  std::string results_file;
};

/// One node to run: its plan, the store its upstream artifacts are in, and the temporary
/// directory its artifact goes to (run_sweep commits it when run() returns, discards it when
/// run() throws).
struct NodeTask {
  const SweepPlan& plan;
  const SweepNode& node;
  const ArtifactStore& store;
  std::string out;  ///< the temporary artifact directory (exists, empty)
  /// Where the node runs: "cuda" (it holds one of the executor's GPUs) or "cpu".
  std::string device = "cpu";
  /// With "cuda": which CUDA device (0-based) it holds, no other running node holding it; -1 =
  /// not said (a Slurm job: the device Slurm gave it).
  int gpu = -1;

  /// The artifact directory of the node's i-th dependency.
  std::string upstream(size_t i) const;
};

/// What a node does. Called from several threads at once (the executor's jobs).
class NodeRunner {
 public:
  virtual ~NodeRunner() = default;
  /// Writes the node's artifact into task.out; throws to fail the node.
  virtual void run(const NodeTask& task) = 0;
};

/// The runner that does the work: calibration windows (calibration/), quantize + export
/// (quantize/, which writes through formats/), evaluation of the reloaded file (eval/).
/// Loads the base model, tokenizer and tokenized datasets once and shares them (read-only).
std::unique_ptr<NodeRunner> make_stage_runner(const SweepPlan& plan);

/// Runs the plan into `out_dir` (store/, events.jsonl, results.json and the
/// reports) with the stage runner. Failing nodes fail their descendants only; the report
/// lists them.
SweepRunSummary run_sweep(const SweepPlan& plan, const SweepRunOptions& opt);
/// The same with another runner (tests: a fake that counts work).
SweepRunSummary run_sweep(const SweepPlan& plan, const SweepRunOptions& opt, NodeRunner& runner);

/// results.json and the reports in `out_dir` from the store and the nodes' results (the end of
/// run_sweep, and of a waited-for Slurm run); sets sum.results_file.
void finish_sweep(const SweepPlan& plan, const std::string& out_dir,
                  const std::vector<NodeResult>& results, SweepRunSummary& sum);

/// results.json content from what the store holds now (used by run and by
/// `qsweep report`). Variants without artifacts appear with status "pending".
nlohmann::json collect_results(const SweepPlan& plan, const std::string& out_dir,
                               const std::vector<NodeResult>* run_results = nullptr);

}  // namespace qsweep
