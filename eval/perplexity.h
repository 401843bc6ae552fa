// Perplexity under two exactly-defined protocols. Every result carries what was
// measured (protocol, context, stride, token counts) so two runs compare honestly.
//
//  chunks:  the token stream is cut into non-overlapping windows of `ctx` tokens
//           (a shorter tail is dropped and counted in tokens_dropped); each window
//           runs on its own and every token but its first is scored.
//           (The GPTQ paper's protocol, with honest token counts.)
//  strided: Hugging Face's sliding window (max_length = ctx, stride): windows start
//           every `stride` tokens; each scores only the tokens no earlier window
//           scored, so with stride < ctx every token after the first is scored
//           exactly once. (With stride == ctx the windows do not overlap and, as in
//           HF, each window's first token has no context and is not scored: that
//           is the chunks protocol without the dropped tail.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/errors.h"
#include "model/transformer.h"

namespace qsweep {

class Backend;

/// A token NLL (or the mean) is not finite: the message names the first bad position.
/// run_eval prefixes it with the model / variant.
class NonFiniteMetric : public Error {
 public:
  using Error::Error;
};

enum class PerplexityProtocol { Chunks, Strided };
/// "chunks" / "strided"; parse throws Error for anything else.
const char* protocol_name(PerplexityProtocol p);
PerplexityProtocol parse_protocol(const std::string& s);

struct PerplexityOptions {
  PerplexityProtocol protocol = PerplexityProtocol::Chunks;
  int ctx = 256;
  int stride = 0;          ///< strided only; 0 means ctx / 2
  int64_t max_tokens = 0;  ///< evaluate the first N tokens; 0 = all
  int64_t batch_rows = 0;  ///< tokens per forward batch; 0 = automatic (memory-bounded)
  bool progress = false;   ///< draw progress on stderr
  /// nullptr: Transformer::forward on the CPU. Otherwise the weights are uploaded once to this
  /// backend (the Transformer on that backend) and the forward pass and the NLL reduction run
  /// there.
  Backend* backend = nullptr;
};

struct PerplexityResult {
  std::string protocol;
  int ctx = 0;
  int stride = 0;              ///< 0 for chunks
  int64_t tokens_in_text = 0;  ///< tokens of the whole text
  int64_t tokens_used = 0;     ///< tokens fed to the model (after max_tokens / dropping)
  int64_t tokens_dropped = 0;  ///< chunks: tail shorter than ctx not evaluated
  int64_t windows = 0;
  int64_t scored_tokens = 0;
  double mean_nll = 0;            ///< nats per scored token
  double perplexity = 0;          ///< exp(mean_nll)
  double nll_standard_error = 0;  ///< sample std of per-token NLL / sqrt(scored)
  double seconds = 0;
  double tokens_per_second = 0;  ///< tokens_used processed per second (forward)
  std::vector<float> token_nll;  ///< per scored token, in text order
};

/// Evaluates `tokens` (already tokenized, no BOS added by this function).
/// Throws Error for fewer than 2 tokens, ctx < 2 or a stride outside [1, ctx].
PerplexityResult evaluate_perplexity(const Transformer& model, const std::vector<int>& tokens,
                                     const PerplexityOptions& opt);

}  // namespace qsweep
