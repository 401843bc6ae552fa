// qsweep: what does each quantization format cost in quality on the tasks you care about?
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "cli/commands.h"
#include "common/errors.h"

namespace qsweep::cli {

const std::vector<Command>& all_commands() {
  static const std::vector<Command> commands = {
      {run_command, cmd_run},           {plan_command, cmd_plan},
      {report_command, cmd_report},     {quantize_command, cmd_quantize},
      {eval_command, cmd_eval},         {inspect_command, cmd_inspect},
      {tokenize_command, cmd_tokenize}, {status_command, cmd_status},
      {cancel_command, cmd_cancel},     {run_node_command, cmd_run_node, true},
  };
  return commands;
}

}  // namespace qsweep::cli

namespace {

using qsweep::cli::all_commands;

std::string usage() {
  std::string s = "qsweep — quantization sweeps for Llama-family models\n\nusage:\n";
  for (const auto& c : all_commands())
    if (!c.hidden) s += "  " + c.spec().usage + "\n";
  s += R"(
`qsweep COMMAND --help` lists a command's options with their defaults.
MODEL is a Hugging Face directory, a .gguf file (eval) or a model name under
<data dir>/../models. The data directory is --data-dir, else $QSWEEP_DATA, else
../shared/data. Sweep syntax: docs/sweep-format.md.
Exit status: 0 success, 2 bad input (the message says what and where), 3 a sweep finished
with failed nodes (see the report), 1 internal error.
)";
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(usage().c_str(), args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "--version") {
    std::printf("qsweep 0.1.0\n");
    return 0;
  }
  try {
    qsweep::apply_thread_env();
    for (const auto& c : all_commands()) {
      if (c.spec().name != cmd) continue;
      if (qsweep::cli::wants_help(args)) {
        std::fputs(qsweep::cli::format_help(c.spec()).c_str(), stdout);
        return 0;
      }
      return c.run(args);
    }
    std::fprintf(stderr, "qsweep: unknown command '%s'\n%s", cmd.c_str(), usage().c_str());
    return 2;
  } catch (const qsweep::Error& e) {
    std::fprintf(stderr, "qsweep %s: error: %s\n", cmd.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qsweep %s: internal error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
