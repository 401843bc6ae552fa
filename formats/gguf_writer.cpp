// GGUF writer: the model's tensors in llama.cpp's names and row order (q/k permuted), float
// encodings, and the file (header, metadata from the ModelSpec, tokenizer keys, aligned data).
// Block-quantized tensors arrive encoded (quantize/kquant_mix.h encodes them).
#include <cstring>
#include <filesystem>
#include <map>

#include "common/errors.h"
#include "common/half.h"
#include "common/mapped_file.h"
#include "formats/detail/gguf_internal.h"
#include "model/rope.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep {
namespace fs = std::filesystem;
namespace gt = kquants::ggml_type;
using namespace gguf_detail;

namespace {

std::vector<float> permuted_rows(const float* src, int64_t rows, int64_t cols, int n_head) {
  const std::vector<int64_t> from = gguf_qk_row_source(rows, n_head);
  std::vector<float> out(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out.data() + r * cols, src + from[size_t(r)] * cols, sizeof(float) * cols);
  return out;
}

}  // namespace

bool gguf_is_float_type(int32_t t) {
  return is_float_type(t);
}

std::vector<GgufSourceTensor> gguf_source_tensors(const ModelSpec& spec, const ModelWeights& w) {
  QS_THROW_IF_NOT(int(w.layers.size()) == spec.num_layers, "GGUF export: weights have ",
                  w.layers.size(), " layers, the spec ", spec.num_layers);
  std::vector<GgufSourceTensor> ts;
  auto add2 = [&](std::string name, const WeightTensor& m, int permute_heads) {
    GgufSourceTensor t;
    t.name = std::move(name);
    t.ne = {m.cols(), m.rows()};
    t.data = m.f32_data();
    if (!t.data) {  // not stored as fp32: an owned widened copy
      t.owned.resize(size_t(m.size()));
      m.decode_rows(0, m.rows(), t.owned.data());
    }
    if (permute_heads > 0) t.owned = permuted_rows(t.ptr(), m.rows(), m.cols(), permute_heads);
    ts.push_back(std::move(t));
  };
  auto add1 = [&](std::string name, const VectorF& v, int permute_heads) {
    if (v.size() == 0) return;
    GgufSourceTensor t;
    t.name = std::move(name);
    t.ne = {v.size()};
    t.data = v.data();
    if (permute_heads > 0) t.owned = permuted_rows(v.data(), v.size(), 1, permute_heads);
    ts.push_back(std::move(t));
  };
  // llama.cpp's Llama graph rotates adjacent pairs (rope type NORM): convert_hf_to_gguf permutes
  // the q/k rows. Qwen2/3 rotate halves (NEOX) as HF does: rows stay as they are.
  const bool permute = gguf_arch(spec) == "llama";
  const int q_heads = permute ? spec.num_heads : 0, k_heads = permute ? spec.num_kv_heads : 0;
  if (std::vector<float> f = rope_freq_factors(spec); !f.empty()) {
    // LlamaModel.generate_extra_tensors: rope_freqs.weight, F32 [head_dim / 2].
    GgufSourceTensor t;
    t.name = "rope_freqs.weight";
    t.ne = {int64_t(f.size())};
    t.owned = std::move(f);
    ts.push_back(std::move(t));
  }
  add2("token_embd.weight", w.embed, 0);
  for (int l = 0; l < spec.num_layers; ++l) {
    const LayerWeights& L = w.layers[size_t(l)];
    const std::string b = cat("blk.", l, ".");
    add1(b + "attn_norm.weight", L.attn_norm, 0);
    add2(b + "attn_q.weight", L.wq, q_heads);
    add1(b + "attn_q.bias", L.bq, q_heads);
    add2(b + "attn_k.weight", L.wk, k_heads);
    add1(b + "attn_k.bias", L.bk, k_heads);
    add2(b + "attn_v.weight", L.wv, 0);
    add1(b + "attn_v.bias", L.bv, 0);
    add2(b + "attn_output.weight", L.wo, 0);
    add1(b + "attn_output.bias", L.bo, 0);
    if (spec.qk_norm) {
      QS_THROW_IF_NOT(L.q_norm.size() == spec.head_dim && L.k_norm.size() == spec.head_dim,
                      "GGUF export: layer ", l, ": q_norm/k_norm must hold head_dim ",
                      spec.head_dim, " values");
      add1(b + "attn_q_norm.weight", L.q_norm, 0);
      add1(b + "attn_k_norm.weight", L.k_norm, 0);
    }
    add1(b + "ffn_norm.weight", L.mlp_norm, 0);
    add2(b + "ffn_gate.weight", L.w_gate, 0);
    add2(b + "ffn_up.weight", L.w_up, 0);
    add2(b + "ffn_down.weight", L.w_down, 0);
  }
  add1("output_norm.weight", w.final_norm, 0);
  if (!spec.tie_word_embeddings) add2("output.weight", w.lm_head, 0);
  return ts;
}

