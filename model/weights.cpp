#include "model/weights.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "common/errors.h"
#include "common/half.h"
#include "model/safetensors.h"

namespace qsweep {

const char* linear_role_name(LinearRole r) {
  switch (r) {
    case LinearRole::Q:
      return "q_proj";
    case LinearRole::K:
      return "k_proj";
    case LinearRole::V:
      return "v_proj";
    case LinearRole::O:
      return "o_proj";
    case LinearRole::Gate:
      return "gate_proj";
    case LinearRole::Up:
      return "up_proj";
    case LinearRole::Down:
      return "down_proj";
  }
  return "?";
}

std::string hf_linear_name(int layer, LinearRole r) {
  const bool attn =
      r == LinearRole::Q || r == LinearRole::K || r == LinearRole::V || r == LinearRole::O;
  return cat("model.layers.", layer, attn ? ".self_attn." : ".mlp.", linear_role_name(r),
             ".weight");
}

WeightTensor& LayerWeights::linear(LinearRole r) {
  switch (r) {
    case LinearRole::Q:
      return wq;
    case LinearRole::K:
      return wk;
    case LinearRole::V:
      return wv;
    case LinearRole::O:
      return wo;
    case LinearRole::Gate:
      return w_gate;
    case LinearRole::Up:
      return w_up;
    case LinearRole::Down:
      return w_down;
  }
  QS_ASSERT(false, "bad LinearRole");
}

const WeightTensor& LayerWeights::linear(LinearRole r) const {
  return const_cast<LayerWeights*>(this)->linear(r);
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += cat(i ? ", " : "", s[i]);
  return out + "]";
}

// Converts a checkpoint tensor to fp32 after checking its shape and values.
std::vector<float> load_checked(const SafetensorsCheckpoint& ckpt, const std::string& name,
                                const std::vector<int64_t>& expect) {
  const TensorView& t = ckpt.get(name);
  QS_THROW_IF_NOT(t.shape == expect, t.file, ": tensor '", name, "' has shape ", shape_str(t.shape),
                  " but config.json implies ", shape_str(expect),
                  " (config.json and the weights disagree)");
  std::vector<float> v = t.to_float();
  for (size_t i = 0; i < v.size(); ++i)
    QS_THROW_IF_NOT(std::isfinite(v[i]), t.file, ": tensor '", name, "' holds a non-finite value (",
                    v[i], ") at flat index ", i, "; the checkpoint is corrupt");
  return v;
}

// The tensor as stored (a view kept alive by the checkpoint when it is shared-owned, else an
// fp32 copy), after checking its shape, dtype and values.
WeightTensor load_matrix(const SafetensorsCheckpoint& c, const std::string& name, int64_t rows,
                         int64_t cols) {
  const TensorView& t = c.get(name);
  const std::vector<int64_t> expect = {rows, cols};
  QS_THROW_IF_NOT(t.shape == expect, t.file, ": tensor '", name, "' has shape ", shape_str(t.shape),
                  " but config.json implies ", shape_str(expect),
                  " (config.json and the weights disagree)");
  std::shared_ptr<const SafetensorsCheckpoint> keep = c.weak_from_this().lock();
  WeightTensor w;
  if (keep && (t.dtype == DType::F16 || t.dtype == DType::BF16))
    w = WeightTensor::half_view(t.dtype == DType::F16 ? WeightDType::F16 : WeightDType::BF16,
                                t.data, rows, cols, keep);
  else if (keep && t.dtype == DType::F32 && reinterpret_cast<uintptr_t>(t.data) % 4 == 0)
    w = WeightTensor::f32_view(reinterpret_cast<const float*>(t.data), rows, cols, keep);
  else
    return WeightTensor::from_matrix(
        Eigen::Map<MatrixRM>(load_checked(c, name, expect).data(), rows, cols));
  // Finiteness, a row block at a time (never the whole tensor widened).
  const int64_t block = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(cols, 1));
  std::vector<float> buf(size_t(block * cols));
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t n = std::min(block, rows - r0);
    w.decode_rows(r0, n, buf.data());
    for (int64_t i = 0; i < n * cols; ++i)
      QS_THROW_IF_NOT(std::isfinite(buf[size_t(i)]), t.file, ": tensor '", name,
                      "' holds a non-finite value (", buf[size_t(i)], ") at flat index ",
                      r0 * cols + i, "; the checkpoint is corrupt");
  }
  return w;
}

VectorF load_vector(const SafetensorsCheckpoint& c, const std::string& name, int64_t n) {
  std::vector<float> v = load_checked(c, name, {n});
  return Eigen::Map<VectorF>(v.data(), n);
}

}  // namespace

WeightTensor load_linear_weight(const SafetensorsCheckpoint& ckpt, int layer, LinearRole role,
                                int64_t out, int64_t in) {
  return load_matrix(ckpt, hf_linear_name(layer, role), out, in);
}

