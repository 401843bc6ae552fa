// GGUF v3 (llama.cpp / ggml) writer and reader for Llama-architecture models.
//
// Layout (little-endian), as ggml/src/gguf.cpp reads it:
//   u32 magic "GGUF" (bytes 47 47 55 46) | u32 version (3) | u64 tensor_count | u64 kv_count
//   kv_count × { string key | u32 value_type | value }   (string = u64 length + bytes, no NUL;
//       array = u32 element type + u64 count + elements; bool = 1 byte)
//   tensor_count × { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   zero padding to `general.alignment` (default 32), then the data section; every tensor's
//   offset is relative to the data section, a multiple of the alignment, and tensors follow each
//   other in info order, each padded to the alignment (ggml rejects anything else).
// ne[0] is the innermost dimension: an HF linear weight [out, in] is stored with
// ne = {in, out}, rows of `in` values back to back (quantized rows as ggml blocks).
//
// Tensor names and metadata follow llama.cpp's convert_hf_to_gguf.py (LlamaModel), including
// its permutation of the attn_q / attn_k rows (see gguf_qk_row_source). See docs/formats.md.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/mapped_file.h"
#include "formats/formats.h"
#include "model/model_spec.h"
#include "model/tokenizer.h"
#include "model/weights.h"
#include "quantizers/kquants/mixes.h"

namespace qsweep {

/// Which ggml type each tensor is stored as (ggml_type numbers, kquants::ggml_type::*).
/// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
/// A quantized type needs the row length (ne[0]) to be a multiple of its block size (32 or
/// 256); otherwise write_gguf throws naming the tensor (no silent fallback).
struct GgufTypePlan {
  int32_t weights = 1;  ///< 2-D tensors (token_embd, linears, output); default F16
  int32_t norms = 0;    ///< 1-D tensors (norms, biases); default F32
  /// Per-tensor overrides by GGUF name ("blk.3.ffn_down.weight"); win over the two above.
  std::map<std::string, int32_t> per_tensor;
  /// general.file_type (llama_ftype); -1 derives it from the most common 2-D type.
  int32_t file_type = -1;
  /// general.alignment; written as a key only when it differs from the default 32.
  uint32_t alignment = 32;
  /// general.name; empty = the model directory's base name, else "qsweep".
  std::string name;
  /// Importance matrix by GGUF name: one value per column (ne[0] = input feature) of that
  /// tensor, e.g. the mean of x² over calibration tokens. Quantized types weight their
  /// rounding error with it, as `llama-quantize --imatrix` does; tensors without an entry
  /// are quantized plainly. Column order is unaffected by the q/k row permutation.
  std::map<std::string, std::vector<float>> importance;

