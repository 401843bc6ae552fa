#include "model/model_spec.h"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/json_reader.h"
#include "common/mapped_file.h"

namespace qsweep {
using nlohmann::json;

long long ModelSpec::parameter_count() const {
  const long long h = hidden_size, kv = (long long)num_kv_heads * head_dim,
                  q = (long long)num_heads * head_dim;
  long long attn = h * q + 2 * h * kv + q * h;
  if (qkv_bias) attn += q + 2 * kv;
  if (o_bias) attn += h;
  const long long mlp = 3 * h * (long long)intermediate_size;
  long long per_layer = attn + mlp + 2 * h;
  if (qk_norm) per_layer += 2LL * head_dim;
  const long long emb = (long long)vocab_size * h;
  return per_layer * num_layers + emb * (tie_word_embeddings ? 1 : 2) + h;
}

void validate_model_spec(const ModelSpec& s, const std::string& file) {
  // Bounds for sizes read from a file: generous for any real model, small enough that
  // no allocation sized by them can exhaust memory before the weights are checked.
  auto in = [&](const char* key, int64_t v, int64_t lo, int64_t hi) {
    QS_THROW_IF_NOT(v >= lo && v <= hi, file, ": key '", key, "' = ", v, " must be in [", lo, ", ",
                    hi, "]");
  };
  in("vocab_size", s.vocab_size, 1, int64_t(1) << 24);
  in("hidden_size", s.hidden_size, 1, int64_t(1) << 20);
  in("intermediate_size", s.intermediate_size, 1, int64_t(1) << 22);
  in("num_hidden_layers", s.num_layers, 1, 4096);
  in("num_attention_heads", s.num_heads, 1, 4096);
  in("num_key_value_heads", s.num_kv_heads, 1, s.num_heads);
  in("head_dim", s.head_dim, 2, 8192);
  in("max_position_embeddings", s.max_position_embeddings, 1, int64_t(1) << 30);
  in("sliding_window", s.sliding_window, 0, int64_t(1) << 30);
  QS_THROW_IF_NOT(s.head_dim % 2 == 0, file, ": key 'head_dim' = ", s.head_dim,
                  " must be even for rotary embeddings");
  QS_THROW_IF_NOT(s.num_heads % s.num_kv_heads == 0, file,
                  ": key 'num_attention_heads' = ", s.num_heads,
                  " is not a multiple of num_key_value_heads ", s.num_kv_heads);
  QS_THROW_IF_NOT(std::isfinite(s.rms_norm_eps) && s.rms_norm_eps > 0 && s.rms_norm_eps < 1, file,
                  ": key 'rms_norm_eps' = ", s.rms_norm_eps, " must be a finite number in (0, 1)");
  QS_THROW_IF_NOT(std::isfinite(s.rope_theta) && s.rope_theta >= 1 && s.rope_theta <= 1e12, file,
                  ": key 'rope_theta' = ", s.rope_theta, " must be a finite number in [1, 1e12]");
}

ModelSpec parse_model_spec(const std::string& text, const std::string& file) {
  const json j = parse_json_text(text, file);
  const JsonReader r(j, file);
  ModelSpec s;
  const json& archs = r.array("architectures");
  r.check(!archs.empty() && archs[0].is_string(), "architectures",
          "a list of architecture names (is this a Hugging Face config.json?)");
  s.arch_name = archs[0].get<std::string>();
  if (s.arch_name == "LlamaForCausalLM")
    s.arch = Architecture::Llama;
  else if (s.arch_name == "MistralForCausalLM")
    s.arch = Architecture::Mistral;
  else if (s.arch_name == "Qwen2ForCausalLM")
    s.arch = Architecture::Qwen2;
  else if (s.arch_name == "Qwen3ForCausalLM")
    s.arch = Architecture::Qwen3;
  else
    throw Error(cat(file, ": unsupported architecture '", s.arch_name,
                    "'; qsweep runs LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and "
                    "Qwen3ForCausalLM"));

  constexpr int64_t kMax = INT32_MAX;
  s.vocab_size = int(r.required_int("vocab_size", 1, kMax));
  s.hidden_size = int(r.required_int("hidden_size", 1, kMax));
  s.intermediate_size = int(r.required_int("intermediate_size", 1, kMax));
  s.num_layers = int(r.required_int("num_hidden_layers", 1, kMax));
  s.num_heads = int(r.required_int("num_attention_heads", 1, kMax));
  s.num_kv_heads = int(r.optional_int("num_key_value_heads", s.num_heads, 1, kMax));
  if (!r.has("head_dim"))
    QS_THROW_IF_NOT(s.hidden_size % s.num_heads == 0, file, ": key 'hidden_size' = ", s.hidden_size,
                    " is not divisible by num_attention_heads ", s.num_heads);
  s.head_dim = int(r.optional_int("head_dim", s.hidden_size / s.num_heads, 1, kMax));
  s.rms_norm_eps = r.optional<float>("rms_norm_eps", 1e-6f);
  s.rope_theta = r.optional<double>("rope_theta", 10000.0);
  s.max_position_embeddings = int(r.optional_int("max_position_embeddings", 2048, 1, kMax));
  s.tie_word_embeddings = r.optional<bool>("tie_word_embeddings", false);
  // Token ids: an integer, or (HF allows it) a list of integers, which is not used.
  auto token_id = [&](const char* key) {
    if (!r.has(key)) return -1;
    const json& v = j[key];
    if (v.is_array()) {
      for (const json& e : v)
        r.check(e.is_number_integer(), key, "a token id or a list of token ids");
      return -1;
    }
    return int(r.required_int(key, 0, INT32_MAX));
  };
  s.bos_token_id = token_id("bos_token_id");
  s.eos_token_id = token_id("eos_token_id");
  s.torch_dtype = r.optional<std::string>("torch_dtype", "");

  const std::string act = r.optional<std::string>("hidden_act", "silu");
  QS_THROW_IF_NOT(act == "silu", file, ": key 'hidden_act' = '", act,
                  "' is not supported (only silu)");
  if (auto rs = r.optional_object("rope_scaling")) {
    const std::string type =
        rs->optional<std::string>("rope_type", rs->optional<std::string>("type", "?"));
    if (type == "llama3") {
      RopeScaling& sc = s.rope_scaling;
      sc.type = RopeScaling::Type::Llama3;
      sc.factor = rs->required<double>("factor");
      sc.low_freq_factor = rs->optional<double>("low_freq_factor", 1.0);
      sc.high_freq_factor = rs->optional<double>("high_freq_factor", 4.0);
      sc.original_max_position_embeddings =
          int(rs->required_int("original_max_position_embeddings", 1, kMax));
      QS_THROW_IF_NOT(std::isfinite(sc.factor) && sc.factor >= 1, file,
                      ": key 'rope_scaling.factor' = ", sc.factor, " must be a finite number >= 1");
      QS_THROW_IF_NOT(std::isfinite(sc.low_freq_factor) && std::isfinite(sc.high_freq_factor) &&
                          sc.low_freq_factor > 0 && sc.high_freq_factor > sc.low_freq_factor,
                      file, ": keys 'rope_scaling.low_freq_factor' = ", sc.low_freq_factor,
                      " and 'high_freq_factor' = ", sc.high_freq_factor,
                      " must be finite with 0 < low < high");
    } else {
      QS_THROW_IF_NOT(type == "default", file, ": key 'rope_scaling.rope_type' = '", type,
                      "' is not supported; qsweep implements 'default' and 'llama3'");
    }
  }
  QS_THROW_IF_NOT(!r.optional<bool>("mlp_bias", false), file,
                  ": key 'mlp_bias' = true is not supported");
  if (s.arch == Architecture::Qwen3) {
    s.qk_norm = true;
    const bool attention_bias = r.optional<bool>("attention_bias", false);
    s.qkv_bias = s.o_bias = attention_bias;
    if (r.optional<bool>("use_sliding_window", false))
      s.sliding_window = int(r.optional_int("sliding_window", 0, 0, kMax));
  } else if (s.arch == Architecture::Qwen2) {
    s.qkv_bias = true;
    if (r.optional<bool>("use_sliding_window", false))
      s.sliding_window = int(r.optional_int("sliding_window", 0, 0, kMax));
  } else {
    const bool attention_bias = r.optional<bool>("attention_bias", false);
    s.qkv_bias = s.o_bias = attention_bias;
  }
  if (s.arch == Architecture::Mistral)
    s.sliding_window = int(r.optional_int("sliding_window", 0, 0, kMax));
  validate_model_spec(s, file);
  return s;
}

ModelSpec load_model_spec(const std::string& dir) {
  const std::string file = (std::filesystem::path(dir) / "config.json").string();
  QS_THROW_IF_NOT(std::filesystem::exists(file), file,
                  ": not found; pass a Hugging Face model directory (config.json, "
                  "model.safetensors, tokenizer.model)");
  return parse_model_spec(read_text_file(file), file);
}

}  // namespace qsweep