ModelWeights load_weights(const std::string& dir, const ModelSpec& s,
                          const LinearLoader& linear_loader) {
  const auto shared = std::make_shared<SafetensorsCheckpoint>(dir);
  const SafetensorsCheckpoint& ckpt = *shared;
  const LinearLoader& lin = linear_loader ? linear_loader : LinearLoader(load_linear_weight);
  ModelWeights w;
  const int64_t H = s.hidden_size, I = s.intermediate_size, V = s.vocab_size;
  const int64_t q = int64_t(s.num_heads) * s.head_dim, kv = int64_t(s.num_kv_heads) * s.head_dim;
  w.embed = load_matrix(ckpt, "model.embed_tokens.weight", V, H);
  for (int l = 0; l < s.num_layers; ++l) {
    LayerWeights L;
    const std::string p = cat("model.layers.", l, ".");
    L.wq = lin(ckpt, l, LinearRole::Q, q, H);
    L.wk = lin(ckpt, l, LinearRole::K, kv, H);
    L.wv = lin(ckpt, l, LinearRole::V, kv, H);
    L.wo = lin(ckpt, l, LinearRole::O, H, q);
    L.w_gate = lin(ckpt, l, LinearRole::Gate, I, H);
    L.w_up = lin(ckpt, l, LinearRole::Up, I, H);
    L.w_down = lin(ckpt, l, LinearRole::Down, H, I);
    if (s.qkv_bias) {
      L.bq = load_vector(ckpt, p + "self_attn.q_proj.bias", q);
      L.bk = load_vector(ckpt, p + "self_attn.k_proj.bias", kv);
      L.bv = load_vector(ckpt, p + "self_attn.v_proj.bias", kv);
    }
    if (s.o_bias) L.bo = load_vector(ckpt, p + "self_attn.o_proj.bias", H);
    if (s.qk_norm) {
      L.q_norm = load_vector(ckpt, p + "self_attn.q_norm.weight", s.head_dim);
      L.k_norm = load_vector(ckpt, p + "self_attn.k_norm.weight", s.head_dim);
    }
    L.attn_norm = load_vector(ckpt, p + "input_layernorm.weight", H);
    L.mlp_norm = load_vector(ckpt, p + "post_attention_layernorm.weight", H);
    w.layers.push_back(std::move(L));
  }
  w.final_norm = load_vector(ckpt, "model.norm.weight", H);
  if (s.tie_word_embeddings && !ckpt.find("lm_head.weight"))
    w.lm_head = w.embed;
  else
    w.lm_head = load_matrix(ckpt, "lm_head.weight", V, H);
  return w;
}

ModelWeights random_weights(const ModelSpec& s, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n01(0.f, 1.f);
  auto mat = [&](int64_t r, int64_t c, float sc) {
    MatrixRM m(r, c);
    for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = sc * n01(rng);
    return WeightTensor::from_matrix(std::move(m));
  };
  auto vec = [&](int64_t n, float mean, float sc) {
    VectorF v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = mean + sc * n01(rng);
    return v;
  };
  const int64_t H = s.hidden_size, I = s.intermediate_size, V = s.vocab_size;
  const int64_t q = int64_t(s.num_heads) * s.head_dim, kv = int64_t(s.num_kv_heads) * s.head_dim;
  ModelWeights w;
  w.embed = mat(V, H, 1.0f);
  for (int l = 0; l < s.num_layers; ++l) {
    LayerWeights L;
    L.wq = mat(q, H, scale);
    L.wk = mat(kv, H, scale);
    L.wv = mat(kv, H, scale);
    L.wo = mat(H, q, scale);
    L.w_gate = mat(I, H, scale);
    L.w_up = mat(I, H, scale);
    L.w_down = mat(H, I, scale);
    if (s.qkv_bias) {
      L.bq = vec(q, 0, scale);
      L.bk = vec(kv, 0, scale);
      L.bv = vec(kv, 0, scale);
    }
    if (s.o_bias) L.bo = vec(H, 0, scale);
    if (s.qk_norm) {
      L.q_norm = vec(s.head_dim, 1, 0.1f);
      L.k_norm = vec(s.head_dim, 1, 0.1f);
    }
    L.attn_norm = vec(H, 1, 0.1f);
    L.mlp_norm = vec(H, 1, 0.1f);
    w.layers.push_back(std::move(L));
  }
  w.final_norm = vec(H, 1, 0.1f);
  w.lm_head = s.tie_word_embeddings ? w.embed : mat(V, H, scale);
  return w;
}

