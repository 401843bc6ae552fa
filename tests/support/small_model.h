// The small random-weight model shape the model, KV-cache and generation tests share:
// 2 layers, GQA (6 query heads over 2 key/value heads), head_dim 8, an odd vocabulary of 37;
// Qwen2 with q/k/v biases, Mistral with a sliding window of 5. Tests adjust what they probe.
#pragma once

#include "model/model_spec.h"

namespace qsweep::test {

inline ModelSpec small_model_spec(Architecture arch) {
  ModelSpec s;
  s.arch = arch;
  s.arch_name = arch == Architecture::Qwen2     ? "Qwen2ForCausalLM"
                : arch == Architecture::Mistral ? "MistralForCausalLM"
                                                : "LlamaForCausalLM";
  s.vocab_size = 37;  // odd on purpose
  s.hidden_size = 48;
  s.intermediate_size = 80;
  s.num_layers = 2;
  s.num_heads = 6;
  s.num_kv_heads = 2;  // GQA, group of 3
  s.head_dim = 8;
  s.rms_norm_eps = 1e-5f;
  s.rope_theta = 10000.0;
  s.max_position_embeddings = 64;
  s.qkv_bias = arch == Architecture::Qwen2;
  s.sliding_window = arch == Architecture::Mistral ? 5 : 0;
  return s;
}

}  // namespace qsweep::test
