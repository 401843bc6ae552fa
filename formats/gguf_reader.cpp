// GGUF reader: GgufFile (validated on open), load_gguf, is_gguf_file.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "common/errors.h"
#include "common/half.h"
#include "formats/detail/gguf_internal.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep {
namespace fs = std::filesystem;
namespace gt = kquants::ggml_type;
using namespace gguf_detail;

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

/// A GGUF matrix tensor [rows, cols] as a WeightTensor over the mapped file: F32 a view,
/// F16/BF16 a half view, ggml block types a row decoder (kquants' dequantize_row). With
/// heads > 0 the llama q/k row permutation is undone in the decoder (HF row k is GGUF row
/// inv[k]), so no copy of the tensor is made.
WeightTensor gguf_weight(const std::shared_ptr<const GgufFile>& file, const GgufTensorInfo& t,
                         int64_t rows, int64_t cols, int heads) {
  const uint8_t* bytes = file->data(t).data();
  const int32_t type = t.ggml_type;
  std::shared_ptr<const void> keep = file;
  if (heads == 0 && type == gt::F32 && reinterpret_cast<uintptr_t>(bytes) % 4 == 0)
    return WeightTensor::f32_view(reinterpret_cast<const float*>(bytes), rows, cols, keep);
  if (heads == 0 && (type == gt::F16 || type == gt::BF16))
    return WeightTensor::half_view(type == gt::F16 ? WeightDType::F16 : WeightDType::BF16, bytes,
                                   rows, cols, keep);
  std::vector<int64_t> inv;  // HF row -> GGUF row
  if (heads > 0) {
    const std::vector<int64_t> src = gguf_qk_row_source(rows, heads);
    inv.resize(src.size());
    for (size_t r = 0; r < src.size(); ++r) inv[size_t(src[r])] = int64_t(r);
  }
  const size_t row_bytes = size_t(t.nbytes) / size_t(std::max<int64_t>(rows, 1));
  const auto q = kquants::type_from_ggml(type);
  // 16-bit rows (permuted q/k) widen as a half view's rows do (F16C, exact: #18's profile).
  WeightTensor half;
  if (type == gt::F16 || type == gt::BF16)
    half = WeightTensor::half_view(type == gt::F16 ? WeightDType::F16 : WeightDType::BF16, bytes,
                                   rows, cols, keep);
  auto decode_one = [file, bytes, type, q, row_bytes, cols, half](int64_t src_row, float* y) {
    const uint8_t* b = bytes + size_t(src_row) * row_bytes;
    if (type == gt::F32) {
      std::memcpy(y, b, size_t(cols) * 4);
    } else if (type == gt::F16 || type == gt::BF16) {
      half.decode_rows(src_row, 1, y);
    } else {
      kquants::dequantize_row(*q, b, y, cols);
    }
  };
  // Block types offer their blocks: off-host uploads take those in logical row order (#16),
  // the CPU's decode product also the q/k ones through the row map (#18). 16-bit q/k offer
  // their rows with the map too, for the CPU's fp16/bf16 GEMV (#18).
  auto rows_of = std::make_shared<const std::vector<int64_t>>(std::move(inv));
  GgmlBlocks blocks;
  if (q || (!rows_of->empty() && (type == gt::F16 || type == gt::BF16)))
    blocks = {int(type), bytes, size_t(t.nbytes), rows_of->empty() ? nullptr : rows_of->data()};
  auto decode = [decode_one, rows_of, cols](int64_t r0, int64_t n, float* out) {
    const std::vector<int64_t>& inv = *rows_of;
    for (int64_t i = 0; i < n; ++i)
      decode_one(inv.empty() ? r0 + i : inv[size_t(r0 + i)], out + i * cols);
  };
  return WeightTensor::quantized(rows, cols, size_t(t.nbytes), ggml_type_name(type),
                                 std::move(decode), blocks);
}

}  // namespace

