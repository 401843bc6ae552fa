#include "formats/gguf.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "common/errors.h"
#include "common/half.h"
#include "formats/detail/gguf_io.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep {
namespace fs = std::filesystem;
namespace gt = kquants::ggml_type;
using gguf_detail::ByteCursor;
using gguf_detail::ByteWriter;

static_assert(std::endian::native == std::endian::little, "GGUF I/O assumes a little-endian host");

namespace {

constexpr uint32_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;       // GGML_MAX_DIMS
constexpr size_t kMaxNameLength = 63;  // GGML_MAX_NAME (64) minus the NUL
constexpr int kTokenNormal = 1, kTokenUnknown = 2, kTokenControl = 3, kTokenUserDefined = 4,
              kTokenUnused = 5, kTokenByte = 6;

// ---- ggml types -------------------------------------------------------------------------

bool is_float_type(int32_t t) {
  return t == gt::F32 || t == gt::F16 || t == gt::BF16;
}

std::string ggml_type_name(int32_t t) {
  switch (t) {
    case gt::F32:
      return "F32";
    case gt::F16:
      return "F16";
    case gt::BF16:
      return "BF16";
    default:
      break;
  }
  if (auto q = kquants::type_from_ggml(t)) return kquants::traits(*q).name;
  // ggml types that exist but qsweep does not decode (ggml.h enum ggml_type).
  static const std::map<int32_t, const char*> others = {
      {9, "Q8_1"},    {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"},
      {20, "IQ4_NL"}, {21, "IQ3_S"},   {22, "IQ2_S"},  {23, "IQ4_XS"},  {24, "I8"},
      {25, "I16"},    {26, "I32"},     {27, "I64"},    {28, "F64"},     {29, "IQ1_M"},
      {34, "TQ1_0"},  {35, "TQ2_0"},   {39, "MXFP4"}};
  auto it = others.find(t);
  return it == others.end() ? cat("type ", t) : it->second;
}

/// True for the types this file reads and writes (Q8_K is an intermediate type in ggml).
bool supported_type(int32_t t) {
  if (is_float_type(t)) return true;
  auto q = kquants::type_from_ggml(t);
  return q && *q != kquants::QuantType::Q8_K;
}

/// Bytes of a tensor of type t with ne0 values per row and `rows` rows; Error (with `where`)
/// when ne0 is not a multiple of the block size.
int64_t tensor_bytes(int32_t t, int64_t ne0, int64_t rows, const std::string& where) {
  const std::string ctx = cat(where, ": tensor size overflows");
  if (t == gt::F32) return mul_checked(mul_checked(ne0, rows, ctx), 4, ctx);
  if (t == gt::F16 || t == gt::BF16) return mul_checked(mul_checked(ne0, rows, ctx), 2, ctx);
  const auto q = kquants::type_from_ggml(t);
  QS_ASSERT(q.has_value());
  const auto& tr = kquants::traits(*q);
  QS_THROW_IF_NOT(ne0 % tr.block_size == 0, where, ": row length ", ne0, " is not a multiple of ",
                  tr.name, "'s block size ", tr.block_size);
  return mul_checked(mul_checked(ne0 / tr.block_size, tr.type_size, ctx), rows, ctx);
}

uint64_t align_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

// llama_ftype numbers (llama.h) and their names.
const std::map<int32_t, const char*>& ftype_names() {
  static const std::map<int32_t, const char*> m = {
      {0, "ALL_F32"},        {1, "MOSTLY_F16"},     {2, "MOSTLY_Q4_0"},    {3, "MOSTLY_Q4_1"},
      {7, "MOSTLY_Q8_0"},    {8, "MOSTLY_Q5_0"},    {9, "MOSTLY_Q5_1"},    {10, "MOSTLY_Q2_K"},
      {11, "MOSTLY_Q3_K_S"}, {12, "MOSTLY_Q3_K_M"}, {13, "MOSTLY_Q3_K_L"}, {14, "MOSTLY_Q4_K_S"},
      {15, "MOSTLY_Q4_K_M"}, {16, "MOSTLY_Q5_K_S"}, {17, "MOSTLY_Q5_K_M"}, {18, "MOSTLY_Q6_K"},
      {32, "MOSTLY_BF16"}};
  return m;
}

/// llama_ftype of a uniform type (the "_S" mix for K-quants, as llama-quantize names them).
int32_t ftype_of(int32_t t) {
  switch (t) {
    case gt::F32:
      return 0;
    case gt::F16:
      return 1;
    case gt::Q4_0:
      return 2;
    case gt::Q4_1:
      return 3;
    case gt::Q8_0:
      return 7;
    case gt::Q5_0:
      return 8;
    case gt::Q5_1:
      return 9;
    case gt::Q2_K:
      return 10;
    case gt::Q3_K:
      return 11;
    case gt::Q4_K:
      return 14;
    case gt::Q5_K:
      return 16;
    case gt::Q6_K:
      return 18;
    case gt::BF16:
      return 32;
    default:
      return 1;
  }
}

// ---- writer -----------------------------------------------------------------------------

struct PendingTensor {
  std::string name;
  std::vector<int64_t> ne;  // ggml order
  int32_t type = 0;
  const float* data = nullptr;  // row-major [ne[1], ne[0]] (or [ne[0]])
  std::vector<float> owned;     // when the data had to be permuted
  int64_t nbytes = 0;
  const float* ptr() const { return owned.empty() ? data : owned.data(); }
  int64_t rows() const { return ne.size() == 2 ? ne[1] : 1; }
};

class KvWriter {
 public:
  ByteWriter w;
  uint64_t count = 0;
  void key(const std::string& k, GgufType t) {
    w.put_str(k);
    w.put<uint32_t>(uint32_t(t));
    ++count;
  }
  void u32(const std::string& k, uint32_t v) { key(k, GgufType::UINT32), w.put(v); }
  void i32(const std::string& k, int32_t v) { key(k, GgufType::INT32), w.put(v); }
  void f32(const std::string& k, float v) { key(k, GgufType::FLOAT32), w.put(v); }
  void boolean(const std::string& k, bool v) { key(k, GgufType::BOOL), w.put<uint8_t>(v); }
  void str(const std::string& k, const std::string& v) { key(k, GgufType::STRING), w.put_str(v); }
  void arr_header(const std::string& k, GgufType et, uint64_t n) {
    key(k, GgufType::ARRAY);
    w.put<uint32_t>(uint32_t(et));
    w.put<uint64_t>(n);
  }
};

void write_tokenizer_kv(KvWriter& kv, const std::string& dir, const ModelSpec& spec) {
  const std::string model_file = (fs::path(dir) / "tokenizer.model").string();
  QS_THROW_IF_NOT(fs::exists(model_file), model_file,
                  ": not found; GGUF export writes a sentencepiece tokenizer (tokenizer.model)");
  sentencepiece::SentencePieceProcessor sp;
  const auto st = sp.Load(model_file);
  QS_THROW_IF_NOT(st.ok(), model_file, ": cannot load the sentencepiece model (", st.ToString(),
                  ")");
  const bool add_bos = load_tokenizer(dir)->add_bos_token();  // tokenizer_config.json
  const int n = sp.GetPieceSize();
  QS_THROW_IF_NOT(n <= spec.vocab_size, model_file, ": ", n,
                  " pieces but the model's vocab_size is ", spec.vocab_size);
  // convert_hf_to_gguf (_create_vocab_sentencepiece): pieces, scores and types in id order;
  // the vocabulary is padded to vocab_size with "[PAD<i>]" (score -1000, UNUSED).
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int id = 0; id < n; ++id) {
    tokens.push_back(sp.IdToPiece(id));
    scores.push_back(sp.GetScore(id));
    int t = kTokenNormal;
    if (sp.IsUnknown(id))
      t = kTokenUnknown;
    else if (sp.IsControl(id))
      t = kTokenControl;
    else if (sp.IsUnused(id))
      t = kTokenUnused;
    else if (sp.IsByte(id))
      t = kTokenByte;
    types.push_back(t);
  }
  for (int i = 1; i <= spec.vocab_size - n; ++i) {
    tokens.push_back(cat("[PAD", i, "]"));
    scores.push_back(-1000.0f);
    types.push_back(kTokenUnused);
  }
  kv.str("tokenizer.ggml.model", "llama");
  kv.arr_header("tokenizer.ggml.tokens", GgufType::STRING, tokens.size());
  for (const auto& t : tokens) kv.w.put_str(t);
  kv.arr_header("tokenizer.ggml.scores", GgufType::FLOAT32, scores.size());
  for (float s : scores) kv.w.put(s);
  kv.arr_header("tokenizer.ggml.token_type", GgufType::INT32, types.size());
  for (int32_t t : types) kv.w.put(t);
  const int bos = spec.bos_token_id >= 0 ? spec.bos_token_id : sp.bos_id();
  const int eos = spec.eos_token_id >= 0 ? spec.eos_token_id : sp.eos_id();
  if (bos >= 0) kv.u32("tokenizer.ggml.bos_token_id", uint32_t(bos));
  if (eos >= 0) kv.u32("tokenizer.ggml.eos_token_id", uint32_t(eos));
  if (sp.unk_id() >= 0) kv.u32("tokenizer.ggml.unknown_token_id", uint32_t(sp.unk_id()));
  if (sp.pad_id() >= 0) kv.u32("tokenizer.ggml.padding_token_id", uint32_t(sp.pad_id()));
  kv.boolean("tokenizer.ggml.add_bos_token", add_bos);
  kv.boolean("tokenizer.ggml.add_eos_token", false);
}

std::vector<float> permuted_rows(const float* src, int64_t rows, int64_t cols, int n_head) {
  const std::vector<int64_t> from = gguf_qk_row_source(rows, n_head);
  std::vector<float> out(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out.data() + r * cols, src + from[size_t(r)] * cols, sizeof(float) * cols);
  return out;
}

}  // namespace