  int32_t type_for(const std::string& gguf_name, bool two_d) const;
};

/// The 2-D tensors write_gguf writes for `spec` (GGUF names, row length ne[0]), in file
/// order: token_embd, per layer attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up,
/// ffn_down, then output (absent when embeddings are tied).
std::vector<kquants::MixTensor> gguf_weight_tensors(const ModelSpec& spec);
/// GGUF name of a linear layer's weight: "blk.3.ffn_down.weight".
std::string gguf_linear_name(int layer, LinearRole role);

/// The type plan of a llama.cpp quantization mix (quantizers/kquants/mixes.h) for `spec`:
/// every 2-D tensor placed by the mix's rules, norms F32, general.file_type the mix's ftype.
/// `choices` (optional) receives each tensor's type and the rule that chose it.
GgufTypePlan gguf_mix_plan(kquants::Mix mix, const ModelSpec& spec, bool has_imatrix,
                           std::vector<kquants::MixChoice>* choices = nullptr);

/// Writes `w` as a GGUF v3 file at `path` (atomically). `model_dir_for_tokenizer` is an HF
/// directory whose sentencepiece tokenizer.model (and tokenizer_config.json) become the
/// tokenizer.ggml.* keys; empty writes no tokenizer keys. Architectures Llama and Mistral
/// without sliding window (general.architecture "llama"); anything else throws.
/// The whole file is assembled in memory before it is written (memory ≈ file size).
void write_gguf(const std::string& path, const ModelSpec& spec, const ModelWeights& w,
                const std::string& model_dir_for_tokenizer, const GgufTypePlan& plan = {});

/// What write_gguf_mix produced.
struct GgufMixSummary {
  std::vector<kquants::MixChoice> choices;  ///< every 2-D tensor's type and rule
  int64_t file_bytes = 0;
  double linear_bits_per_weight = 0;  ///< over the decoder linears only (as GPTQ/AWQ rows)
  double file_bits_per_weight = 0;    ///< file bytes × 8 / parameters (llama.cpp's figure)
};

/// Quantizes `w` with a llama.cpp mix and writes the GGUF (what `llama-quantize` does to an
/// F16 GGUF). `importance` (optional, from calibration's importance_matrix) weights each
/// linear's rounding error like `--imatrix`; token_embd and output get none, as with
/// llama-imatrix's default (no --process-output).
GgufMixSummary write_gguf_mix(
    const std::string& path, const ModelSpec& spec, const ModelWeights& w,
    const std::string& model_dir_for_tokenizer, kquants::Mix mix,
    const std::map<std::pair<int, LinearRole>, std::vector<float>>* importance = nullptr);

/// GGUF metadata value types (gguf_type).
enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

/// One metadata value. Integers (and bool) are held in `i` (uint64 above INT64_MAX in `u`),
/// floats in `f`, strings in `s`; arrays hold their elements the same way in `ints`,
/// `floats` or `strings` according to `array_type` (nested arrays are refused, as in ggml).
struct GgufValue {
  GgufType type = GgufType::UINT8;
  GgufType array_type = GgufType::UINT8;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  uint64_t array_size = 0;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  ///< ggml order: ne[0] innermost
  int32_t ggml_type = 0;
  uint64_t offset = 0;  ///< relative to the data section
  uint64_t nbytes = 0;
  int64_t numel = 0;
  uint64_t info_pos = 0;  ///< byte offset of this tensor's info in the file (for errors)
};

/// A GGUF file opened by mmap and validated completely on construction: magic, version 2 or 3,
/// every count and length bounded by the bytes left, known value and ggml types, dims (≤ 4,
/// overflow-checked product), alignment (power of two), each tensor's offset where ggml expects
/// it and its data inside the file. Every problem throws Error naming the file, the byte offset
/// and the key or tensor.
class GgufFile {
 public:
  explicit GgufFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  /// Keys in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* find(const std::string& key) const;
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  /// Typed getters: nullopt when the key is absent; Error when it has another type.
  std::optional<int64_t> get_int(const std::string& key) const;   ///< any integer type
  std::optional<double> get_float(const std::string& key) const;  ///< FLOAT32 / FLOAT64
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;

  /// The tensor's bytes (nbytes, inside the file).
  std::span<const uint8_t> data(const GgufTensorInfo& t) const;
  /// The tensor as fp32, ne[0] innermost (row-major [numel / ne[0], ne[0]]); F32, F16, BF16
  /// and the kquants block types.
  std::vector<float> to_float(const GgufTensorInfo& t) const;

 private:
  MappedFile file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

/// Loads a Llama-architecture GGUF into fp32 HF-layout weights (q/k rows un-permuted).
/// format = "gguf", description = "gguf <file type>: <n> x <type>, ..." and `quantized` empty.
LoadedModel load_gguf(const std::string& path);

/// The tokenizer stored in a GGUF (tokenizer.ggml.model "llama", i.e. sentencepiece): a
/// sentencepiece model rebuilt from tokens / scores / token_type (BPE, byte fallback, identity
/// normalization with a dummy "▁" prefix — what llama.cpp's SPM tokenizer does).
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path);

/// True for a path to a regular file (rather than a model directory) whose first bytes are
/// "GGUF".
bool is_gguf_file(const std::string& path);

/// convert_hf_to_gguf's q/k permutation (LlamaModel.permute): for a [rows, ...] tensor with
/// `n_head` heads of rows/n_head rows each, returns src such that gguf_row[r] = hf_row[src[r]]:
/// reshape(n_head, 2, half, ...).swapaxes(1, 2), i.e. GGUF row h·hd + 2j + i holds HF row
/// h·hd + i·half + j (i ∈ {0,1}, j < half = hd/2). Pass n_head for attn_q and n_head_kv for
/// attn_k. Throws unless rows is a multiple of 2·n_head.
std::vector<int64_t> gguf_qk_row_source(int64_t rows, int n_head);
/// HF [rows, cols] → GGUF row order, and back.
MatrixRM gguf_permute_qk(const MatrixRM& hf, int n_head);
MatrixRM gguf_unpermute_qk(const MatrixRM& gguf, int n_head);

}  // namespace qsweep
