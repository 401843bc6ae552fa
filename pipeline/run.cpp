// Running a plan: the store decides what is cached, the executor orders and limits the work,
// a NodeRunner does each node, and results.json plus the reports are rendered at the end.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "backends/backend.h"
#include "common/errors.h"
#include "pipeline/detail/artifacts.h"
#include "pipeline/sweep.h"
#include "reports/reports.h"

namespace qsweep {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int64_t physical_memory() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), size = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? int64_t(pages) * size : (int64_t(8) << 30);
}

}  // namespace

std::string NodeTask::upstream(size_t i) const {
  QS_ASSERT(i < node.deps.size(), node.id, " has no dependency ", i);
  return store.path(plan.nodes[size_t(node.deps[i])].key);
}

SweepRunSummary run_sweep(const SweepPlan& plan, const SweepRunOptions& opt) {
  const std::unique_ptr<NodeRunner> runner = make_stage_runner(plan);
  return run_sweep(plan, opt, *runner);
}

SweepRunSummary run_sweep(const SweepPlan& plan, const SweepRunOptions& opt, NodeRunner& runner) {
  // Before any work: `device: cuda` with no usable CUDA device is the sweep file's error.
  const int gpus = opt.gpus >= 0 ? opt.gpus : cuda_device_count();
  std::vector<std::string> device(plan.nodes.size(), "cpu");
  bool needs_gpu = false;
  for (size_t i = 0; i < plan.nodes.size(); ++i) {
    const std::string& d = plan.nodes[i].device;
    if (d == "cuda" || (d == "auto" && gpus > 0)) device[i] = "cuda";
    needs_gpu |= d == "cuda";
  }
  if (gpus == 0 && needs_gpu)
    throw Error(cat(plan.spec.file, ": device: cuda but no CUDA device is usable (",
                    cuda_available() ? "none scheduled" : cuda_unavailable_reason(),
                    "): set `device: auto` or `device: cpu`"));
  prepare_output_dir(opt.out_dir);
  // One run at a time in a directory: a second one waits here (and says for whom).
  const OutDirLock lock(
      opt.out_dir, [](const std::string& m) { std::fprintf(stderr, "qsweep: %s\n", m.c_str()); });
  const ArtifactStore store(opt.out_dir + "/store");  // removes only dead writers' temporaries
  std::vector<DagNode> dag;
  for (const SweepNode& n : plan.nodes)
    dag.push_back(
        {n.id, n.deps, store.has(n.key), n.memory_bytes, device[dag.size()] == "cuda" ? 1 : 0});

  // A node's artifact appears only when it is complete: written in a temporary directory,
  // renamed into place when the runner returns, discarded when it throws.
  auto run_node = [&](int i, int gpu) {
    const SweepNode& n = plan.nodes[size_t(i)];
    const std::string tmp = store.begin(n.key);
    try {
      runner.run(NodeTask{plan, n, store, tmp, device[size_t(i)], gpu});
      store.commit(n.key, tmp);
    } catch (...) {
      store.abort(tmp);
      throw;
    }
  };

  ExecutorOptions eo;
  eo.jobs = opt.jobs;
  eo.max_memory_bytes = opt.max_memory_bytes > 0 ? opt.max_memory_bytes : physical_memory() * 3 / 4;
  eo.gpus = gpus;
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
  finish_sweep(plan, opt.out_dir, results, sum);
  return sum;
}

void finish_sweep(const SweepPlan& plan, const std::string& out_dir,
                  const std::vector<NodeResult>& results, SweepRunSummary& sum) {
  const json res = collect_results(plan, out_dir, &results);
  const std::vector<std::string>& formats = plan.spec.report.formats;
  render_reports(res, out_dir, formats);
  sum.results_file = out_dir + "/results.json";
  if (std::find(formats.begin(), formats.end(), "json") == formats.end())
    detail::write_json(sum.results_file, res);  // always kept: `qsweep report` re-renders from it
}

}  // namespace qsweep
