// The Llama-family decoder forward pass, fp32 compute, written once over Backend ops (the CPU
// backend by default; CUDA for `qsweep eval --device cuda`). Weights stay in their stored
// form (WeightTensor): each linear is Backend::gemm_nt_weight, which widens a non-fp32 weight
// into a reused scratch buffer; the embedding is gathered row by row.
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
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "backends/backend.h"
#include "common/matrix.h"
#include "model/model_spec.h"
#include "model/weights.h"

namespace qsweep {

/// Called with the input [tokens, in_features] of every linear layer as it runs.
/// Q, K and V share one input (the hook is called once per role, same matrix);
/// likewise Gate and Up.
using LinearInputHook = std::function<void(int layer, LinearRole role, const MatrixRM& input)>;

/// Keys and values (after RoPE) of every token one sequence has decoded so far, per
/// layer, so that generation runs each new token through the model once instead
/// of recomputing the whole prefix. Filled by Transformer::decode(); sized on first
/// use for the model that fills it (a cache belongs to one model). On the CPU the keys and
/// values are host matrices; on an off-host backend (CUDA) they stay in its memory, appended
/// in place, and never travel to the host. Move-only.
class KvCache {
 public:
  /// Tokens decoded so far = the position the next token gets.
  int length() const { return length_; }
  /// Forgets every token (keeps the memory).
  void clear() { length_ = 0; }

 private:
  friend class Transformer;
  struct Layer {
    MatrixRM k, v;  ///< [capacity, kv_heads·head_dim]; rows [0, length) are valid
    /// Off-host backends: the same in backend memory, dev_rows rows of capacity.
    std::unique_ptr<BackendArray<float>> dk, dv;
    int64_t dev_rows = 0;
  };
  std::vector<Layer> layers_;
  int length_ = 0;
  const Backend* backend_ = nullptr;  ///< whose memory dk/dv are in
};

class DeviceWeights;
struct DeviceLayer;
struct DeviceLinear;

class Transformer {
 public:
  /// The backend must outlive the model. The weights are not copied to it: each linear's
  /// weight goes through Backend::gemm_nt_weight when it runs.
  Transformer(ModelSpec spec, ModelWeights weights, Backend& backend = cpu_backend());
  Transformer(const Transformer& o);
  Transformer& operator=(const Transformer& o);
  Transformer(Transformer&& o) noexcept;
  Transformer& operator=(Transformer&& o) noexcept;
  ~Transformer();

  const ModelSpec& spec() const { return spec_; }
  Backend& backend() const { return *backend_; }
  const ModelWeights& weights() const { return weights_; }
  /// Mutable access: quantizers replace linear weights in place (dequantized). Drops the
  /// weights' copy in an off-host backend's memory (rebuilt by the next forward pass), so
  /// edit through this reference before evaluating again, not between passes.
  ModelWeights& mutable_weights();

  /// Off-host backends: the weights in backend memory that forward(), decode() and
  /// next_token_nll() use (issue #16: resident layers, the rest streamed within the backend's
  /// max_device_memory budget), or nullptr when no such pass has run yet or the backend's
  /// memory is host memory (the CPU uses the weights where they are). run_layer() and head()
  /// always upload per call (calibration and quantization edit weights between calls).
  const DeviceWeights* device_weights_if_built() const;

  /// Logits [Σ lengths, vocab] for the packed sequences.
  MatrixRM forward(const std::vector<std::vector<int>>& sequences) const;
  /// Logits [tokens, vocab] of one sequence.
  MatrixRM forward(const std::vector<int>& tokens) const;

  /// Incremental decoding of one sequence: runs `new_tokens` at positions
  /// cache.length() … cache.length() + n − 1, attending to the cached tokens and to
  /// each other causally, appends their keys/values to `cache` and returns their
  /// logits [n, vocab]. Prefill with the whole prompt, then one token at a time;
  /// the logits equal forward() on the concatenated tokens (up to rounding).
  /// Throws Error when the sequence would exceed max_position_embeddings; the
  /// cache is left unchanged when it throws.
  MatrixRM decode(KvCache& cache, const std::vector<int>& new_tokens) const;

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

  /// Per sequence s and position p < len − 1: −log P(s[p + 1] | s[0..p]), concatenated; the
  /// logits stay in backend memory (Backend::token_nll), only the NLLs come back.
  std::vector<float> next_token_nll(const std::vector<std::vector<int>>& sequences) const;

 private:
  struct Scratch;  // a forward pass's buffers (weight scratch), pooled
  struct ScratchPool;
  class Lease;
  // embed → layers → final norm and lm_head, all in backend memory; logits [n, vocab] written
  // to `logits` (backend memory).
  void run_all(const std::vector<std::vector<int>>& sequences, Scratch& s, float* logits,
               int64_t* rows) const;
  void layer_dev(int layer, float* h, int64_t n, const std::vector<int>& lengths, KvCache* cache,
                 const LinearInputHook& hook, std::optional<LinearRole> stop_after, Scratch& s,
                 const DeviceLayer* dl) const;
  void head_dev(const float* h, int64_t n, float* logits, Scratch& s,
                const DeviceLinear* resident) const;
  // Every layer in order on h (backend memory), through the device weights when the backend
  // is off-host; *head = lm_head's resident copy or nullptr.
  void run_layers(float* h, int64_t n, const std::vector<int>& lengths, KvCache* cache, Scratch& s,
                  const DeviceLinear** head) const;
  DeviceWeights* device_weights() const;  // built on first use; nullptr on host memory
  void check_tokens(const std::vector<std::vector<int>>& sequences) const;
  ModelSpec spec_;
  ModelWeights weights_;
  std::vector<float> inv_freq_;  ///< rope_inv_freq(spec_)
  Backend* backend_;
  std::unique_ptr<ScratchPool> pool_;  ///< reused weight scratch, one per concurrent call
};

/// In place: each row becomes log-softmax of itself (computed in double for the sum).
void log_softmax_rows(MatrixRM& logits);

/// FLOPs of one forward token at context length `ctx` (2·params of the linears
/// plus attention's QKᵀ and PV), for tokens/s ↔ GFLOP/s conversions.
double forward_flops_per_token(const ModelSpec& spec, int ctx);

}  // namespace qsweep