int32_t GgufTypePlan::type_for(const std::string& gguf_name, bool two_d) const {
  auto it = per_tensor.find(gguf_name);
  if (it != per_tensor.end()) return it->second;
  return two_d ? weights : norms;
}

std::vector<int64_t> gguf_qk_row_source(int64_t rows, int n_head) {
  QS_THROW_IF_NOT(n_head > 0 && rows % (2 * int64_t(n_head)) == 0, "q/k permutation: ", rows,
                  " rows do not split into ", n_head, " heads of an even size");
  const int64_t hd = rows / n_head, half = hd / 2;
  std::vector<int64_t> src(static_cast<size_t>(rows));
  // numpy: w.reshape(n_head, 2, half, ...).swapaxes(1, 2).reshape(w.shape)
  // → element [h, j, i] of the result is [h, i, j] of the source.
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t i = 0; i < 2; ++i) src[size_t(h * hd + 2 * j + i)] = h * hd + i * half + j;
  return src;
}

MatrixRM gguf_permute_qk(const MatrixRM& hf, int n_head) {
  const std::vector<int64_t> src = gguf_qk_row_source(hf.rows(), n_head);
  MatrixRM out(hf.rows(), hf.cols());
  for (int64_t r = 0; r < hf.rows(); ++r) out.row(r) = hf.row(src[size_t(r)]);
  return out;
}

MatrixRM gguf_unpermute_qk(const MatrixRM& gguf, int n_head) {
  const std::vector<int64_t> src = gguf_qk_row_source(gguf.rows(), n_head);
  MatrixRM out(gguf.rows(), gguf.cols());
  for (int64_t r = 0; r < gguf.rows(); ++r) out.row(src[size_t(r)]) = gguf.row(r);
  return out;
}

std::string gguf_linear_name(int layer, LinearRole role) {
  const char* n = "";
  switch (role) {
    case LinearRole::Q:
      n = "attn_q";
      break;
    case LinearRole::K:
      n = "attn_k";
      break;
    case LinearRole::V:
      n = "attn_v";
      break;
    case LinearRole::O:
      n = "attn_output";
      break;
    case LinearRole::Gate:
      n = "ffn_gate";
      break;
    case LinearRole::Up:
      n = "ffn_up";
      break;
    case LinearRole::Down:
      n = "ffn_down";
      break;
  }
  return cat("blk.", layer, ".", n, ".weight");
}