std::string model_spec_to_config_json(const ModelSpec& s) {
  nlohmann::json j;
  j["architectures"] = {s.arch_name};
  j["model_type"] = s.arch == Architecture::Qwen2     ? "qwen2"
                    : s.arch == Architecture::Qwen3   ? "qwen3"
                    : s.arch == Architecture::Mistral ? "mistral"
                                                      : "llama";
  j["vocab_size"] = s.vocab_size;
  j["hidden_size"] = s.hidden_size;
  j["intermediate_size"] = s.intermediate_size;
  j["num_hidden_layers"] = s.num_layers;
  j["num_attention_heads"] = s.num_heads;
  j["num_key_value_heads"] = s.num_kv_heads;
  if (s.head_dim * s.num_heads != s.hidden_size) j["head_dim"] = s.head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = s.max_position_embeddings;
  j["rms_norm_eps"] = s.rms_norm_eps;
  j["rope_theta"] = s.rope_theta;
  j["tie_word_embeddings"] = s.tie_word_embeddings;
  if (s.rope_scaling.type == RopeScaling::Type::Llama3)
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", s.rope_scaling.factor},
        {"low_freq_factor", s.rope_scaling.low_freq_factor},
        {"high_freq_factor", s.rope_scaling.high_freq_factor},
        {"original_max_position_embeddings", s.rope_scaling.original_max_position_embeddings}};
  if (s.arch == Architecture::Llama || s.arch == Architecture::Qwen3)
    j["attention_bias"] = s.qkv_bias;
  if (s.sliding_window > 0) j["sliding_window"] = s.sliding_window;
  if (s.bos_token_id >= 0) j["bos_token_id"] = s.bos_token_id;
  if (s.eos_token_id >= 0) j["eos_token_id"] = s.eos_token_id;
  if (!s.torch_dtype.empty()) j["torch_dtype"] = s.torch_dtype;
  return j.dump(2) + "\n";
}

void save_hf_checkpoint(const std::string& dir, const ModelSpec& s, const ModelWeights& w,
                        const std::string& dtype) {
  DType dt;
  if (dtype == "F32")
    dt = DType::F32;
  else if (dtype == "F16")
    dt = DType::F16;
  else if (dtype == "BF16")
    dt = DType::BF16;
  else
    throw Error(cat("save_hf_checkpoint: dtype '", dtype, "' must be F32, F16 or BF16"));
  std::filesystem::create_directories(dir);
  // Converted copies must outlive the write call.
  std::vector<std::vector<uint8_t>> storage;
  std::vector<TensorToWrite> out;
  auto add = [&](const std::string& name, const float* data, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<uint8_t> bytes(size_t(n * dtype_size(dt)));
    for (int64_t i = 0; i < n; ++i) {
      if (dt == DType::F32) {
        std::memcpy(bytes.data() + 4 * i, data + i, 4);
      } else {
        const uint16_t h = dt == DType::F16 ? float_to_half(data[i]) : float_to_bf16(data[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
    }
    storage.push_back(std::move(bytes));
    out.push_back({name, dt, std::move(shape), storage.back().data()});
  };
  storage.reserve(16 + 16 * w.layers.size());
  auto add_m = [&](const std::string& name, const WeightTensor& t) {
    if (const float* p = t.f32_data()) return add(name, p, {t.rows(), t.cols()});
    const MatrixRM m = t.to_matrix();  // one tensor widened at a time
    add(name, m.data(), {m.rows(), m.cols()});
  };
  auto add_v = [&](const std::string& name, const VectorF& v) { add(name, v.data(), {v.size()}); };
  add_m("model.embed_tokens.weight", w.embed);
  for (int l = 0; l < int(w.layers.size()); ++l) {
    const LayerWeights& L = w.layers[size_t(l)];
    const std::string p = cat("model.layers.", l, ".");
    for (LinearRole r : kAllLinearRoles) add_m(hf_linear_name(l, r), L.linear(r));
    if (L.bq.size()) add_v(p + "self_attn.q_proj.bias", L.bq);
    if (L.bk.size()) add_v(p + "self_attn.k_proj.bias", L.bk);
    if (L.bv.size()) add_v(p + "self_attn.v_proj.bias", L.bv);
    if (L.bo.size()) add_v(p + "self_attn.o_proj.bias", L.bo);
    if (L.q_norm.size()) add_v(p + "self_attn.q_norm.weight", L.q_norm);
    if (L.k_norm.size()) add_v(p + "self_attn.k_norm.weight", L.k_norm);
    add_v(p + "input_layernorm.weight", L.attn_norm);
    add_v(p + "post_attention_layernorm.weight", L.mlp_norm);
  }
  add_v("model.norm.weight", w.final_norm);
  if (!s.tie_word_embeddings) add_m("lm_head.weight", w.lm_head);
  write_safetensors((std::filesystem::path(dir) / "model.safetensors").string(), out,
                    {{"format", "pt"}});
  const std::string cfg = model_spec_to_config_json(s);
  write_file_atomic((std::filesystem::path(dir) / "config.json").string(), cfg.data(), cfg.size());
}

}  // namespace qsweep
