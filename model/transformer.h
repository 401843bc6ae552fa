// The Llama-family decoder forward pass on the CPU, fp32 compute.
//
// Two entry points, because later stages need both:
//  * forward(): the whole model over token sequences → logits (evaluation);
//  * embed() / run_layer() / head(): one decoder layer at a time, with a hook that
//    sees the input of every linear layer — calibration accumulates Hessians
//    there, and sequential quantization replaces a layer's weights and re-runs it.
// forward() is literally embed → run_layer × L → head, so the two cannot drift.
//
// Activations are row-major [tokens, features]; several sequences are packed one
// after another ("lengths" says where each ends). Each sequence starts at
// position 0 and attends causally within itself only.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "common/matrix.h"
#include "model/model_spec.h"
#include "model/weights.h"

namespace qsweep {

/// Called with the input [tokens, in_features] of every linear layer as it runs.
/// Q, K and V share one input (the hook is called once per role, same matrix);
/// likewise Gate and Up.
using LinearInputHook = std::function<void(int layer, LinearRole role, const MatrixRM& input)>;

class Transformer {
 public:
  Transformer(ModelSpec spec, ModelWeights weights);

  const ModelSpec& spec() const { return spec_; }
  const ModelWeights& weights() const { return weights_; }
  /// Mutable access: quantizers replace linear weights in place (dequantized).
  ModelWeights& mutable_weights() { return weights_; }

  /// Logits [Σ lengths, vocab] for the packed sequences.
  MatrixRM forward(const std::vector<std::vector<int>>& sequences) const;
  /// Logits [tokens, vocab] of one sequence.
  MatrixRM forward(const std::vector<int>& tokens) const;

  /// Token embeddings [Σ lengths, hidden]; `lengths` receives each sequence's length.
  MatrixRM embed(const std::vector<std::vector<int>>& sequences, std::vector<int>* lengths) const;
  /// Runs decoder layer `layer` in place on `hidden` [Σ lengths, hidden].
  /// With `stop_after`, returns as soon as the hook has seen that role's input
  /// (calibration passes need no more); `hidden` is then left unspecified.
  void run_layer(int layer, MatrixRM& hidden, const std::vector<int>& lengths,
                 const LinearInputHook& hook = {},
                 std::optional<LinearRole> stop_after = std::nullopt) const;
  /// Final RMSNorm and lm_head: logits [rows, vocab].
  MatrixRM head(const MatrixRM& hidden) const;

 private:
  void check_tokens(const std::vector<std::vector<int>>& sequences) const;
  ModelSpec spec_;
  ModelWeights weights_;
};

/// In place: each row becomes log-softmax of itself (computed in double for the sum).
void log_softmax_rows(MatrixRM& logits);

/// FLOPs of one forward token at context length `ctx` (2·params of the linears
/// plus attention's QKᵀ and PV), for tokens/s ↔ GFLOP/s conversions.
double forward_flops_per_token(const ModelSpec& spec, int ctx);

}  // namespace qsweep
