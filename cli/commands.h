// The qsweep subcommands: thin mains over the libraries. Each returns the exit
// status; a qsweep::Error thrown inside becomes one line on stderr and status 2.
// Each declares its options once (a CommandSpec, cli/args.h): the same table parses the
// command line and prints `qsweep COMMAND --help`.
#pragma once

#include <string>
#include <vector>

#include "cli/args.h"

namespace qsweep::cli {

int cmd_inspect(const std::vector<std::string>& args);
int cmd_eval(const std::vector<std::string>& args);
int cmd_quantize(const std::vector<std::string>& args);
int cmd_plan(const std::vector<std::string>& args);
int cmd_run(const std::vector<std::string>& args);
int cmd_report(const std::vector<std::string>& args);
int cmd_tokenize(const std::vector<std::string>& args);
int cmd_run_node(const std::vector<std::string>& args);
int cmd_status(const std::vector<std::string>& args);
int cmd_cancel(const std::vector<std::string>& args);

const CommandSpec& inspect_command();
const CommandSpec& eval_command();
const CommandSpec& quantize_command();
const CommandSpec& plan_command();
const CommandSpec& run_command();
const CommandSpec& report_command();
const CommandSpec& tokenize_command();
const CommandSpec& run_node_command();
const CommandSpec& status_command();
const CommandSpec& cancel_command();

/// A subcommand: its option table and its main.
struct Command {
  const CommandSpec& (*spec)();
  int (*run)(const std::vector<std::string>&);
  bool hidden = false;  ///< not in `qsweep --help` (run-node: what Slurm jobs run)
};
/// Every subcommand, in the order `qsweep --help` lists them.
const std::vector<Command>& all_commands();

}  // namespace qsweep::cli
