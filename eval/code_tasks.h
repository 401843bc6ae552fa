// Code-generation tasks scored by executing the generated code against tests:
// HumanEval (openai/human-eval) and MBPP (google-research/mbpp).
//
// Protocol (the official harnesses):
//  * HumanEval: the model continues `prompt` (signature + docstring). The completion is cut
//    at the Codex stop sequences ("\nclass", "\ndef", "\n#", "\nif", "\nprint"); the program
//    is prompt + completion + "\n" + test + "\n" + "check(<entry_point>)".
//  * MBPP: the prompt is "You are an expert Python programmer, and here is your task: <text>
//    Your code should pass these tests:\n\n<tests>\n[BEGIN]\n" after three exemplars
//    (tasks 2-4, "<code>\n[DONE]") when the file has them; the completion is cut at
//    "[DONE]"; the program is completion + "\n" + test_setup_code + "\n" + the asserts.
//    The evaluated split is tasks 11-510 (the paper's test split) when the file has them,
//    else every task that is not an exemplar.
//  * Each program runs in the sandbox (eval/sandbox.h); a sample passes when it exits 0.
//  * pass@k per problem with the unbiased estimator 1 - C(n-c, k) / C(n, k) (n samples,
//    c correct), averaged over problems; standard error = sample std over problems / sqrt(N).
//    Greedy decoding (temperature 0, n = 1) gives pass@1.
//
// A missing data file gives status `skipped` ("skipped: <file> not found"), not an exception,
// so one absent dataset does not stop a sweep.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "eval/generation.h"
#include "eval/sandbox.h"

namespace qsweep {

struct CodeProblem {
  std::string task_id;      ///< "HumanEval/0", or the MBPP number as text
  std::string prompt;       ///< HumanEval: what the model continues; MBPP: the task text
  std::string reference;    ///< canonical_solution (HumanEval) / code (MBPP)
  std::string test;         ///< HumanEval: the test code defining check(candidate)
  std::string entry_point;  ///< HumanEval: the function check() is called with
  // MBPP only
  std::vector<std::string> test_list;  ///< assert statements
  std::string test_setup_code;         ///< run before the asserts (sanitized: test_imports)
  std::vector<std::string> challenge_test_list;
};

/// HumanEval JSONL, gzip-compressed or plain (fields task_id, prompt, canonical_solution,
/// test, entry_point). Throws Error naming the file and line when malformed.
std::vector<CodeProblem> load_humaneval(const std::string& path);
/// MBPP: upstream mbpp.jsonl (task_id, text, code, test_list, test_setup_code,
/// challenge_test_list) or the sanitized JSON array (task_id, prompt, code, test_imports,
/// test_list). Gzip accepted. Throws Error naming the file and entry when malformed.
std::vector<CodeProblem> load_mbpp(const std::string& path);

/// <data_dir>/humaneval/HumanEval.jsonl.gz
std::string humaneval_file(const std::string& data_dir);
/// <data_dir>/mbpp/mbpp.jsonl, else <data_dir>/mbpp/sanitized-mbpp.json when only that exists.
std::string mbpp_file(const std::string& data_dir);

std::vector<std::string> humaneval_stop_sequences();
std::vector<std::string> mbpp_stop_sequences();
/// `text` cut before the earliest occurrence of any stop sequence.
std::string truncate_at_stops(const std::string& text, const std::vector<std::string>& stops);

std::string humaneval_program(const CodeProblem& p, const std::string& completion);
std::string mbpp_prompt(const CodeProblem& p, const std::vector<CodeProblem>& exemplars);
std::string mbpp_program(const CodeProblem& p, const std::string& completion);

/// Unbiased pass@k for n samples with c correct (Chen et al. 2021), computed as
/// 1 - prod_{i=n-c+1..n} (1 - k/i). Requires 0 <= c <= n, 1 <= k <= n.
double pass_at_k(int n, int c, int k);

struct CodeEvalOptions {
  int limit = 0;      ///< evaluate the first `limit` problems; 0 = all
  int n_samples = 1;  ///< completions per problem (use temperature > 0 when > 1)
  std::vector<int> ks = {1};
  /// Decoding settings; the task's stop sequences are added to `stop`. Sample j of a problem
  /// uses seed + j.
  GenerationOptions generation = [] {
    GenerationOptions g;
    g.max_new_tokens = 512;
    return g;
  }();
  SandboxOptions sandbox;
  int jobs = 0;  ///< programs run at once; 0 = hardware threads (at least 2)
};

struct CodeSampleResult {
  std::string completion;  ///< after stop-sequence truncation
  std::string finish_reason;
  SandboxStatus status = SandboxStatus::setup_error;
  int exit_code = -1;
  double seconds = 0;
  std::string stderr_tail;  ///< the last 2 KB
};

struct CodeProblemResult {
  std::string task_id;
  int n = 0;                      ///< samples
  int correct = 0;                ///< samples that passed
  std::map<int, double> pass_at;  ///< k -> estimate for this problem
  std::vector<CodeSampleResult> samples;
};

enum class CodeEvalStatus { ok, skipped, error };
const char* to_string(CodeEvalStatus s);

struct CodeEvalResult {
  CodeEvalStatus status = CodeEvalStatus::ok;
  std::string message;  ///< "skipped: <file> not found", or the error
  std::string task;     ///< "humaneval" / "mbpp"
  std::string file;
  int items = 0;                                    ///< problems evaluated
  std::map<int, double> pass_at;                    ///< k -> mean over problems
  std::map<int, double> standard_error;             ///< k -> sample std over problems / sqrt(items)
  std::map<std::string, int> sample_status_counts;  ///< "ok", "failed", "timeout", ...
  std::vector<CodeProblemResult> problems;
  std::string isolation;  ///< what the sandbox applied
  std::string protocol;   ///< dataset file, n, decoding, stops, limits: enough to reproduce
  double generation_seconds = 0;
  double wall_seconds = 0;
};

/// Generates, executes and scores. Never throws for a missing file (skipped), a malformed
/// file or an unusable sandbox (status error with the message); throws Error for bad options.
CodeEvalResult run_humaneval(const GenerateFn& generate, const std::string& file,
                             const CodeEvalOptions& opt = {});
CodeEvalResult run_mbpp(const GenerateFn& generate, const std::string& file,
                        const CodeEvalOptions& opt = {});

}  // namespace qsweep