std::vector<uint8_t> gguf_encode_float(int32_t ggml_type, const float* x, int64_t n) {
  ByteWriter out;
  if (ggml_type == gt::F32) {
    out.put_bytes(x, sizeof(float) * size_t(n));
  } else if (ggml_type == gt::F16) {
    out.buf.reserve(2 * size_t(n));
    for (int64_t i = 0; i < n; ++i) out.put<uint16_t>(float_to_half(x[i]));
  } else if (ggml_type == gt::BF16) {
    out.buf.reserve(2 * size_t(n));
    for (int64_t i = 0; i < n; ++i) out.put<uint16_t>(float_to_bf16(x[i]));
  } else {
    throw Error(cat("gguf_encode_float: ggml type ", ggml_type_name(ggml_type),
                    " is not a float type (block types are encoded by quantize/kquant_mix.h)"));
  }
  return std::move(out.buf);
}

void write_gguf(const std::string& path, const ModelSpec& spec,
                const std::vector<GgufTensorData>& ts, const std::string& model_dir_for_tokenizer,
                const GgufWriteOptions& opt) {
  std::string arch;
  try {
    arch = gguf_arch(spec);  // refuses what llama.cpp cannot run
  } catch (const Error& e) {
    throw Error(cat(path, ": ", e.what()));
  }
  QS_THROW_IF_NOT(spec.sliding_window == 0, path,
                  ": GGUF architecture 'llama' has no sliding window; this model uses ",
                  spec.sliding_window);
  QS_THROW_IF_NOT(opt.alignment > 0 && std::has_single_bit(opt.alignment), path, ": alignment ",
                  opt.alignment, " is not a power of two");
  {
    // gguf_weight_tensors() is what mix plans are made from: it must list exactly these.
    const std::vector<kquants::MixTensor> listed = gguf_weight_tensors(spec);
    size_t k = 0;
    for (const GgufTensorData& t : ts)
      if (t.ne.size() == 2) {
        QS_THROW_IF_NOT(k < listed.size() && listed[k].name == t.name &&
                            listed[k].row_length == t.ne[0] && listed[k].rows == t.ne[1],
                        path, ": tensor '", t.name, "' is not the next 2-D tensor of this model");
        ++k;
      }
    QS_THROW_IF_NOT(k == listed.size(), path, ": the model has ", listed.size(), " 2-D tensors, ",
                    k, " were given");
  }

  std::map<int32_t, int> two_d_types;
  for (const GgufTensorData& t : ts) {
    QS_THROW_IF_NOT(supported_type(t.ggml_type), path, ": tensor '", t.name, "': ggml type ",
                    ggml_type_name(t.ggml_type), " cannot be written (supported: F32, F16, BF16, ",
                    "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K ... Q6_K)");
    const int64_t rows = t.ne.size() == 2 ? t.ne[1] : 1;
    const int64_t nbytes =
        tensor_bytes(t.ggml_type, t.ne[0], rows, cat(path, ": tensor '", t.name, "'"));
    QS_THROW_IF_NOT(int64_t(t.bytes.size()) == nbytes, path, ": tensor '", t.name, "' has ",
                    t.bytes.size(), " bytes, its type and shape take ", nbytes);
    if (t.ne.size() == 2) ++two_d_types[t.ggml_type];
  }
  int32_t file_type = opt.file_type;
  if (file_type < 0) {
    int32_t best = gt::F16;
    int best_n = -1;
    for (auto [t, n] : two_d_types)
      if (n > best_n) best = t, best_n = n;
    file_type = ftype_of(best);
  }

  // Keys as convert_hf_to_gguf.py writes them (TextModel.set_gguf_parameters; LlamaModel adds
  // vocab_size and rope.dimension_count) under gguf-py/gguf/constants.py's names.
  KvWriter kv;
  const int head_dim = spec.head_dim;
  const std::string a = arch + ".";
  kv.str("general.architecture", arch);
  std::string name = opt.name;
  if (name.empty() && !model_dir_for_tokenizer.empty())
    name = fs::path(model_dir_for_tokenizer).lexically_normal().filename().string();
  if (name.empty()) name = "qsweep";
  kv.str("general.name", name);
  if (opt.alignment != kDefaultAlignment) kv.u32("general.alignment", opt.alignment);
  if (arch == "llama") kv.u32(a + "vocab_size", uint32_t(spec.vocab_size));
  kv.u32(a + "context_length", uint32_t(spec.max_position_embeddings));
  kv.u32(a + "embedding_length", uint32_t(spec.hidden_size));
  kv.u32(a + "block_count", uint32_t(spec.num_layers));
  kv.u32(a + "feed_forward_length", uint32_t(spec.intermediate_size));
  kv.u32(a + "attention.head_count", uint32_t(spec.num_heads));
  kv.u32(a + "attention.head_count_kv", uint32_t(spec.num_kv_heads));
  kv.f32(a + "rope.freq_base", float(spec.rope_theta));
  kv.f32(a + "attention.layer_norm_rms_epsilon", spec.rms_norm_eps);
  if (head_dim * spec.num_heads != spec.hidden_size) {
    kv.u32(a + "attention.key_length", uint32_t(head_dim));
    kv.u32(a + "attention.value_length", uint32_t(head_dim));
  }
  if (arch == "llama") kv.u32(a + "rope.dimension_count", uint32_t(head_dim));
  kv.u32("general.file_type", uint32_t(file_type));
  bool any_quant = false;
  for (const auto& t : ts) any_quant |= !is_float_type(t.ggml_type);
  if (any_quant) kv.u32("general.quantization_version", 2);  // GGML_QNT_VERSION
  if (!model_dir_for_tokenizer.empty()) write_tokenizer_kv(kv, model_dir_for_tokenizer, spec);

  ByteWriter out;
  out.put_bytes("GGUF", 4);
  out.put<uint32_t>(3);
  out.put<uint64_t>(ts.size());
  out.put<uint64_t>(kv.count);
  out.put_bytes(kv.w.buf.data(), kv.w.buf.size());
  uint64_t offset = 0;
  for (const auto& t : ts) {
    out.put_str(t.name);
    out.put<uint32_t>(uint32_t(t.ne.size()));
    for (int64_t d : t.ne) out.put<uint64_t>(uint64_t(d));
    out.put<uint32_t>(uint32_t(t.ggml_type));
    out.put<uint64_t>(offset);
    offset = align_up(offset + uint64_t(t.bytes.size()), opt.alignment);
  }
  out.pad_to(opt.alignment);
  out.buf.reserve(out.buf.size() + offset);
  for (const auto& t : ts) {
    out.put_bytes(t.bytes.data(), t.bytes.size());
    out.pad_to(opt.alignment);
  }
  write_file_atomic(path, out.buf.data(), out.buf.size());
}

}  // namespace qsweep
