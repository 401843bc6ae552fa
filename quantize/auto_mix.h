// Per-tensor-group types for GGUF mixes (issue #19): a group is one 2-D weight tensor of the
// model — layer × role (attn_q/k/v/o, ffn_gate/up/down), token_embd and output separately
// (in a dense model each group is exactly one GGUF tensor). Here: the groups, a "type per
// group" plan llama.cpp loads (its per-tensor types are free), one group quantized and
// dequantized in place (the sensitivity study's forward pass), and the solver that picks a
// type per group under a byte budget.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/model_spec.h"
#include "model/weights.h"
#include "quantize/kquant_mix.h"

namespace qsweep {

struct TensorGroup {
  std::string name;  ///< GGUF tensor name: "blk.3.ffn_down.weight", "token_embd.weight"
  std::string role;  ///< "attn_q" ... "ffn_down", "token_embd", "output"
  int layer = -1;    ///< -1 for token_embd and output
  int64_t rows = 0;
  int64_t row_length = 0;  ///< ne[0]: the input features of a linear
  int64_t params() const { return rows * row_length; }
};

/// "Q4_K", "F16", "F32", "BF16" (llama.cpp's spelling), or "type N".
std::string ggml_type_label(int32_t ggml_type);

/// Every group of `spec`, in GGUF file order (gguf_weight_tensors).
std::vector<TensorGroup> tensor_groups(const ModelSpec& spec);

/// Bytes of `g` stored as ggml type `ggml_type` (F16/F32/BF16 or a block type); Error when the
/// row length does not split into the type's blocks.
int64_t group_bytes(const TensorGroup& g, int32_t ggml_type);

/// A "type per group" plan: every group named in `types` (GGUF name → ggml type), norms F32,
/// groups not named F16. general.file_type = `file_type` (-1: the most common 2-D type).
/// Error for a name that is no group of `spec`.
GgufTypePlan group_type_plan(const ModelSpec& spec, const std::map<std::string, int32_t>& types,
                             int32_t file_type = -1);

/// Quantizes group `g` of `w` to `ggml_type` and writes the dequantized values back (what a
/// loader of that type computes with); `importance` (row_length values or nullptr) weights
/// the rounding as --imatrix does. F16 rounds to half precision. With tied embeddings,
/// token_embd also replaces lm_head (llama.cpp reads the output projection from it).
void quantize_group_in_place(const ModelSpec& spec, ModelWeights& w, const TensorGroup& g,
                             int32_t ggml_type, const float* importance = nullptr);
/// The matrix of `w` holding group `g` (HF layout: [rows, row_length]).
WeightTensor& group_matrix(ModelWeights& w, const TensorGroup& g);

// ---- the budgeted choice ------------------------------------------------------------------

/// One candidate for a group: bytes stored and the cost (measured KL) it adds.
struct MixOption {
  int64_t bytes = 0;
  double cost = 0;
};

struct MixSolution {
  std::vector<int> choice;  ///< index into each group's options
  int64_t bytes = 0;
  double cost = 0;
  bool exact = false;  ///< solved by dynamic programming (else Lagrangian)
};

/// Chooses one option per group minimizing Σ cost with Σ bytes <= budget. Exact dynamic
/// programming over bytes (in units of the options' common divisor) when groups × states
/// <= max_dp_cells; otherwise a Lagrangian relaxation (bisection on λ in cost + λ·bytes),
/// whose answer is optimal for the bytes it uses but may leave part of the budget unused.
/// Error when even the smallest option of every group exceeds the budget.
MixSolution solve_mix(const std::vector<std::vector<MixOption>>& options, int64_t budget,
                      int64_t max_dp_cells = 50'000'000);
/// The Lagrangian solver alone (solve_mix's fallback; tests compare it with brute force).
MixSolution solve_mix_lagrangian(const std::vector<std::vector<MixOption>>& options,
                                 int64_t budget);

}  // namespace qsweep
