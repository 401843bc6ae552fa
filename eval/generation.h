// Text generation for the generative tasks (line completion, HumanEval, MBPP,
// GSM8K): incremental decoding with the model's KV cache, greedy or seeded
// sampling, stop sequences and a token budget.
//
// Tasks receive a `GenerateFn` rather than a Transformer so they can be tested
// with a scripted fake generator and run unchanged on any backend.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "model/transformer.h"

namespace qsweep {

struct GenerationOptions {
  int max_new_tokens = 128;
  /// 0 = greedy (argmax, ties → lowest id); > 0 samples from softmax(logits / T).
  double temperature = 0;
  /// Nucleus sampling: keep the smallest set of most likely tokens whose mass ≥ top_p.
  double top_p = 1.0;
  uint64_t seed = 0;  ///< sampling is reproducible from (seed, prompt)
  /// Generation stops when the decoded continuation contains any of these; the
  /// returned text is cut just before the earliest one. EOS always stops.
  std::vector<std::string> stop;
};

struct Generation {
  std::string text;           ///< the continuation (prompt excluded), cut at a stop
  std::vector<int> tokens;    ///< generated ids (including the one that completed a stop)
  std::string finish_reason;  ///< "stop", "eos", "length" or "context" (model's window full)
};

/// Generates a continuation of `prompt` (encoded with the tokenizer's own BOS rule).
/// Prompts longer than the model's context keep their last tokens (the start is cut).
Generation generate(const Transformer& model, const Tokenizer& tokenizer, const std::string& prompt,
                    const GenerationOptions& opt);

/// What tasks call; bind with make_generate_fn or replace with a fake in tests.
using GenerateFn = std::function<Generation(const std::string& prompt, const GenerationOptions&)>;
GenerateFn make_generate_fn(const Transformer& model, const Tokenizer& tokenizer);

}  // namespace qsweep