std::vector<kquants::MixTensor> gguf_weight_tensors(const ModelSpec& spec) {
  std::vector<kquants::MixTensor> out;
  out.push_back({"token_embd.weight", spec.hidden_size, spec.vocab_size});
  const int64_t q_width = int64_t(spec.num_heads) * spec.head_dim;
  const int64_t kv_width = int64_t(spec.num_kv_heads) * spec.head_dim;
  for (int l = 0; l < spec.num_layers; ++l)
    for (LinearRole r : kAllLinearRoles) {
      const auto [cols, rows] = [&]() -> std::pair<int64_t, int64_t> {
        switch (r) {
          case LinearRole::Q:
            return {spec.hidden_size, q_width};
          case LinearRole::K:
          case LinearRole::V:
            return {spec.hidden_size, kv_width};
          case LinearRole::O:
            return {q_width, spec.hidden_size};
          case LinearRole::Gate:
          case LinearRole::Up:
            return {spec.hidden_size, spec.intermediate_size};
          case LinearRole::Down:
            return {spec.intermediate_size, spec.hidden_size};
        }
        return {0, 0};
      }();
      out.push_back({gguf_linear_name(l, r), cols, rows});
    }
  if (!spec.tie_word_embeddings)
    out.push_back({"output.weight", spec.hidden_size, spec.vocab_size});
  return out;
}

GgufTypePlan gguf_mix_plan(kquants::Mix mix, const ModelSpec& spec, bool has_imatrix,
                           std::vector<kquants::MixChoice>* choices) {
  const std::vector<kquants::MixChoice> c =
      kquants::plan_mix(mix, {spec.num_layers, spec.num_heads, spec.num_kv_heads},
                        gguf_weight_tensors(spec), has_imatrix);
  GgufTypePlan plan;
  for (const auto& x : c) plan.per_tensor[x.name] = x.ggml_type;
  plan.file_type = kquants::mix_llama_ftype(mix);
  if (choices) *choices = c;
  return plan;
}

GgufMixSummary write_gguf_mix(
    const std::string& path, const ModelSpec& spec, const ModelWeights& w,
    const std::string& model_dir_for_tokenizer, kquants::Mix mix,
    const std::map<std::pair<int, LinearRole>, std::vector<float>>* importance) {
  GgufMixSummary sum;
  GgufTypePlan plan = gguf_mix_plan(mix, spec, importance != nullptr, &sum.choices);
  if (importance)
    for (const auto& [key, v] : *importance)
      plan.importance[gguf_linear_name(key.first, key.second)] = v;
  write_gguf(path, spec, w, model_dir_for_tokenizer, plan);
  sum.file_bytes = int64_t(fs::file_size(path));
  sum.file_bits_per_weight = 8.0 * double(sum.file_bytes) / double(spec.parameter_count());
  const std::vector<kquants::MixTensor> tensors = gguf_weight_tensors(spec);
  double bits = 0, n = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].name.rfind("blk.", 0) != 0) continue;  // token_embd, output
    const double k = double(tensors[i].rows) * double(tensors[i].row_length);
    const int32_t t = sum.choices[i].ggml_type;
    const auto q = kquants::type_from_ggml(t);
    bits += k * (q ? kquants::traits(*q).bpw : t == gt::F16 ? 16.0 : 32.0);
    n += k;
  }
  sum.linear_bits_per_weight = n > 0 ? bits / n : 0;
  return sum;
}

