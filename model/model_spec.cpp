#include "model/model_spec.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/mapped_file.h"

namespace qsweep {
using nlohmann::json;

namespace {

int get_int(const json& j, const std::string& key, const std::string& file, int fallback = -1) {
  if (!j.contains(key) || j[key].is_null()) {
    QS_THROW_IF_NOT(fallback >= 0, file, ": config.json lacks \"", key, "\"");
    return fallback;
  }
  QS_THROW_IF_NOT(j[key].is_number_integer(), file, ": \"", key, "\" must be an integer, found ",
                  j[key].dump());
  const int64_t v = j[key].get<int64_t>();
  QS_THROW_IF_NOT(v > 0 && v < (int64_t(1) << 31), file, ": \"", key, "\" = ", v,
                  " is out of range");
  return int(v);
}

double get_number(const json& j, const std::string& key, const std::string& file, double fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  QS_THROW_IF_NOT(j[key].is_number(), file, ": \"", key, "\" must be a number, found ",
                  j[key].dump());
  return j[key].get<double>();
}

bool get_bool(const json& j, const std::string& key, const std::string& file, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  QS_THROW_IF_NOT(j[key].is_boolean(), file, ": \"", key, "\" must be true or false");
  return j[key].get<bool>();
}

}  // namespace

long long ModelSpec::parameter_count() const {
  const long long h = hidden_size, kv = (long long)num_kv_heads * head_dim,
                  q = (long long)num_heads * head_dim;
  long long attn = h * q + 2 * h * kv + q * h;
  if (qkv_bias) attn += q + 2 * kv;
  if (o_bias) attn += h;
  const long long mlp = 3 * h * (long long)intermediate_size;
  const long long per_layer = attn + mlp + 2 * h;
  const long long emb = (long long)vocab_size * h;
  return per_layer * num_layers + emb * (tie_word_embeddings ? 1 : 2) + h;
}

ModelSpec parse_model_spec(const std::string& text, const std::string& file) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(cat(file, ": not valid JSON (", e.what(), ")"));
  }
  QS_THROW_IF_NOT(j.is_object(), file, ": config.json is not a JSON object");
  ModelSpec s;
  QS_THROW_IF_NOT(j.contains("architectures") && j["architectures"].is_array() &&
                      !j["architectures"].empty() && j["architectures"][0].is_string(),
                  file, ": no \"architectures\" list (is this a Hugging Face config.json?)");
  s.arch_name = j["architectures"][0].get<std::string>();
  if (s.arch_name == "LlamaForCausalLM")
    s.arch = Architecture::Llama;
  else if (s.arch_name == "MistralForCausalLM")
    s.arch = Architecture::Mistral;
  else if (s.arch_name == "Qwen2ForCausalLM")
    s.arch = Architecture::Qwen2;
  else
    throw Error(cat(file, ": unsupported architecture '", s.arch_name,
                    "'; qsweep runs LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM"));

  s.vocab_size = get_int(j, "vocab_size", file);
  s.hidden_size = get_int(j, "hidden_size", file);
  s.intermediate_size = get_int(j, "intermediate_size", file);
  s.num_layers = get_int(j, "num_hidden_layers", file);
  s.num_heads = get_int(j, "num_attention_heads", file);
  s.num_kv_heads = get_int(j, "num_key_value_heads", file, s.num_heads);
  QS_THROW_IF_NOT(s.hidden_size % s.num_heads == 0 || j.contains("head_dim"), file,
                  ": hidden_size ", s.hidden_size, " is not divisible by num_attention_heads ",
                  s.num_heads);
  s.head_dim = get_int(j, "head_dim", file, s.hidden_size / s.num_heads);
  QS_THROW_IF_NOT(s.head_dim % 2 == 0, file, ": head_dim ", s.head_dim,
                  " must be even for rotary embeddings");
  QS_THROW_IF_NOT(s.num_heads % s.num_kv_heads == 0, file, ": num_attention_heads ", s.num_heads,
                  " is not a multiple of num_key_value_heads ", s.num_kv_heads);
  s.rms_norm_eps = float(get_number(j, "rms_norm_eps", file, 1e-6));
  s.rope_theta = get_number(j, "rope_theta", file, 10000.0);
  s.max_position_embeddings = get_int(j, "max_position_embeddings", file, 2048);
  s.tie_word_embeddings = get_bool(j, "tie_word_embeddings", file, false);
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer())
    s.bos_token_id = j["bos_token_id"].get<int>();
  if (j.contains("eos_token_id") && j["eos_token_id"].is_number_integer())
    s.eos_token_id = j["eos_token_id"].get<int>();
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string())
    s.torch_dtype = j["torch_dtype"].get<std::string>();

  const std::string act = j.value("hidden_act", std::string("silu"));
  QS_THROW_IF_NOT(act == "silu", file, ": hidden_act '", act, "' is not supported (only silu)");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& rs = j["rope_scaling"];
    const std::string type =
        rs.is_object() ? rs.value("rope_type", rs.value("type", std::string("?"))) : "?";
    QS_THROW_IF_NOT(type == "default", file, ": rope_scaling type '", type,
                    "' is not supported yet; only unscaled RoPE is implemented");
  }
  QS_THROW_IF_NOT(!get_bool(j, "mlp_bias", file, false), file, ": mlp_bias=true is not supported");
  if (s.arch == Architecture::Qwen2) {
    s.qkv_bias = true;
    if (get_bool(j, "use_sliding_window", file, false))
      s.sliding_window = get_int(j, "sliding_window", file, 0);
  } else {
    const bool attention_bias = get_bool(j, "attention_bias", file, false);
    s.qkv_bias = s.o_bias = attention_bias;
  }
  if (s.arch == Architecture::Mistral && j.contains("sliding_window") &&
      !j["sliding_window"].is_null())
    s.sliding_window = get_int(j, "sliding_window", file, 0);
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
