#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/cmd_slurm.h"
#include "cli/commands.h"
#include "cli/data_dir.h"
#include "common/errors.h"
#include "common/json_reader.h"
#include "common/mapped_file.h"
#include "pipeline/spec.h"
#include "pipeline/store.h"
#include "pipeline/sweep.h"
#include "reports/reports.h"

namespace qsweep::cli {

namespace {
std::string sweep_file(const Args& args, const char* usage) {
  QS_THROW_IF_NOT(args.positional().size() == 1, "usage: ", usage);
  return args.positional()[0];
}
std::string default_out(const SweepSpec& s) {
  return "out/" + s.name;
}
// Flags and environment are resolved here; the pipeline gets directories.
SweepPlan plan_from_args(const SweepSpec& spec, const Args& args) {
  const std::string data_flag = args.get("data-dir");
  return make_sweep_plan(spec, resolve_model_dir(spec.model, data_flag),
                         resolve_data_dir(data_flag));
}
}  // namespace

const CommandSpec& plan_command() {
  static const CommandSpec cmd = {
      "plan",
      "qsweep plan SWEEP.yaml [--out DIR]",
      "The sweep's DAG: every node, its content key, whether it is cached in DIR/store or\n"
      "why it must run. Validates the sweep file; runs nothing.",
      {{"out", "DIR", "out/<sweep name>", "the sweep's output directory"},
       {"data-dir", "DIR", "", "where datasets live (else $QSWEEP_DATA, else ../shared/data)"}},
      "The sweep syntax is in docs/sweep-format.md."};
  return cmd;
}

const CommandSpec& run_command() {
  static const CommandSpec cmd = {
      "run",
      "qsweep run SWEEP.yaml [--out DIR] [--jobs N] [--max-memory GiB] [--executor slurm]",
      "Runs a sweep: calibration, quantization and evaluation nodes in dependency order,\n"
      "each cached in DIR/store (a second run recomputes nothing), then results.json,\n"
      "table.md, table.csv and report.html in DIR.",
      {{"out", "DIR", "out/<sweep name>", "the sweep's output directory"},
       {"jobs", "N", "1", "nodes run at once"},
       {"max-memory", "GiB", "75% of physical memory",
        "memory budget; nodes whose estimates exceed it wait"},
       {"data-dir", "DIR", "", "where datasets live (else $QSWEEP_DATA, else ../shared/data)"},
       threads_option(),
       {"no-progress", "", "", "no live status line on stderr"},
       {"executor", "NAME", "local", "local (threads here) or slurm (one sbatch job per node)"},
       {"detach", "", "", "slurm: return after submission (follow with qsweep status DIR)"},
       {"slurm-partition", "NAME", "", "slurm: sbatch --partition"},
       {"slurm-account", "NAME", "", "slurm: sbatch --account"},
       {"slurm-qos", "NAME", "", "slurm: sbatch --qos"},
       {"sbatch-arg", "'ARGS'", "", "slurm: further sbatch arguments (split at spaces)"}},
      "One run at a time per DIR: a second run on it waits for the first (DIR/.lock).\n"
      "Exit status 3 when the sweep finished with failed nodes (the report lists them).\n"
      "The sweep syntax is in docs/sweep-format.md."};
  return cmd;
}

const CommandSpec& report_command() {
  static const CommandSpec cmd = {
      "report",
      "qsweep report OUT_DIR [--formats md,csv,html]",
      "Re-renders a sweep's reports from OUT_DIR/results.json (nothing is recomputed).",
      {{"formats", "LIST", "md,csv,html", "comma-separated: md, csv, json, html"}},
      ""};
  return cmd;
}

int cmd_plan(const std::vector<std::string>& argv) {
  Args args(argv, plan_command());
  const SweepSpec spec = parse_sweep(sweep_file(args, "qsweep plan SWEEP.yaml [--out DIR]"));
  const SweepPlan plan = plan_from_args(spec, args);
  std::printf("%s", describe_plan(plan, args.get("out", default_out(spec))).c_str());
  return 0;
}

int cmd_run(const std::vector<std::string>& argv) {
  Args args(argv, run_command());
  apply_threads(args);
  SweepRunOptions opt;
  opt.jobs = int(args.get_int("jobs", 1));
  QS_THROW_IF_NOT(opt.jobs >= 1, "--jobs must be >= 1");
  if (args.has("max-memory")) opt.max_memory_bytes = max_memory_bytes(args);
  opt.progress = !args.has("no-progress");
  const std::string executor = args.get("executor", "local");
  QS_THROW_IF_NOT(executor == "local" || executor == "slurm",
                  "--executor must be local or slurm, got '", executor, "'");
  for (const char* f : {"detach", "slurm-partition", "slurm-account", "slurm-qos", "sbatch-arg"})
    QS_THROW_IF_NOT(executor == "slurm" || !args.has(f), "--", f, " needs --executor slurm");
  const SweepSpec spec = parse_sweep(
      sweep_file(args, "qsweep run SWEEP.yaml [--out DIR] [--jobs N] [--max-memory GiB]"));
  opt.out_dir = args.get("out", default_out(spec));
  prepare_output_dir(opt.out_dir);  // a bad --out fails before any hashing or loading
  const SweepPlan plan = plan_from_args(spec, args);
  std::fprintf(stderr, "sweep %s: %zu nodes, output in %s (events: %s/events.jsonl)\n",
               spec.name.c_str(), plan.nodes.size(), opt.out_dir.c_str(), opt.out_dir.c_str());
  if (executor == "slurm") return run_on_slurm(args, plan, opt);
  const SweepRunSummary s = run_sweep(plan, opt);
  std::printf("%d ran, %d cached, %d failed, %d skipped\n", s.ran, s.cached, s.failed, s.skipped);
  const std::string table = opt.out_dir + "/table.md";
  if (std::filesystem::exists(table)) std::printf("\n%s", read_text_file(table).c_str());
  std::printf("\nresults: %s\n", s.results_file.c_str());
  return s.failed > 0 ? 3 : 0;
}

int cmd_report(const std::vector<std::string>& argv) {
  Args args(argv, report_command());
  QS_THROW_IF_NOT(args.positional().size() == 1, "usage: qsweep report OUT_DIR");
  const std::string dir = args.positional()[0];
  const std::string file = dir + "/results.json";
  QS_THROW_IF_NOT(std::filesystem::exists(file), file, ": not found; run the sweep first");
  const nlohmann::json results = read_json_file(file);  // regular file, no repeated keys
  std::vector<std::string> formats = {"md", "csv", "html"};
  if (args.has("formats")) {
    formats.clear();
    std::string f = args.get("formats");
    for (size_t p = 0; p <= f.size();) {
      const size_t c = std::min(f.find(',', p), f.size());
      formats.push_back(f.substr(p, c - p));
      p = c + 1;
    }
  }
  try {
    render_reports(results, dir, formats);
  } catch (const Error& e) {  // reports/ names "results.json: KEY ...": name the whole path
    const std::string m = e.what();
    if (m.rfind("results.json: ", 0) == 0) throw Error(file + m.substr(12));
    throw;
  }
  std::printf("%s", read_text_file(dir + "/table.md").c_str());
  return 0;
}

}  // namespace qsweep::cli