void write_gguf(const std::string& path, const ModelSpec& spec, const ModelWeights& w,
                const std::string& model_dir_for_tokenizer, const GgufTypePlan& plan) {
  QS_THROW_IF_NOT(spec.arch == Architecture::Llama || spec.arch == Architecture::Mistral, path,
                  ": GGUF export supports Llama and Mistral models, not ", spec.arch_name);
  QS_THROW_IF_NOT(spec.sliding_window == 0, path,
                  ": GGUF architecture 'llama' has no sliding window; this model uses ",
                  spec.sliding_window);
  QS_THROW_IF_NOT(plan.alignment > 0 && std::has_single_bit(plan.alignment), path, ": alignment ",
                  plan.alignment, " is not a power of two");
  QS_THROW_IF_NOT(int(w.layers.size()) == spec.num_layers, path, ": weights have ", w.layers.size(),
                  " layers, the spec ", spec.num_layers);

  // Tensors in llama.cpp's names, q/k rows permuted for ggml's adjacent-pair RoPE.
  std::vector<PendingTensor> ts;
  auto add2 = [&](std::string name, const MatrixRM& m, int permute_heads) {
    PendingTensor t;
    t.name = std::move(name);
    t.ne = {m.cols(), m.rows()};
    t.data = m.data();
    if (permute_heads > 0) t.owned = permuted_rows(m.data(), m.rows(), m.cols(), permute_heads);
    t.type = plan.type_for(t.name, true);
    ts.push_back(std::move(t));
  };
  auto add1 = [&](std::string name, const VectorF& v, int permute_heads) {
    if (v.size() == 0) return;
    PendingTensor t;
    t.name = std::move(name);
    t.ne = {v.size()};
    t.data = v.data();
    if (permute_heads > 0) t.owned = permuted_rows(v.data(), v.size(), 1, permute_heads);
    t.type = plan.type_for(t.name, false);
    ts.push_back(std::move(t));
  };
  add2("token_embd.weight", w.embed, 0);
  for (int l = 0; l < spec.num_layers; ++l) {
    const LayerWeights& L = w.layers[size_t(l)];
    const std::string b = cat("blk.", l, ".");
    add1(b + "attn_norm.weight", L.attn_norm, 0);
    add2(b + "attn_q.weight", L.wq, spec.num_heads);
    add1(b + "attn_q.bias", L.bq, spec.num_heads);
    add2(b + "attn_k.weight", L.wk, spec.num_kv_heads);
    add1(b + "attn_k.bias", L.bk, spec.num_kv_heads);
    add2(b + "attn_v.weight", L.wv, 0);
    add1(b + "attn_v.bias", L.bv, 0);
    add2(b + "attn_output.weight", L.wo, 0);
    add1(b + "attn_output.bias", L.bo, 0);
    add1(b + "ffn_norm.weight", L.mlp_norm, 0);
    add2(b + "ffn_gate.weight", L.w_gate, 0);
    add2(b + "ffn_up.weight", L.w_up, 0);
    add2(b + "ffn_down.weight", L.w_down, 0);
  }
  add1("output_norm.weight", w.final_norm, 0);
  if (!spec.tie_word_embeddings) add2("output.weight", w.lm_head, 0);

  {
    // gguf_weight_tensors() is what mix plans are made from: it must list exactly these.
    const std::vector<kquants::MixTensor> listed = gguf_weight_tensors(spec);
    size_t k = 0;
    for (const PendingTensor& t : ts)
      if (t.ne.size() == 2) {
        QS_ASSERT(k < listed.size() && listed[k].name == t.name &&
                      listed[k].row_length == t.ne[0] && listed[k].rows == t.ne[1],
                  t.name);
        ++k;
      }
    QS_ASSERT(k == listed.size(), "gguf_weight_tensors lists ", listed.size(), " tensors, wrote ",
              k);
  }
  for (const auto& [name, imp] : plan.importance) {
    auto it =
        std::find_if(ts.begin(), ts.end(), [&](const PendingTensor& t) { return t.name == name; });
    QS_THROW_IF_NOT(it != ts.end(), path, ": importance matrix for '", name,
                    "', which is not a tensor of this model");
    QS_THROW_IF_NOT(int64_t(imp.size()) == it->ne[0], path, ": importance matrix for '", name,
                    "' has ", imp.size(), " values; the tensor's rows have ", it->ne[0]);
    for (size_t j = 0; j < imp.size(); ++j)
      QS_THROW_IF_NOT(std::isfinite(imp[j]) && imp[j] >= 0, path, ": importance matrix for '", name,
                      "' has value ", imp[j], " at column ", j, " (must be finite and >= 0)");
  }

  std::map<int32_t, int> two_d_types;
  for (PendingTensor& t : ts) {
    QS_THROW_IF_NOT(supported_type(t.type), path, ": tensor '", t.name, "': ggml type ",
                    ggml_type_name(t.type), " cannot be written (supported: F32, F16, BF16, ",
                    "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K ... Q6_K)");
    t.nbytes = tensor_bytes(t.type, t.ne[0], t.rows(), cat(path, ": tensor '", t.name, "'"));
    if (t.ne.size() == 2) ++two_d_types[t.type];
  }
  int32_t file_type = plan.file_type;
  if (file_type < 0) {
    int32_t best = gt::F16;
    int best_n = -1;
    for (auto [t, n] : two_d_types)
      if (n > best_n) best = t, best_n = n;
    file_type = ftype_of(best);
  }

  KvWriter kv;
  const int head_dim = spec.head_dim;
  kv.str("general.architecture", "llama");
  std::string name = plan.name;
  if (name.empty() && !model_dir_for_tokenizer.empty())
    name = fs::path(model_dir_for_tokenizer).lexically_normal().filename().string();
  if (name.empty()) name = "qsweep";
  kv.str("general.name", name);
  if (plan.alignment != kDefaultAlignment) kv.u32("general.alignment", plan.alignment);
  kv.u32("llama.vocab_size", uint32_t(spec.vocab_size));
  kv.u32("llama.context_length", uint32_t(spec.max_position_embeddings));
  kv.u32("llama.embedding_length", uint32_t(spec.hidden_size));
  kv.u32("llama.block_count", uint32_t(spec.num_layers));
  kv.u32("llama.feed_forward_length", uint32_t(spec.intermediate_size));
  kv.u32("llama.attention.head_count", uint32_t(spec.num_heads));
  kv.u32("llama.attention.head_count_kv", uint32_t(spec.num_kv_heads));
  kv.f32("llama.rope.freq_base", float(spec.rope_theta));
  kv.f32("llama.attention.layer_norm_rms_epsilon", spec.rms_norm_eps);
  if (head_dim * spec.num_heads != spec.hidden_size) {
    kv.u32("llama.attention.key_length", uint32_t(head_dim));
    kv.u32("llama.attention.value_length", uint32_t(head_dim));
  }
  kv.u32("llama.rope.dimension_count", uint32_t(head_dim));
  kv.u32("general.file_type", uint32_t(file_type));
  bool any_quant = false;
  for (const auto& t : ts) any_quant |= !is_float_type(t.type);
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
    out.put<uint32_t>(uint32_t(t.type));
    out.put<uint64_t>(offset);
    offset = align_up(offset + uint64_t(t.nbytes), plan.alignment);
  }
  out.pad_to(plan.alignment);
  out.buf.reserve(out.buf.size() + offset);
  for (const auto& t : ts) {
    const int64_t n = t.rows() * t.ne[0];
    const float* x = t.ptr();
    const size_t before = out.buf.size();
    if (t.type == gt::F32) {
      out.put_bytes(x, sizeof(float) * size_t(n));
    } else if (t.type == gt::F16) {
      for (int64_t i = 0; i < n; ++i) out.put<uint16_t>(float_to_half(x[i]));
    } else if (t.type == gt::BF16) {
      for (int64_t i = 0; i < n; ++i) out.put<uint16_t>(float_to_bf16(x[i]));
    } else {
      const auto q = *kquants::type_from_ggml(t.type);
      auto imp = plan.importance.find(t.name);
      const std::vector<uint8_t> bytes = kquants::quantize_tensor(
          q, x, t.rows(), t.ne[0], imp == plan.importance.end() ? nullptr : imp->second.data());
      out.put_bytes(bytes.data(), bytes.size());
    }
    QS_ASSERT(out.buf.size() - before == size_t(t.nbytes), t.name);
    out.pad_to(plan.alignment);
  }
  write_file_atomic(path, out.buf.data(), out.buf.size());
}

// ---- reader -----------------------------------------------------------------------------

