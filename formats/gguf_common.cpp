// GGUF helpers shared by the writer, the reader and the tokenizer: ggml type names and sizes,
// llama_ftype numbers, tensor names, the q/k row permutation.
#include "formats/detail/gguf_internal.h"

#include <map>

#include "quantizers/kquants/kquants.h"

namespace qsweep {
namespace gt = kquants::ggml_type;

namespace gguf_detail {

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

}  // namespace gguf_detail

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

namespace gguf_detail {

std::string gguf_arch(const ModelSpec& spec) {
  switch (spec.arch) {
    case Architecture::Llama:
    case Architecture::Mistral:
      QS_THROW_IF_NOT(!spec.qk_norm,
                      "GGUF export: a Llama model with q_norm/k_norm has no "
                      "llama.cpp architecture");
      return "llama";
    case Architecture::Qwen3:
      QS_THROW_IF_NOT(spec.qk_norm && !spec.qkv_bias && !spec.o_bias,
                      "GGUF export: llama.cpp's qwen3 has q_norm/k_norm and no attention biases");
      QS_THROW_IF_NOT(spec.rope_scaling.type == RopeScaling::Type::None,
                      "GGUF export: qwen3 with rope_scaling is not supported");
      return "qwen3";
    case Architecture::Qwen2:
      break;
  }
  throw Error(cat("GGUF export supports Llama, Mistral and Qwen3 models, not ", spec.arch_name));
}

}  // namespace gguf_detail

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

}  // namespace qsweep
