// ModelSpec: the shape of a Llama-family decoder, read from a Hugging Face
// config.json. Supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
// Qwen3ForCausalLM.
// Anything else is refused by name, so no other architecture is silently run
// through the wrong forward pass.
#pragma once

#include <string>
#include <vector>

namespace qsweep {

enum class Architecture { Llama, Mistral, Qwen2, Qwen3 };

/// config.json's rope_scaling. Only the types whose frequencies qsweep computes
/// exactly as transformers does are accepted; any other rope_type is refused.
struct RopeScaling {
  enum class Type { None, Llama3, Factors };
  Type type = Type::None;
  /// Type::Factors: one divisor per rotary pair (head_dim / 2 of them), as llama.cpp's
  /// rope_freqs tensor stores them; what a GGUF gives back instead of the llama3 keys.
  std::vector<float> freq_factors;
  // Llama-3.1/3.2 ("rope_type": "llama3"): transformers' _compute_llama3_parameters.
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 0;
};

struct ModelSpec {
  Architecture arch = Architecture::Llama;
  std::string arch_name;  ///< as in config.json, e.g. "LlamaForCausalLM"
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;  ///< < num_heads means grouped-query attention
  int head_dim = 0;      ///< hidden_size / num_heads unless config.json says otherwise
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  int max_position_embeddings = 0;
  int sliding_window = 0;  ///< Mistral: keys further back than this are masked; 0 = none
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  ///< Qwen2 (always) and Llama with attention_bias
  bool o_bias = false;    ///< Llama with attention_bias
  bool qk_norm = false;   ///< Qwen3: per-head RMSNorm of q and k (weights [head_dim]) before RoPE
  RopeScaling rope_scaling;
  int bos_token_id = -1;
  int eos_token_id = -1;
  std::string torch_dtype;

  /// Parameters of the whole model (embeddings and lm_head included, once when tied).
  long long parameter_count() const;
};

/// Parses config.json text; `file` names it in errors.
ModelSpec parse_model_spec(const std::string& json_text, const std::string& file);
/// Checks every field's range (positive sizes within sane bounds, heads grouping, even
/// head_dim, finite positive rms_norm_eps and rope_theta); Error names `file` and the key.
/// parse_model_spec and the GGUF reader both call it.
void validate_model_spec(const ModelSpec& s, const std::string& file);
/// Reads DIR/config.json.
ModelSpec load_model_spec(const std::string& dir);

}  // namespace qsweep