namespace {

uint64_t min_value_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::BOOL:
      return 1;
    case GgufType::UINT16:
    case GgufType::INT16:
      return 2;
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::FLOAT32:
      return 4;
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::FLOAT64:
    case GgufType::STRING:
      return 8;  // a string is at least its u64 length
    case GgufType::ARRAY:
      return 12;
  }
  return 1;
}

bool known_value_type(uint32_t t) {
  return t <= 12;
}

bool is_int_type(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::UINT16:
    case GgufType::INT16:
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::BOOL:
      return true;
    default:
      return false;
  }
}

/// Reads one scalar of type t; integers go to i (and u for UINT64), floats to f, strings to s.
void read_scalar(ByteCursor& c, GgufType t, const std::string& what, int64_t& i, uint64_t& u,
                 double& f, std::string* s) {
  switch (t) {
    case GgufType::UINT8:
      i = c.get<uint8_t>(what);
      break;
    case GgufType::INT8:
      i = c.get<int8_t>(what);
      break;
    case GgufType::UINT16:
      i = c.get<uint16_t>(what);
      break;
    case GgufType::INT16:
      i = c.get<int16_t>(what);
      break;
    case GgufType::UINT32:
      i = c.get<uint32_t>(what);
      break;
    case GgufType::INT32:
      i = c.get<int32_t>(what);
      break;
    case GgufType::UINT64:
      u = c.get<uint64_t>(what);
      i = u > uint64_t(INT64_MAX) ? INT64_MAX : int64_t(u);
      break;
    case GgufType::INT64:
      i = c.get<int64_t>(what);
      break;
    case GgufType::FLOAT32:
      f = c.get<float>(what);
      break;
    case GgufType::FLOAT64:
      f = c.get<double>(what);
      break;
    case GgufType::BOOL:
      i = c.get<int8_t>(what) != 0;
      break;
    case GgufType::STRING:
      *s = c.get_str(what);
      break;
    case GgufType::ARRAY:
      QS_ASSERT(false);
      break;
  }
}

const char* value_type_name(GgufType t) {
  static const char* names[] = {"UINT8",  "INT8",    "UINT16", "INT16",  "UINT32",
                                "INT32",  "FLOAT32", "BOOL",   "STRING", "ARRAY",
                                "UINT64", "INT64",   "FLOAT64"};
  return uint32_t(t) <= 12 ? names[uint32_t(t)] : "?";
}

}  // namespace

