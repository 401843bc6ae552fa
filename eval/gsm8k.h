// GSM8K: grade-school math word problems, answered by generation.
//
// Protocol (stated in every result's `protocol` string):
//  * items: <dir>/test.jsonl in file order (first `limit` when limit > 0); the
//    reference is the number after "####" in the answer.
//  * few-shot: the FIRST k problems of <dir>/train.jsonl (k = shots, default 8),
//    with their full training solutions (calculator annotations "<<…>>" kept, as
//    lm-evaluation-harness's `gsm8k` task does) — not the hand-written 8-shot
//    chain-of-thought exemplars of Wei et al. Each exemplar is
//    "Question: {q}\nAnswer: {a}\n\n"; the prompt ends "Question: {q}\nAnswer:".
//  * generation: greedy, stop at "\n\nQuestion:" or "Question:", max_new_tokens
//    (default 256), through a GenerateFn (eval/generation.h).
//  * extraction: the last number in the generation ("1,234" → 1234, "$5" → 5,
//    "7." → 7, "-3.5" → -3.5); correct when it equals the reference numerically.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eval/generation.h"

namespace qsweep {

struct Gsm8kItem {
  std::string question;
  std::string answer;     ///< the full solution text
  std::string reference;  ///< the normalized number after "####"
};

/// Reads a GSM8K jsonl file (one {"question", "answer"} object per line, blank
/// lines ignored). Throws Error naming the file and line for bad JSON, missing
/// fields or an answer without "#### <number>".
std::vector<Gsm8kItem> load_gsm8k(const std::string& path);

/// The last number in `text`, normalized: commas between digit groups and a '$'
/// removed, a trailing '.' not included ("1,234.50." → "1234.50"). nullopt when
/// there is none.
std::optional<std::string> extract_last_number(const std::string& text);

/// Numeric equality of two normalized numbers (relative tolerance 1e-9).
bool gsm8k_numbers_equal(const std::string& a, const std::string& b);

/// The few-shot prompt for `question`.
std::string gsm8k_prompt(const std::vector<Gsm8kItem>& shots, const std::string& question);

struct Gsm8kOptions {
  int shots = 8;
  int max_new_tokens = 256;
  int64_t limit = 0;  ///< first N test items; 0 = all
  bool keep_items = false;
  bool progress = false;
};

struct Gsm8kItemResult {
  std::string reference;
  std::string predicted;  ///< extracted number, "" when none
  std::string generation;
  std::string finish_reason;
  bool correct = false;
};

struct Gsm8kResult {
  std::string status;  ///< "ok" or "skipped: <path> not found"
  std::string protocol;
  int shots = 0;
  int64_t limit = 0;
  int64_t items = 0;
  int64_t correct = 0;
  int64_t no_number = 0;  ///< generations with no number at all
  double accuracy = 0;
  double standard_error = 0;  ///< sqrt(p(1−p)/items)
  double seconds = 0;
  std::vector<Gsm8kItemResult> per_item;  ///< keep_items
};

/// Evaluates the test split of `dir` (the folder holding test.jsonl and
/// train.jsonl). A missing test.jsonl gives status "skipped: <path> not found";
/// a missing train.jsonl with shots > 0 throws Error.
Gsm8kResult evaluate_gsm8k(const std::string& dir, const GenerateFn& generate,
                           const Gsm8kOptions& opt = {});

}  // namespace qsweep
