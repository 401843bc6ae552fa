// Runs a DAG of nodes: independent nodes in parallel within a job count, a
// memory budget and a GPU count; a failing node fails its descendants only (they are skipped)
// and everything else finishes. Every state change is appended to a JSONL event
// log (flushed per line, so a run can be followed from another shell and a
// crash loses at most the line being written).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace qsweep {

struct DagNode {
  std::string id;            ///< unique, e.g. "quantize:gptq-b4-g128-code"
  std::vector<int> deps;     ///< indices of nodes that must finish first
  bool cached = false;       ///< its artifact exists: nothing to run
  int64_t memory_bytes = 0;  ///< estimate while it runs
  int gpus = 0;              ///< CUDA devices it holds while it runs
};

enum class NodeStatus { Pending, Cached, Running, Done, Failed, Skipped };
const char* node_status_name(NodeStatus s);

struct NodeResult {
  NodeStatus status = NodeStatus::Pending;
  std::string error;  ///< why it failed, or which upstream failed
  double seconds = 0;
};

struct ExecutorOptions {
  int jobs = 1;
  int64_t max_memory_bytes = 0;  ///< 0 = unlimited
  /// CUDA devices present: never more GPU nodes running at once than this; a node that needs
  /// more than there are fails (without running) saying so.
  int gpus = 0;
  std::string event_log;  ///< JSONL path ("" = none)
  bool progress = true;   ///< live view on stderr
};

/// Runs `run(i)` for every non-cached node once its dependencies are done. `run`
/// throws to fail a node (the message is recorded). Returns one result per node.
std::vector<NodeResult> execute_dag(const std::vector<DagNode>& nodes,
                                    const std::function<void(int)>& run,
                                    const ExecutorOptions& opt);
/// The same, telling `run(i, gpu)` which CUDA device (0 .. opt.gpus − 1) node i holds: the
/// first of its devices, none of which any other running node holds; −1 for a node without.
std::vector<NodeResult> execute_dag(const std::vector<DagNode>& nodes,
                                    const std::function<void(int, int)>& run,
                                    const ExecutorOptions& opt);

}  // namespace qsweep