GgufFile::GgufFile(const std::string& path) : file_(path) {
  const std::string& p = file_.path();
  ByteCursor c(file_.data(), file_.size(), p);
  c.need(4, "the magic");
  QS_THROW_IF_NOT(std::memcmp(file_.data(), "GGUF", 4) == 0, p,
                  ": byte 0: bad magic: not a GGUF file (expected 'GGUF')");
  c.get<uint32_t>("magic");
  version_ = c.get<uint32_t>("the version");
  QS_THROW_IF_NOT(version_ != 1, p,
                  ": byte 4: GGUF version 1 is not supported (32-bit counts; reconvert the model "
                  "with a current llama.cpp)");
  QS_THROW_IF_NOT((version_ & 0xffffu) != 0, p, ": byte 4: version field ", version_,
                  " looks byte-swapped: big-endian GGUF files are not supported");
  QS_THROW_IF_NOT(version_ == 2 || version_ == 3, p, ": byte 4: GGUF version ", version_,
                  " is not supported (qsweep reads versions 2 and 3)");
  const uint64_t n_tensors = c.get<uint64_t>("the tensor count");
  const uint64_t n_kv = c.get<uint64_t>("the metadata count");
  // Every KV takes at least 13 bytes (key length, type, 1-byte value), every tensor info 28.
  QS_THROW_IF_NOT(n_kv <= c.left() / 13, p, ": byte 16: metadata count ", n_kv,
                  " is impossible for a file of ", file_.size(), " bytes");
  QS_THROW_IF_NOT(n_tensors <= c.left() / 28, p, ": byte 8: tensor count ", n_tensors,
                  " is impossible for a file of ", file_.size(), " bytes");

  for (uint64_t k = 0; k < n_kv; ++k) {
    const uint64_t at = c.pos();
    std::string key = c.get_str(cat("key #", k));
    const std::string where = cat(p, ": byte ", at, ": key '", key, "'");
    QS_THROW_IF_NOT(!kv_index_.count(key), where, ": duplicate key");
    GgufValue v;
    const uint32_t type = c.get<uint32_t>(cat("the type of key '", key, "'"));
    QS_THROW_IF_NOT(known_value_type(type), where, ": unknown value type ", type);
    v.type = GgufType(type);
    const std::string what = cat("the value of key '", key, "'");
    if (v.type == GgufType::ARRAY) {
      const uint32_t et = c.get<uint32_t>(what + " (array type)");
      QS_THROW_IF_NOT(known_value_type(et), where, ": unknown array element type ", et);
      v.array_type = GgufType(et);
      QS_THROW_IF_NOT(v.array_type != GgufType::ARRAY, where, ": nested arrays are not supported");
      const uint64_t arr_at = c.pos();
      v.array_size = c.get<uint64_t>(what + " (array length)");
      QS_THROW_IF_NOT(v.array_size <= c.left() / min_value_size(v.array_type), p, ": byte ", arr_at,
                      ": key '", key, "': array length ", v.array_size, " of ",
                      value_type_name(v.array_type), " exceeds the ", c.left(),
                      " bytes left in the file");
      const size_t n = size_t(v.array_size);
      if (v.array_type == GgufType::STRING) {
        v.strings.resize(n);
        for (size_t e = 0; e < n; ++e) v.strings[e] = c.get_str(cat(what, "[", e, "]"));
      } else if (v.array_type == GgufType::FLOAT32 || v.array_type == GgufType::FLOAT64) {
        v.floats.resize(n);
        int64_t di;
        uint64_t du;
        for (size_t e = 0; e < n; ++e)
          read_scalar(c, v.array_type, what, di, du, v.floats[e], nullptr);
      } else {
        v.ints.resize(n);
        uint64_t du;
        double df;
        for (size_t e = 0; e < n; ++e)
          read_scalar(c, v.array_type, what, v.ints[e], du, df, nullptr);
      }
    } else {
      read_scalar(c, v.type, what, v.i, v.u, v.f, &v.s);
    }
    if (key == "general.alignment") {
      QS_THROW_IF_NOT(v.type == GgufType::UINT32, where, ": must be UINT32, found ",
                      value_type_name(v.type));
      QS_THROW_IF_NOT(v.i > 0 && std::has_single_bit(uint64_t(v.i)), where, ": alignment ", v.i,
                      " is not a power of two");
      alignment_ = uint32_t(v.i);
    }
    kv_index_[key] = kv_.size();
    kv_.emplace_back(std::move(key), std::move(v));
  }

  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.info_pos = c.pos();
    t.name = c.get_str(cat("the name of tensor #", k));
    const std::string where = cat(p, ": byte ", t.info_pos, ": tensor '", t.name, "'");
    QS_THROW_IF_NOT(t.name.size() <= kMaxNameLength, where, ": name longer than ", kMaxNameLength,
                    " bytes");
    QS_THROW_IF_NOT(!tensor_index_.count(t.name), where, ": duplicate tensor name");
    const uint32_t n_dims = c.get<uint32_t>(cat("tensor '", t.name, "' n_dims"));
    QS_THROW_IF_NOT(n_dims >= 1 && n_dims <= kMaxDims, where, ": n_dims ", n_dims, " is not in 1..",
                    kMaxDims);
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.get<uint64_t>(cat("tensor '", t.name, "' ne[", d, "]"));
      QS_THROW_IF_NOT(ne <= uint64_t(INT64_MAX), where, ": ne[", d, "] = ", ne, " is too large");
      t.ne.push_back(int64_t(ne));
      numel = mul_checked(numel, int64_t(ne), where + ": element count overflows");
    }
    t.numel = numel;
    t.ggml_type = int32_t(c.get<uint32_t>(cat("tensor '", t.name, "' type")));
    QS_THROW_IF_NOT(
        supported_type(t.ggml_type), where, ": ggml type ", t.ggml_type, " (",
        ggml_type_name(t.ggml_type), ") is ",
        ggml_type_name(t.ggml_type).starts_with("type ") ? "unknown" : "not supported by qsweep");
    t.offset = c.get<uint64_t>(cat("tensor '", t.name, "' offset"));
    const int64_t ne0 = t.ne[0];
    t.nbytes = uint64_t(tensor_bytes(t.ggml_type, ne0, ne0 == 0 ? 0 : numel / ne0, where));
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  data_offset_ = align_up(c.pos(), alignment_);
  uint64_t expected = 0;
  for (const GgufTensorInfo& t : tensors_) {
    const std::string where = cat(p, ": byte ", t.info_pos, ": tensor '", t.name, "'");
    QS_THROW_IF_NOT(t.offset == expected, where, ": data offset ", t.offset, ", expected ",
                    expected, " (tensors follow each other, each padded to the alignment ",
                    alignment_, ")");
    const int64_t end = add_checked(add_checked(int64_t(data_offset_), int64_t(t.offset), where),
                                    int64_t(t.nbytes), where + ": data end overflows");
    QS_THROW_IF_NOT(uint64_t(end) <= file_.size(), where, ": data [", data_offset_ + t.offset, ", ",
                    end, ") extends past the end of the file (", file_.size(),
                    " bytes): truncated");
    expected =
        uint64_t(add_checked(int64_t(t.offset), int64_t(align_up(t.nbytes, alignment_)), where));
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::optional<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  QS_THROW_IF_NOT(is_int_type(v->type) && v->type != GgufType::BOOL, path(), ": key '", key,
                  "': expected an integer, found ", value_type_name(v->type));
  return v->i;
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  QS_THROW_IF_NOT(v->type == GgufType::FLOAT32 || v->type == GgufType::FLOAT64, path(), ": key '",
                  key, "': expected a float, found ", value_type_name(v->type));
  return v->f;
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  QS_THROW_IF_NOT(v->type == GgufType::STRING, path(), ": key '", key,
                  "': expected a string, found ", value_type_name(v->type));
  return v->s;
}

std::optional<bool> GgufFile::get_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  QS_THROW_IF_NOT(v->type == GgufType::BOOL, path(), ": key '", key, "': expected a bool, found ",
                  value_type_name(v->type));
  return v->i != 0;
}

std::span<const uint8_t> GgufFile::data(const GgufTensorInfo& t) const {
  return {file_.data() + data_offset_ + t.offset, size_t(t.nbytes)};
}

std::vector<float> GgufFile::to_float(const GgufTensorInfo& t) const {
  const auto bytes = data(t);
  std::vector<float> out(size_t(t.numel));
  if (t.ggml_type == gt::F32) {
    std::memcpy(out.data(), bytes.data(), bytes.size());
  } else if (t.ggml_type == gt::F16 || t.ggml_type == gt::BF16) {
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      out[i] = t.ggml_type == gt::F16 ? half_to_float(h) : bf16_to_float(h);
    }
  } else if (t.numel > 0) {
    const auto q = *kquants::type_from_ggml(t.ggml_type);
    out = kquants::dequantize_tensor(q, bytes, t.numel / t.ne[0], t.ne[0]);
  }
  return out;
}

// ---- model ------------------------------------------------------------------------------

namespace {

int int_key(const GgufFile& f, const std::string& key, std::optional<int64_t> fallback = {}) {
  std::optional<int64_t> v = f.get_int(key);
  if (!v) v = fallback;
  QS_THROW_IF_NOT(v.has_value(), f.path(), ": required key '", key, "' is missing");
  QS_THROW_IF_NOT(*v >= 0 && *v <= INT32_MAX, f.path(), ": key '", key, "' = ", *v,
                  " is out of range");
  return int(*v);
}

}  // namespace

