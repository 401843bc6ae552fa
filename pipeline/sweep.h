// A sweep from spec to results: the DAG plan (calibration sets, quantized
// variants, evaluations), content-addressed keys, execution with cache and
// resume, and results.json with every number's provenance.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipeline/executor.h"
#include "pipeline/spec.h"

namespace qsweep {

enum class SweepNodeKind { Calibrate, Quantize, Evaluate };

struct SweepNode {
  SweepNodeKind kind;
  std::string id;   ///< "calib:code", "quantize:<variant>", "eval:<variant>:<eval>"
  std::string key;  ///< content key = artifact directory name in the store
  std::vector<int> deps;
  std::string variant;      ///< variant id ("fp16" for the baseline) — Quantize, Evaluate
  std::string eval;         ///< eval id — Evaluate
  std::string calibration;  ///< calibration name — Calibrate (and Quantize's input)
  nlohmann::json config;    ///< everything hashed into `key`
  int64_t memory_bytes = 0;
};

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
  bool progress = true;
};

struct SweepRunSummary {
  int ran = 0, cached = 0, failed = 0, skipped = 0;
  std::string results_file;
};

/// Runs the plan into `out_dir` (store/, events.jsonl, results.json and the
/// reports). Failing nodes fail their descendants only; the report lists them.
SweepRunSummary run_sweep(const SweepPlan& plan, const SweepRunOptions& opt);

/// results.json content from what the store holds now (used by run and by
/// `qsweep report`). Variants without artifacts appear with status "pending".
nlohmann::json collect_results(const SweepPlan& plan, const std::string& out_dir,
                               const std::vector<NodeResult>* run_results = nullptr);

}  // namespace qsweep
