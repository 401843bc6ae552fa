// llama.cpp's quantization mixes ("ftypes" Q2_K ... Q8_0): which ggml type each tensor of
// a Llama-family model gets. A mix is a default block type plus promotion rules that give
// attn_v, ffn_down, attn_output and output.weight more bits, and fallbacks for tensors whose
// rows do not split into the type's blocks.
//
// Mirrors llama_tensor_get_type() in llama.cpp's src/llama-quant.cpp at the revision
// summarized in shared/design/field-notes.md section D (commit 007dbbf3) for dense models
// that are not Falcon, not 8-expert MoE and not typed "70B" — the models qsweep loads. The
// rules are a table (kMixTable in mixes.cpp), one row per mix, so they read like the
// field notes and a golden test pins every cell.
//
// Tensors are named as in GGUF ("blk.3.ffn_down.weight"); this library only reads the names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "quantizers/kquants/kquants.h"

namespace qsweep::kquants {

enum class Mix : uint8_t {
  Q2_K,
  Q3_K_S,
  Q3_K_M,
  Q3_K_L,
  Q4_0,
  Q4_K_S,
  Q4_K_M,
  Q5_K_S,
  Q5_K_M,
  Q6_K,
  Q8_0,
};
inline constexpr int kMixCount = 11;

/// "Q4_K_M" (llama-quantize's spelling).
const char* mix_name(Mix m);
/// Case-insensitive: "q4_k_m" and "Q4_K_M" both parse; nullopt when unknown.
std::optional<Mix> mix_from_name(std::string_view name);
/// The mix's default block type (Q3_K for all three Q3_K_* mixes).
QuantType mix_base_type(Mix m);
/// llama_ftype number written as general.file_type (LLAMA_FTYPE_MOSTLY_Q4_K_M = 15, ...).
int32_t mix_llama_ftype(Mix m);

/// What the rules need to know about the model.
struct MixModel {
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
};

/// One tensor to place: GGUF name and row length (ne[0], the input features of a linear).
struct MixTensor {
  std::string name;
  int64_t row_length = 0;
  int64_t rows = 0;  ///< ne[1]; not used by the rules, only for sizes
};

struct MixChoice {
  std::string name;
  int32_t ggml_type = 0;  ///< ggml_type::* (F16 only as the last-resort fallback)
  /// Why: "default", "output", "attn_v: more-bits layer", ..., with " → fallback Q5_0 (row
  /// 300 not a multiple of 256)" appended when the shape forced another type.
  std::string rule;
  bool fallback = false;
};

/// Types for the 2-D weight tensors of a model, in the order given (llama.cpp counts attn_v
/// and ffn_down tensors in file order; in a dense model that count is the layer index).
/// Pass only tensors llama.cpp quantizes: 2-D, names ending in "weight" (norms and biases
/// stay F32 and are not part of a mix). `has_imatrix` matters only for Q4_0's ffn_down.
/// Throws Error when the model facts are impossible (no layers, heads not dividing).
std::vector<MixChoice> plan_mix(Mix m, const MixModel& model, const std::vector<MixTensor>& tensors,
                                bool has_imatrix);

/// llama.cpp's "use_more_bits(i, n)": i < n/8, i ≥ 7n/8, or (i − n/8) mod 3 = 2 (integer
/// arithmetic, as in C++).
bool use_more_bits(int i_layer, int n_layers);

}  // namespace qsweep::kquants