LoadedModel load_gguf(const std::string& path) {
  const GgufFile f(path);
  const std::string arch = f.get_string("general.architecture").value_or("");
  QS_THROW_IF_NOT(!arch.empty(), path, ": key 'general.architecture' is missing");
  QS_THROW_IF_NOT(arch == "llama", path, ": general.architecture '", arch,
                  "' is not supported (qsweep reads 'llama' GGUF files)");
  LoadedModel out;
  ModelSpec& s = out.spec;
  s.arch = Architecture::Llama;
  s.arch_name = "LlamaForCausalLM";
  s.hidden_size = int_key(f, "llama.embedding_length");
  s.num_layers = int_key(f, "llama.block_count");
  s.intermediate_size = int_key(f, "llama.feed_forward_length");
  s.num_heads = int_key(f, "llama.attention.head_count");
  s.num_kv_heads = int_key(f, "llama.attention.head_count_kv", s.num_heads);
  s.max_position_embeddings = int_key(f, "llama.context_length");
  QS_THROW_IF_NOT(s.num_heads > 0 && s.num_kv_heads > 0 && s.num_heads % s.num_kv_heads == 0, path,
                  ": head_count ", s.num_heads, " / head_count_kv ", s.num_kv_heads,
                  " is not a valid grouping");
  QS_THROW_IF_NOT(s.hidden_size > 0 && s.num_layers > 0 && s.intermediate_size > 0, path,
                  ": embedding_length, block_count and feed_forward_length must be positive");
  s.head_dim = int_key(f, "llama.attention.key_length", s.hidden_size / s.num_heads);
  QS_THROW_IF_NOT(int_key(f, "llama.attention.value_length", s.head_dim) == s.head_dim, path,
                  ": key 'llama.attention.value_length' differs from key_length (unsupported)");
  QS_THROW_IF_NOT(int_key(f, "llama.rope.dimension_count", s.head_dim) == s.head_dim, path,
                  ": key 'llama.rope.dimension_count' differs from the head size ", s.head_dim,
                  " (partial rotary embeddings are not supported)");
  const auto eps = f.get_float("llama.attention.layer_norm_rms_epsilon");
  QS_THROW_IF_NOT(eps.has_value(), path,
                  ": required key 'llama.attention.layer_norm_rms_epsilon' is missing");
  s.rms_norm_eps = float(*eps);
  s.rope_theta = f.get_float("llama.rope.freq_base").value_or(10000.0);
  if (auto scaling = f.get_string("llama.rope.scaling.type"))
    QS_THROW_IF_NOT(*scaling == "none", path, ": key 'llama.rope.scaling.type' = '", *scaling,
                    "': RoPE scaling is not supported");
  QS_THROW_IF_NOT(f.get_int("llama.expert_count").value_or(0) == 0, path,
                  ": key 'llama.expert_count': mixture-of-experts models are not supported");
  if (auto b = f.get_int("tokenizer.ggml.bos_token_id")) s.bos_token_id = int(*b);
  if (auto e = f.get_int("tokenizer.ggml.eos_token_id")) s.eos_token_id = int(*e);

  const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  QS_THROW_IF_NOT(embd && embd->ne.size() == 2, path, ": tensor 'token_embd.weight' is ",
                  embd ? "not 2-D" : "missing");
  QS_THROW_IF_NOT(embd->ne[0] == s.hidden_size && embd->ne[1] <= INT32_MAX, path,
                  ": tensor 'token_embd.weight' has ne[0] = ", embd->ne[0],
                  ", expected embedding_length ", s.hidden_size);
  s.vocab_size = int(embd->ne[1]);
  s.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  s.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  s.o_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;

  std::set<std::string> used;
  std::map<std::string, int> histogram;
  auto fetch = [&](const std::string& name, std::vector<int64_t> ne) {
    const GgufTensorInfo* t = f.find_tensor(name);
    QS_THROW_IF_NOT(t, path, ": tensor '", name, "' is missing");
    QS_THROW_IF_NOT(
        t->ne == ne, path, ": byte ", t->info_pos, ": tensor '", name, "' has ne = [",
        [&] {
          std::string d;
          for (auto x : t->ne) d += cat(d.empty() ? "" : ", ", x);
          return d;
        }(),
        "], expected [", ne[0], ne.size() > 1 ? cat(", ", ne[1]) : "", "]");
    used.insert(name);
    ++histogram[ggml_type_name(t->ggml_type)];
    std::vector<float> v = f.to_float(*t);
    for (float x : v)
      QS_THROW_IF_NOT(std::isfinite(x), path, ": tensor '", name, "' contains NaN or Inf");
    return v;
  };
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols) {
    const std::vector<float> v = fetch(name, {cols, rows});
    return MatrixRM(Eigen::Map<const MatrixRM>(v.data(), rows, cols));
  };
  auto vec = [&](const std::string& name, int64_t n) {
    const std::vector<float> v = fetch(name, {n});
    return VectorF(Eigen::Map<const VectorF>(v.data(), n));
  };
  const int64_t H = s.hidden_size, I = s.intermediate_size;
  const int64_t q_rows = int64_t(s.num_heads) * s.head_dim;
  const int64_t kv_rows = int64_t(s.num_kv_heads) * s.head_dim;
  ModelWeights& w = out.weights;
  w.embed = mat("token_embd.weight", s.vocab_size, H);
  w.layers.resize(size_t(s.num_layers));
  for (int l = 0; l < s.num_layers; ++l) {
    LayerWeights& L = w.layers[size_t(l)];
    const std::string b = cat("blk.", l, ".");
    L.attn_norm = vec(b + "attn_norm.weight", H);
    L.wq = gguf_unpermute_qk(mat(b + "attn_q.weight", q_rows, H), s.num_heads);
    L.wk = gguf_unpermute_qk(mat(b + "attn_k.weight", kv_rows, H), s.num_kv_heads);
    L.wv = mat(b + "attn_v.weight", kv_rows, H);
    L.wo = mat(b + "attn_output.weight", H, q_rows);
    if (s.qkv_bias) {
      L.bq = gguf_unpermute_qk(vec(b + "attn_q.bias", q_rows), s.num_heads);
      L.bk = gguf_unpermute_qk(vec(b + "attn_k.bias", kv_rows), s.num_kv_heads);
      L.bv = vec(b + "attn_v.bias", kv_rows);
    }
    if (s.o_bias) L.bo = vec(b + "attn_output.bias", H);
    L.mlp_norm = vec(b + "ffn_norm.weight", H);
    L.w_gate = mat(b + "ffn_gate.weight", I, H);
    L.w_up = mat(b + "ffn_up.weight", I, H);
    L.w_down = mat(b + "ffn_down.weight", H, I);
  }
  w.final_norm = vec("output_norm.weight", H);
  w.lm_head = s.tie_word_embeddings ? w.embed : mat("output.weight", s.vocab_size, H);
  for (const GgufTensorInfo& t : f.tensors())
    QS_THROW_IF_NOT(used.count(t.name), path, ": byte ", t.info_pos, ": tensor '", t.name,
                    "' is not part of a Llama model qsweep can run (unsupported feature)");

  out.format = "gguf";
  const int64_t ft = f.get_int("general.file_type").value_or(-1);
  auto fn = ftype_names().find(int32_t(ft));
  std::string d = cat("gguf ", fn != ftype_names().end() ? fn->second : cat("file_type ", ft), ":");
  std::vector<std::pair<int, std::string>> hist;
  for (auto& [name, n] : histogram) hist.emplace_back(n, name);
  std::stable_sort(hist.begin(), hist.end(), [](auto& a, auto& b) { return a.first > b.first; });
  for (size_t i = 0; i < hist.size(); ++i)
    d += cat(i ? ", " : " ", hist[i].first, " x ", hist[i].second);
  out.description = d;
  return out;
}

