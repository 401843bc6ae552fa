// `qsweep run --executor slurm` (called by cmd_run), and the commands of a Slurm sweep:
// status, cancel and the hidden run-node that each job runs.
#pragma once

#include "cli/args.h"
#include "pipeline/sweep.h"

namespace qsweep::cli {

/// The --executor slurm part of `qsweep run`: submits (and waits unless --detach). Exit status
/// as cmd_run's (3 with failed nodes), 130 when interrupted while waiting (jobs keep running).
int run_on_slurm(const Args& args, const SweepPlan& plan, const SweepRunOptions& opt);

}  // namespace qsweep::cli
