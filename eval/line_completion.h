// Line completion on held-out code (issue #6): at sampled line starts, the model
// sees the code before the line and greedily writes the next line; the result is
// compared with the true line.
//
// Protocol (also returned as LineCompletionResult::protocol):
//  * Candidates are the starts of non-blank lines. They are visited in a seeded,
//    portable shuffle (mt19937_64, own bounded draw) and the first `limit` whose
//    prompt has ≥ min_prefix_tokens tokens are used.
//  * The prompt is the longest suffix of the text before the line that starts at a
//    line start and encodes (with the tokenizer's BOS rule, as generate() does) to
//    ≤ context_tokens − max_new_tokens tokens, so the answer always fits the window.
//    The text is one stream: heldout.txt separates modules by a single blank line,
//    indistinguishable from blank lines inside a module, so a prompt near a module's
//    start may include the end of the previous one (as in the model's training data).
//  * Greedy generation, stop at "\n", max_new_tokens. Prediction and truth are
//    compared after stripping trailing whitespace: exact match, and edit similarity
//    1 − Levenshtein(pred, truth) / max(|pred|, |truth|) (bytes; 1 when both empty).
#pragma once

#include <cstdint>
#include <string>

#include "eval/generation.h"
#include "model/tokenizer.h"

namespace qsweep {

struct LineCompletionOptions {
  int limit = 200;  ///< number of positions evaluated (fewer if the text has fewer)
  uint64_t seed = 0;
  int max_new_tokens = 48;
  int min_prefix_tokens = 32;
  /// The model's context (spec.max_position_embeddings); prompts get
  /// context_tokens − max_new_tokens tokens at most.
  int context_tokens = 0;
};

struct LineCompletionResult {
  int items = 0;
  double exact_match = 0, exact_match_se = 0;          ///< rate and standard error
  double edit_similarity = 0, edit_similarity_se = 0;  ///< mean and standard error
  std::string protocol;                                ///< how the numbers were made, one line
};

/// Runs the task on `text` (e.g. code/heldout.txt). `tokenizer` only measures
/// prompt lengths; `generate` produces the completions (make_generate_fn or a fake).
LineCompletionResult run_line_completion(const std::string& text, const Tokenizer& tokenizer,
                                         const GenerateFn& generate,
                                         const LineCompletionOptions& opt);

/// Levenshtein distance (insertions, deletions, substitutions; bytes).
int64_t levenshtein(const std::string& a, const std::string& b);
/// 1 − levenshtein / max(|a|, |b|); 1 when both are empty.
double edit_similarity(const std::string& a, const std::string& b);

}  // namespace qsweep
