// The weights of a Llama-family model, laid out as Hugging Face stores them (linear weights
// [out, in], row-major) and kept in their stored form (WeightTensor: fp32, fp16/bf16 views of
// the mapped checkpoint, or quantized codes), with loaders that check every tensor against
// the ModelSpec before anything runs. Norms and biases are fp32.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/matrix.h"
#include "common/weight_tensor.h"
#include "model/model_spec.h"

namespace qsweep {

/// The seven linear layers of a decoder layer. Stages exchange roles, never names.
enum class LinearRole { Q, K, V, O, Gate, Up, Down };
constexpr std::array<LinearRole, 7> kAllLinearRoles = {
    LinearRole::Q,    LinearRole::K,  LinearRole::V,   LinearRole::O,
    LinearRole::Gate, LinearRole::Up, LinearRole::Down};
/// "q_proj", "k_proj", ..., "down_proj".
const char* linear_role_name(LinearRole r);
/// The HF tensor name of a layer's linear weight: "model.layers.3.self_attn.q_proj.weight".
std::string hf_linear_name(int layer, LinearRole r);

struct LayerWeights {
  WeightTensor wq, wk, wv, wo;        ///< [heads*hd, H], [kv*hd, H], [kv*hd, H], [H, heads*hd]
  WeightTensor w_gate, w_up, w_down;  ///< [I, H], [I, H], [H, I]
  VectorF bq, bk, bv, bo;             ///< empty unless the spec has biases
  VectorF attn_norm, mlp_norm;        ///< [H]
  VectorF q_norm, k_norm;             ///< [head_dim]; empty unless spec.qk_norm (Qwen3)

  WeightTensor& linear(LinearRole r);
  const WeightTensor& linear(LinearRole r) const;
};

struct ModelWeights {
  WeightTensor embed;  ///< [V, H]
  std::vector<LayerWeights> layers;
  VectorF final_norm;    ///< [H]
  WeightTensor lm_head;  ///< [V, H]; shares embed's storage when tie_word_embeddings
};

class SafetensorsCheckpoint;

/// Supplies one linear weight [out, in] from an open checkpoint. Readers of
/// quantized layouts (formats/) pass one that dequantizes; the default reads
/// the plain "<name>.weight" tensor.
using LinearLoader = std::function<WeightTensor(const SafetensorsCheckpoint& ckpt, int layer,
                                                LinearRole role, int64_t out, int64_t in)>;

/// Loads DIR's safetensors (single or sharded), memory-mapped: F16/BF16 (and aligned F32)
/// tensors stay views of the mapping, which the weights keep alive. Checks names, shapes,
/// dtypes (F32/F16/BF16) and finiteness; every error names the file and tensor.
ModelWeights load_weights(const std::string& dir, const ModelSpec& spec,
                          const LinearLoader& linear_loader = {});

/// The plain loader: "<name>.weight" as stored (a view when `ckpt` is owned by a shared_ptr,
/// else an fp32 copy), shape, dtype and values checked.
WeightTensor load_linear_weight(const SafetensorsCheckpoint& ckpt, int layer, LinearRole role,
                                int64_t out, int64_t in);

/// Random weights of the right shapes (tests and benchmarks): N(0, scale²) linears,
/// norms near 1. Deterministic for a seed.
ModelWeights random_weights(const ModelSpec& spec, uint64_t seed, float scale = 0.05f);

/// Writes a Hugging Face checkpoint: config.json (from `spec`) and model.safetensors
/// in `dtype` ("F32", "F16" or "BF16"). Used by tests and by exporters.
void save_hf_checkpoint(const std::string& dir, const ModelSpec& spec, const ModelWeights& w,
                        const std::string& dtype);

/// config.json text for a spec (the inverse of parse_model_spec for what it reads).
std::string model_spec_to_config_json(const ModelSpec& spec);

}  // namespace qsweep
