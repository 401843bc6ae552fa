// The qsweep subcommands: thin mains over the libraries. Each returns the exit
// status; a qsweep::Error thrown inside becomes one line on stderr and status 2.
#pragma once

#include <string>
#include <vector>

namespace qsweep::cli {

int cmd_inspect(const std::vector<std::string>& args);
int cmd_eval(const std::vector<std::string>& args);
int cmd_quantize(const std::vector<std::string>& args);
int cmd_plan(const std::vector<std::string>& args);
int cmd_run(const std::vector<std::string>& args);
int cmd_report(const std::vector<std::string>& args);

}  // namespace qsweep::cli
