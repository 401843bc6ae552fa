// Distribution shift of a quantized variant against the FP16 baseline: KL
// divergence KL(P_base || Q_variant) per token, top-1 agreement and the change in
// the log-likelihood of the actual next token, on exactly the token windows of
// the perplexity "chunks" protocol (eval/perplexity.h: non-overlapping windows of
// `ctx` tokens, a shorter tail dropped, every token but a window's first scored).
//
// The baseline runs ONCE and is stored compactly (compute_kl_baseline, then
// write_kl_baseline / read_kl_baseline): for every scored position the top-k
// token ids of P_base with their log-probs, plus log p_rest, the log of the
// probability mass outside the top-k. The tokens themselves are stored too, so a
// variant is evaluated on the very same windows.
//
// Per-token KL from the stored top-k plus a "rest" bucket:
//
//   KL_k = Σ_{i ∈ topk} p_i log(p_i / q_i) + p_rest log(p_rest / q_rest),
//   q_rest = 1 − Σ_{i ∈ topk} q_i  (computed directly as the mass of the other ids)
//
// This is the KL between the two distributions coarsened to k+1 outcomes (the
// top-k ids and "anything else"). By the log-sum inequality
//   Σ_{j ∈ rest} p_j log(p_j / q_j) ≥ p_rest log(p_rest / q_rest),
// so KL_k ≤ KL exactly, with equality when k = vocab (the rest is empty) or when
// P and Q are proportional on the rest. Stored values are rounded (fp32 or fp16);
// the variant's log-probs are rounded the same way before the difference is
// taken, so an identical model gives exactly 0. Rounding can make a single
// token's KL_k slightly negative (about 1e-7 with fp32, 1e-3 with fp16); it is
// reported as computed, never clamped.
//
// File format (little-endian), version 1:
//   "QSKLDIV\0" | u32 version | u32 flags (bit 0: values fp16, bit 1: ids u16)
//   | u32 ctx | u32 top_k | u32 vocab | u32 protocol_bytes
//   | i64 tokens_in_text | i64 tokens_used | i64 tokens_dropped | i64 windows | i64 positions
//   | protocol (utf-8) | i32 tokens[tokens_used] | ids[positions·top_k] (u16 or i32)
//   | values[positions·top_k] (fp16 or f32) | f32 rest_logp[positions]
//   | f32 target_logp[positions] | u64 FNV-1a of every byte before it
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/transformer.h"

namespace qsweep {

struct KlBaselineOptions {
  int ctx = 256;
  int64_t max_tokens = 0;  ///< use the first N tokens; 0 = all
  int top_k = 32;          ///< 1..vocab; k = vocab makes the KL exact
  bool fp16_values = false;
  int64_t batch_rows = 0;  ///< tokens per forward batch; 0 = automatic
  bool progress = false;
};

/// What the baseline stores: the protocol and, per scored position, top-k + rest.
/// Positions are in text order (window by window, position 1..len-1 of each).
struct KlBaseline {
  std::string protocol;  ///< "chunks ctx=256 tokens_used=... top_k=32 values=fp32"
  int ctx = 0;
  int top_k = 0;
  int vocab = 0;
  bool fp16_values = false;
  int64_t tokens_in_text = 0;
  int64_t tokens_dropped = 0;
  int64_t windows = 0;
  int64_t positions = 0;
  std::vector<int32_t> tokens;     ///< the tokens_used tokens, windows laid end to end
  std::vector<int32_t> top_ids;    ///< [positions, top_k], most likely first (ties: lower id)
  std::vector<float> top_logp;     ///< [positions, top_k] (fp16-representable when fp16_values)
  std::vector<float> rest_logp;    ///< [positions] log p_rest; -inf when the rest is empty
  std::vector<float> target_logp;  ///< [positions] log p(actual next token), fp32

  int64_t tokens_used() const { return int64_t(tokens.size()); }
};

/// Runs the baseline model once over `tokens` (no BOS added) and keeps the top-k.
/// Throws Error for ctx < 2, fewer than 2 tokens or top_k outside [1, vocab].
KlBaseline compute_kl_baseline(const Transformer& base, const std::vector<int>& tokens,
                               const KlBaselineOptions& opt);

/// Writes the binary file atomically; reads it back checking magic, version,
/// every count against the file size, ids against vocab and the checksum. Every
/// error is a qsweep::Error naming the file.
void write_kl_baseline(const std::string& path, const KlBaseline& b);
KlBaseline read_kl_baseline(const std::string& path);

struct KlOptions {
  int64_t batch_rows = 0;  ///< tokens per forward batch; 0 = automatic
  bool progress = false;
  bool keep_token_kl = false;  ///< fill KlResult::token_kl
};

struct KlResult {
  std::string protocol;  ///< the baseline's protocol + "kl=top-k+rest (lower bound)" or "(exact)"
  int top_k = 0;
  bool exact = false;  ///< top_k == vocab
  int64_t tokens = 0;  ///< scored positions
  double mean_kld = 0;
  double kld_standard_error = 0;  ///< sample std / sqrt(tokens)
  double median_kld = 0;
  double p99_kld = 0;  ///< linear interpolation between order statistics (numpy default)
  double max_kld = 0;
  double top1_agreement = 0;                 ///< percent of positions where argmax Q == argmax P
  double top1_agreement_standard_error = 0;  ///< percent, sqrt(p(1-p)/n)
  double mean_delta_logp = 0;                ///< mean of log q(next) − log p(next), nats
  double delta_logp_standard_error = 0;
  double seconds = 0;
  std::vector<float> token_kl;  ///< per position when KlOptions::keep_token_kl
};

/// Evaluates `variant` on the baseline's windows. Throws Error when the vocab
/// sizes differ or the baseline is inconsistent.
KlResult evaluate_kl_divergence(const Transformer& variant, const KlBaseline& base,
                                const KlOptions& opt = {});

}  // namespace qsweep
