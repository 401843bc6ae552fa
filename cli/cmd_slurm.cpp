#include "cli/cmd_slurm.h"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "cli/commands.h"
#include "cli/data_dir.h"
#include "common/errors.h"
#include "common/mapped_file.h"
#include "pipeline/slurm.h"
#include "pipeline/spec.h"

namespace qsweep::cli {
namespace fs = std::filesystem;

const CommandSpec& run_node_command() {
  static const CommandSpec cmd = {
      "run-node",
      "qsweep run-node SWEEP.yaml --out DIR --node KEY [--data-dir DIR]",
      "Runs one node of a sweep's plan (by its key or id) into DIR/store, as the local executor\n"
      "would; its upstream artifacts must be there. What each Slurm job of\n"
      "`qsweep run --executor slurm` runs.",
      {{"out", "DIR", "", "the sweep's output directory"},
       {"node", "KEY", "", "the node's key (or id)"},
       {"data-dir", "DIR", "", "where datasets live (else $QSWEEP_DATA, else ../shared/data)"}},
      ""};
  return cmd;
}

const CommandSpec& status_command() {
  static const CommandSpec cmd = {
      "status",
      "qsweep status DIR",
      "Where a Slurm sweep stands: per node cached, queued, running, done or failed, with its\n"
      "Slurm job id and log (DIR/logs/<node>.log).",
      {},
      ""};
  return cmd;
}

const CommandSpec& cancel_command() {
  static const CommandSpec cmd = {
      "cancel",
      "qsweep cancel DIR",
      "Cancels (scancel) the queued and running Slurm jobs of the sweep in DIR, and no others.\n"
      "Artifacts already in DIR/store stay; `qsweep run` later submits only what is missing.",
      {},
      ""};
  return cmd;
}

int cmd_run_node(const std::vector<std::string>& argv) {
  Args args(argv, run_node_command());
  QS_THROW_IF_NOT(args.positional().size() == 1,
                  "usage: qsweep run-node SWEEP.yaml --out DIR --node KEY");
  const SweepSpec spec = parse_sweep(args.positional()[0]);
  const std::string data_flag = args.get("data-dir");
  const SweepPlan plan =
      make_sweep_plan(spec, resolve_model_dir(spec.model, data_flag), resolve_data_dir(data_flag));
  const std::string node = args.require("node");
  std::fprintf(stderr, "qsweep run-node: %s in %s\n", node.c_str(), args.require("out").c_str());
  const bool ran = run_sweep_node(plan, args.require("out"), node);
  std::fprintf(stderr, "qsweep run-node: %s\n", ran ? "done" : "already in the store");
  return 0;
}

int cmd_status(const std::vector<std::string>& argv) {
  Args args(argv, status_command());
  QS_THROW_IF_NOT(args.positional().size() == 1, "usage: qsweep status DIR");
  std::printf("%s", slurm_status(args.positional()[0]).c_str());
  return 0;
}

int cmd_cancel(const std::vector<std::string>& argv) {
  Args args(argv, cancel_command());
  QS_THROW_IF_NOT(args.positional().size() == 1, "usage: qsweep cancel DIR");
  const std::vector<std::string> ids = slurm_cancel(args.positional()[0]);
  if (ids.empty()) {
    std::printf("no queued or running jobs for %s\n", args.positional()[0].c_str());
    return 0;
  }
  std::printf("cancelled %zu jobs:", ids.size());
  for (const auto& j : ids) std::printf(" %s", j.c_str());
  std::printf("\n");
  return 0;
}

int run_on_slurm(const Args& args, const SweepPlan& plan, const SweepRunOptions& opt) {
  SlurmOptions so;
  so.qsweep_binary = fs::read_symlink("/proc/self/exe").string();
  so.sweep_file = fs::absolute(plan.spec.file).lexically_normal().string();
  so.partition = args.get("slurm-partition");
  so.account = args.get("slurm-account");
  so.qos = args.get("slurm-qos");
  std::istringstream extra(args.get("sbatch-arg"));
  for (std::string a; extra >> a;) so.sbatch_args.push_back(a);
  so.detach = args.has("detach");
  const SlurmRunSummary s = run_sweep_slurm(plan, opt, so);
  std::printf("%d jobs submitted, %d already queued or running\n", s.submitted, s.reused);
  std::string ids;
  for (const auto& j : s.job_ids) ids += " " + j;
  if (s.detached || s.interrupted) {
    std::printf(
        "%sjobs keep running; follow with `qsweep status %s`, stop with `qsweep cancel %s`"
        "%s\n",
        s.interrupted ? "interrupted: " : "", opt.out_dir.c_str(), opt.out_dir.c_str(),
        ids.empty() ? "" : cat(" (or scancel", ids, ")").c_str());
    return s.interrupted ? 130 : 0;
  }
  std::printf("%d ran, %d cached, %d failed, %d skipped\n", s.sweep.ran, s.sweep.cached,
              s.sweep.failed, s.sweep.skipped);
  const std::string table = opt.out_dir + "/table.md";
  if (fs::exists(table)) std::printf("\n%s", read_text_file(table).c_str());
  std::printf("\nresults: %s\n", s.sweep.results_file.c_str());
  return s.sweep.failed > 0 ? 3 : 0;
}

}  // namespace qsweep::cli