bool is_gguf_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

// ---- tokenizer --------------------------------------------------------------------------

namespace {

// Minimal protobuf encoding of sentencepiece's ModelProto (sentencepiece_model.proto):
// ModelProto { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2;
//              NormalizerSpec normalizer_spec = 3; }
// SentencePiece { string piece = 1; float score = 2; Type type = 3; }
// TrainerSpec { model_type = 3 (BPE = 2); vocab_size = 4; byte_fallback = 35;
//               unk_piece = 45; bos_piece = 46; eos_piece = 47; pad_piece = 48; }
// NormalizerSpec { name = 1; add_dummy_prefix = 3; remove_extra_whitespaces = 4;
//                  escape_whitespaces = 5; }
struct Proto {
  std::string b;
  void varint(uint64_t v) {
    while (v >= 0x80) {
      b.push_back(char(uint8_t(v) | 0x80));
      v >>= 7;
    }
    b.push_back(char(v));
  }
  void tag(int field, int wire) { varint(uint64_t(field) << 3 | uint64_t(wire)); }
  void bytes(int field, const std::string& s) {
    tag(field, 2);
    varint(s.size());
    b += s;
  }
  void uint(int field, uint64_t v) {
    tag(field, 0);
    varint(v);
  }
  void f32(int field, float f) {
    tag(field, 5);
    char c[4];
    std::memcpy(c, &f, 4);
    b.append(c, 4);
  }
};

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path) {
  const GgufFile f(path);
  const std::string model = f.get_string("tokenizer.ggml.model").value_or("");
  QS_THROW_IF_NOT(model == "llama", path, ": tokenizer.ggml.model '", model,
                  "' is not supported (qsweep rebuilds sentencepiece 'llama' vocabularies); "
                  "pass a tokenizer directory instead");
  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  const GgufValue* scores = f.find("tokenizer.ggml.scores");
  const GgufValue* types = f.find("tokenizer.ggml.token_type");
  QS_THROW_IF_NOT(
      tokens && tokens->type == GgufType::ARRAY && tokens->array_type == GgufType::STRING, path,
      ": key 'tokenizer.ggml.tokens' is missing or not an array of strings");
  const size_t n = tokens->strings.size();
  QS_THROW_IF_NOT(!scores || (scores->type == GgufType::ARRAY && scores->floats.size() == n), path,
                  ": key 'tokenizer.ggml.scores' is not an array of ", n, " floats");
  QS_THROW_IF_NOT(!types || (types->type == GgufType::ARRAY && types->ints.size() == n), path,
                  ": key 'tokenizer.ggml.token_type' is not an array of ", n, " integers");
  Proto m;
  int n_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    int type = types ? int(types->ints[i]) : kTokenNormal;
    QS_THROW_IF_NOT(type >= kTokenNormal && type <= kTokenByte, path,
                    ": key 'tokenizer.ggml.token_type'[", i, "] = ", type, " is not 1..6");
    n_bytes += type == kTokenByte;
    Proto piece;
    piece.bytes(1, tokens->strings[i]);
    piece.f32(2, scores ? float(scores->floats[i]) : 0.0f);
    piece.uint(3, uint64_t(type));
    m.bytes(1, piece.b);
  }
  auto piece_of = [&](const char* key) -> std::optional<std::string> {
    auto id = f.get_int(key);
    if (!id || *id < 0 || uint64_t(*id) >= n) return std::nullopt;
    return tokens->strings[size_t(*id)];
  };
  Proto trainer;
  trainer.uint(3, 2);  // BPE: llama.cpp's SPM tokenizer merges the best-scored pair first
  trainer.uint(4, n);
  trainer.uint(35, n_bytes == 256);
  if (auto p = piece_of("tokenizer.ggml.unknown_token_id")) trainer.bytes(45, *p);
  trainer.bytes(46, piece_of("tokenizer.ggml.bos_token_id").value_or(""));
  trainer.bytes(47, piece_of("tokenizer.ggml.eos_token_id").value_or(""));
  if (auto p = piece_of("tokenizer.ggml.padding_token_id")) trainer.bytes(48, *p);
  m.bytes(2, trainer.b);
  Proto norm;
  norm.bytes(1, "identity");
  norm.uint(3, f.get_bool("tokenizer.ggml.add_space_prefix").value_or(true));
  norm.uint(4, 0);
  norm.uint(5, 1);
  m.bytes(3, norm.b);
  return make_sentencepiece_tokenizer(
      m.b, f.get_bool("tokenizer.ggml.add_bos_token").value_or(true), path + " (GGUF vocabulary)");
}

}  // namespace qsweep
