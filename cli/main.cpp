// qsweep: what does each quantization format cost in quality on the tasks you care about?
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/errors.h"

namespace {

constexpr const char* kUsage = R"(qsweep — quantization sweeps for Llama-family models

usage:
  qsweep run SWEEP.yaml [--out DIR] [--jobs N] [--max-memory GiB] [--no-progress]
  qsweep plan SWEEP.yaml [--out DIR]        the DAG, what is cached, what will run
  qsweep report OUT_DIR [--formats md,csv,html]   re-render from OUT_DIR/results.json
  qsweep inspect MODEL [--json]
  qsweep eval --model MODEL --task perplexity --dataset NAME|FILE
              [--protocol chunks|strided] [--ctx N] [--stride N] [--max-tokens N]
              [--data-dir DIR] [--device auto|cpu|cuda] [--json] [--no-progress]
  qsweep quantize --model MODEL --method gptq|awq|rtn --bits N [--group-size N] [--sym]
              [--desc-act] [--static-groups] [--no-true-sequential] [--damp-percent F]
              [--calib NAME|FILE|FILE.jsonl:FIELD|GLOB] [--calib-domain D]
              [--n-samples N] [--seqlen N] [--seed N] [--sampling random|contiguous]
              --out DIR [--json]
  qsweep quantize --model MODEL --method q2_k|q3_k_s|q3_k_m|q3_k_l|q4_0|q4_k_s|q4_k_m|
              q5_k_s|q5_k_m|q6_k|q8_0 [--calib ... (importance matrix)] --out FILE.gguf

MODEL is a Hugging Face directory or a model name under <data dir>/../models.
Datasets by name: wikitext2, code-heldout; calibration sources: wikitext2 (validation
split), code, docs (data directory: --data-dir, QSWEEP_DATA,
or ../shared/data).
Exit status: 0 success, 2 bad input (the message says what and where), 3 a sweep finished
with failed nodes (see the report), 1 internal error. Sweep syntax: docs/sweep-format.md.
)";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  try {
    if (cmd == "inspect") return qsweep::cli::cmd_inspect(args);
    if (cmd == "eval") return qsweep::cli::cmd_eval(args);
    if (cmd == "quantize") return qsweep::cli::cmd_quantize(args);
    if (cmd == "plan") return qsweep::cli::cmd_plan(args);
    if (cmd == "run") return qsweep::cli::cmd_run(args);
    if (cmd == "report") return qsweep::cli::cmd_report(args);
    if (cmd == "--version") {
      std::printf("qsweep 0.1.0\n");
      return 0;
    }
    std::fprintf(stderr, "qsweep: unknown command '%s'\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const qsweep::Error& e) {
    std::fprintf(stderr, "qsweep %s: error: %s\n", cmd.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qsweep %s: internal error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
