// Running a sweep on a Slurm cluster: every node that is not in the store becomes one batch
// job (`qsweep run-node`), submitted with sbatch --dependency=afterok:<upstream jobs>
// --kill-on-invalid-dep=yes, so Slurm orders the work and a failure cancels only its
// descendants. The store on the shared file system stays the source of truth: a node is
// done when its artifact is there, never because its job says so.
//
// DIR/slurm-jobs.json records the jobs of the latest submission (node id, key, job id, log);
// DIR/logs/<node>.log holds each job's stdout and stderr; events.jsonl gets a "submitted"
// event per job. `qsweep status DIR` and `qsweep cancel DIR` read the record.
#pragma once

#include <string>
#include <vector>

#include "pipeline/sweep.h"

namespace qsweep {

struct SlurmOptions {
  std::string qsweep_binary;             ///< absolute path of the qsweep the jobs run
  std::string sweep_file;                ///< absolute path of the sweep file the jobs read
  std::string partition, account, qos;   ///< "" = not passed
  std::vector<std::string> sbatch_args;  ///< passed to every sbatch, before the script
  bool detach = false;                   ///< return after submission
  double poll_seconds = 2;
};

struct SlurmRunSummary {
  SweepRunSummary sweep;  ///< when waited for: as for a local run
  int submitted = 0;      ///< jobs submitted by this call
  int reused = 0;         ///< nodes whose job from an earlier run was still queued or running
  bool detached = false;
  bool interrupted = false;          ///< Ctrl-C while waiting: the jobs keep running
  std::vector<std::string> job_ids;  ///< this sweep's live jobs (for scancel)
};

/// Submits the plan's missing nodes (under DIR's OutDirLock, so two runs never submit one node
/// twice: a node whose recorded job is still queued or running is not resubmitted), then,
/// unless detached, polls squeue and the store until every node is done or failed and writes
/// results.json and the reports as run_sweep does. A job that ended without its artifact is a
/// failed node whose error names the Slurm state and ends with the log's tail; a job Slurm
/// cancelled because an upstream job failed is a skipped node.
SlurmRunSummary run_sweep_slurm(const SweepPlan& plan, const SweepRunOptions& opt,
                                const SlurmOptions& slurm);

/// Runs the one node of `plan` whose key (or id) is `node` into DIR/store, exactly as the local
/// executor does (temporary directory, renamed into place); its upstream artifacts must be in
/// the store. Returns false when the artifact was already there (nothing run).
bool run_sweep_node(const SweepPlan& plan, const std::string& out_dir, const std::string& node);

/// Per node of DIR's latest Slurm submission: cached / queued / running / done / failed, the job
/// id and the log path. Throws Error when DIR has no submission record.
std::string slurm_status(const std::string& out_dir);
/// scancel of DIR's queued and running jobs (this sweep's only). Returns the ids cancelled.
std::vector<std::string> slurm_cancel(const std::string& out_dir);

}  // namespace qsweep