LoadedModel load_gguf(const std::string& path) {
  const auto file = std::make_shared<const GgufFile>(path);
  const GgufFile& f = *file;
  const std::string arch = f.get_string("general.architecture").value_or("");
  QS_THROW_IF_NOT(!arch.empty(), path, ": key 'general.architecture' is missing");
  QS_THROW_IF_NOT(arch == "llama" || arch == "qwen3", path, ": general.architecture '", arch,
                  "' is not supported (qsweep reads 'llama' and 'qwen3' GGUF files)");
  const bool qwen3 = arch == "qwen3";
  const std::string a = arch + ".";
  LoadedModel out;
  ModelSpec& s = out.spec;
  s.arch = qwen3 ? Architecture::Qwen3 : Architecture::Llama;
  s.arch_name = qwen3 ? "Qwen3ForCausalLM" : "LlamaForCausalLM";
  s.qk_norm = qwen3;  // llama.cpp's qwen3 requires attn_q_norm / attn_k_norm
  s.hidden_size = int_key(f, a + "embedding_length");
  s.num_layers = int_key(f, a + "block_count");
  s.intermediate_size = int_key(f, a + "feed_forward_length");
  s.num_heads = int_key(f, a + "attention.head_count");
  s.num_kv_heads = int_key(f, a + "attention.head_count_kv", s.num_heads);
  s.max_position_embeddings = int_key(f, a + "context_length");
  QS_THROW_IF_NOT(s.num_heads > 0 && s.num_kv_heads > 0 && s.num_heads % s.num_kv_heads == 0, path,
                  ": head_count ", s.num_heads, " / head_count_kv ", s.num_kv_heads,
                  " is not a valid grouping");
  QS_THROW_IF_NOT(s.hidden_size > 0 && s.num_layers > 0 && s.intermediate_size > 0, path,
                  ": embedding_length, block_count and feed_forward_length must be positive");
  s.head_dim = int_key(f, a + "attention.key_length", s.hidden_size / s.num_heads);
  QS_THROW_IF_NOT(int_key(f, a + "attention.value_length", s.head_dim) == s.head_dim, path,
                  ": key '", a, "attention.value_length' differs from key_length (unsupported)");
  QS_THROW_IF_NOT(int_key(f, a + "rope.dimension_count", s.head_dim) == s.head_dim, path, ": key '",
                  a, "rope.dimension_count' differs from the head size ", s.head_dim,
                  " (partial rotary embeddings are not supported)");
  const auto eps = f.get_float(a + "attention.layer_norm_rms_epsilon");
  QS_THROW_IF_NOT(eps.has_value(), path, ": required key '", a,
                  "attention.layer_norm_rms_epsilon' is missing");
  QS_THROW_IF_NOT(std::isfinite(*eps) && *eps > 0 && *eps < 1, path, ": key '", a,
                  "attention.layer_norm_rms_epsilon' = ", *eps,
                  " must be a finite number in (0, 1)");
  s.rms_norm_eps = float(*eps);
  s.rope_theta = f.get_float(a + "rope.freq_base").value_or(10000.0);
  QS_THROW_IF_NOT(std::isfinite(s.rope_theta) && s.rope_theta >= 1 && s.rope_theta <= 1e12, path,
                  ": key '", a, "rope.freq_base' = ", s.rope_theta,
                  " must be a finite number in [1, 1e12]");
  // Every block holds at least 9 tensors: a block count the file cannot hold is refused
  // before anything is allocated per block.
  QS_THROW_IF_NOT(uint64_t(s.num_layers) * 9 <= f.tensors().size(), path, ": key '", a,
                  "block_count' = ", s.num_layers, " needs at least ", uint64_t(s.num_layers) * 9,
                  " tensors but the file has ", f.tensors().size());
  if (auto scaling = f.get_string(a + "rope.scaling.type"))
    QS_THROW_IF_NOT(*scaling == "none", path, ": key '", a, "rope.scaling.type' = '", *scaling,
                    "': RoPE scaling is not supported");
  QS_THROW_IF_NOT(f.get_int(a + "expert_count").value_or(0) == 0, path, ": key '", a,
                  "expert_count': mixture-of-experts models are not supported");
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
  QS_THROW_IF_NOT(!qwen3 || (!s.qkv_bias && !s.o_bias), path,
                  ": a qwen3 model has no attention biases");
  validate_model_spec(s, path);  // the same ranges as config.json (model/model_spec.h)

  std::set<std::string> used;
  std::map<std::string, int> histogram;
  auto find = [&](const std::string& name, std::vector<int64_t> ne) {
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
    return t;
  };
  auto fetch = [&](const std::string& name, std::vector<int64_t> ne) {
    std::vector<float> v = f.to_float(*find(name, ne));
    for (float x : v)
      QS_THROW_IF_NOT(std::isfinite(x), path, ": tensor '", name, "' contains NaN or Inf");
    return v;
  };
  // Matrices stay in the file's form (mapped); each is checked for NaN/Inf a row block at a
  // time, never widened whole.
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols, int heads = 0) {
    const GgufTensorInfo* t = find(name, {cols, rows});
    WeightTensor w = gguf_weight(file, *t, rows, cols, heads);
    const int64_t block = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(cols, 1));
    std::vector<float> buf(size_t(std::min(block, rows) * cols));
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      const int64_t n = std::min(block, rows - r0);
      w.decode_rows(r0, n, buf.data());
      for (int64_t i = 0; i < n * cols; ++i)
        QS_THROW_IF_NOT(std::isfinite(buf[size_t(i)]), path, ": tensor '", name,
                        "' contains NaN or Inf");
    }
    return w;
  };
  auto vec = [&](const std::string& name, int64_t n) {
    const std::vector<float> v = fetch(name, {n});
    return VectorF(Eigen::Map<const VectorF>(v.data(), n));
  };
  const int64_t H = s.hidden_size, I = s.intermediate_size;
  const int64_t q_rows = int64_t(s.num_heads) * s.head_dim;
  const int64_t kv_rows = int64_t(s.num_kv_heads) * s.head_dim;
  ModelWeights& w = out.weights;
  if (f.find_tensor("rope_freqs.weight")) {
    // llama.cpp divides each rotary pair's frequency by rope_freqs (Llama-3.1's llama3
    // scaling, written by convert_hf_to_gguf.py): the factors are the whole scaling.
    const VectorF v = vec("rope_freqs.weight", s.head_dim / 2);
    s.rope_scaling.type = RopeScaling::Type::Factors;
    s.rope_scaling.freq_factors.assign(v.data(), v.data() + v.size());
    for (float x : s.rope_scaling.freq_factors)
      QS_THROW_IF_NOT(x > 0, path, ": tensor 'rope_freqs.weight' holds ", x,
                      " (frequency factors must be positive)");
  }
  // Llama: q/k rows are in llama.cpp's pair order (convert_hf_to_gguf permutes them); qwen3
  // keeps HF's order.
  const int q_heads = qwen3 ? 0 : s.num_heads, k_heads = qwen3 ? 0 : s.num_kv_heads;
  auto unpermute = [](MatrixRM m, int heads) {
    return heads > 0 ? gguf_unpermute_qk(m, heads) : m;
  };
  w.embed = mat("token_embd.weight", s.vocab_size, H);
  w.layers.resize(size_t(s.num_layers));
  for (int l = 0; l < s.num_layers; ++l) {
    LayerWeights& L = w.layers[size_t(l)];
    const std::string b = cat("blk.", l, ".");
    L.attn_norm = vec(b + "attn_norm.weight", H);
    L.wq = mat(b + "attn_q.weight", q_rows, H, q_heads);
    L.wk = mat(b + "attn_k.weight", kv_rows, H, k_heads);
    L.wv = mat(b + "attn_v.weight", kv_rows, H);
    L.wo = mat(b + "attn_output.weight", H, q_rows);
    if (s.qkv_bias) {
      L.bq = unpermute(vec(b + "attn_q.bias", q_rows), q_heads);
      L.bk = unpermute(vec(b + "attn_k.bias", kv_rows), k_heads);
      L.bv = vec(b + "attn_v.bias", kv_rows);
    }
    if (s.o_bias) L.bo = vec(b + "attn_output.bias", H);
    if (s.qk_norm) {
      L.q_norm = vec(b + "attn_q_norm.weight", s.head_dim);
      L.k_norm = vec(b + "attn_k_norm.weight", s.head_dim);
    }
    L.mlp_norm = vec(b + "ffn_norm.weight", H);
    L.w_gate = mat(b + "ffn_gate.weight", I, H);
    L.w_up = mat(b + "ffn_up.weight", I, H);
    L.w_down = mat(b + "ffn_down.weight", H, I);
  }
  w.final_norm = vec("output_norm.weight", H);
  w.lm_head = s.tie_word_embeddings ? w.embed : mat("output.weight", s.vocab_size, H);
  for (const GgufTensorInfo& t : f.tensors())
    QS_THROW_IF_NOT(used.count(t.name), path, ": byte ", t.info_pos, ": tensor '", t.name,
                    "' is not part of a ", arch, " model qsweep can run (unsupported feature)");

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

}  // namespace qsweep
