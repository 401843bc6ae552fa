// GGUF v3 (llama.cpp / ggml) writer and reader for general.architecture "llama" (Llama incl.
// Llama-3.1 rope_freqs, Mistral) and "qwen3" (gguf_writer.cpp, gguf_reader.cpp,
// gguf_tokenizer.cpp: sentencepiece vocabularies, gguf_bpe_vocab.cpp: byte-level BPE,
// gguf_common.cpp).
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
#include <functional>
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

/// One tensor as it goes into a GGUF file, already encoded (ggml blocks or F32/F16/BF16).
struct GgufTensorData {
  std::string name;
  std::vector<int64_t> ne;  ///< ggml order: ne[0] innermost
  int32_t ggml_type = 0;
  std::vector<uint8_t> bytes;
};

/// A tensor of a model in GGUF naming and row order (attn_q / attn_k rows permuted), read as
/// fp32 rows on demand: the seam through which writers see a model's weights, so that they
/// hold one tensor (or a chunk of its rows) at a time whatever the weights' stored form.
struct GgufSourceTensor {
  std::string name;
  std::vector<int64_t> ne;  ///< ggml order
  /// Writes rows [r0, r0 + n) in GGUF row order as fp32 to out (n × ne[0] values, row-major).
  /// Safe to call from several threads at once.
  std::function<void(int64_t r0, int64_t n, float* out)> read_rows;
  int64_t rows() const { return ne.size() == 2 ? ne[1] : 1; }
  bool two_d() const { return ne.size() == 2; }
  /// The whole tensor as fp32 (rows() × ne[0]).
  std::vector<float> to_vector() const;
};

/// Every tensor write_gguf writes for `spec`, in file order: rope_freqs (llama3 rope scaling),
/// token_embd, per layer attn_norm, attn_q(+bias), attn_k(+bias), attn_v(+bias),
/// attn_output(+bias), attn_q_norm and attn_k_norm (Qwen3), ffn_norm, ffn_gate, ffn_up,
/// ffn_down, then output_norm and output (absent when embeddings are tied). The readers point
/// into `w` (keep it alive); nothing is copied until rows are read.
std::vector<GgufSourceTensor> gguf_source_tensors(const ModelSpec& spec, const ModelWeights& w);
/// The 2-D tensors of gguf_source_tensors (GGUF names, row length ne[0]), in file order.
std::vector<kquants::MixTensor> gguf_weight_tensors(const ModelSpec& spec);
/// GGUF name of a linear layer's weight: "blk.3.ffn_down.weight".
std::string gguf_linear_name(int layer, LinearRole role);

/// F32, F16 and BF16 (the float ggml types) — encoded here; block types are not.
bool gguf_is_float_type(int32_t ggml_type);
/// `n` floats as F32, F16 or BF16 bytes; Error for any other type.
std::vector<uint8_t> gguf_encode_float(int32_t ggml_type, const float* x, int64_t n);

struct GgufWriteOptions {
  /// general.file_type (llama_ftype); -1 derives it from the most common 2-D type.
  int32_t file_type = -1;
  /// general.alignment; written as a key only when it differs from the default 32.
  uint32_t alignment = 32;
  /// general.name; empty = the model directory's base name, else "qsweep".
  std::string name;
};

/// Writes encoded tensors as a GGUF v3 file at `path` (atomically), with the llama.* metadata
/// of `spec`. `tensors` must be the model's tensors in gguf_source_tensors order (the 2-D
/// ones exactly gguf_weight_tensors(spec)), each holding as many bytes as its type and shape
/// take. `model_dir_for_tokenizer` is an HF directory whose sentencepiece tokenizer.model, or
/// else byte-level BPE tokenizer.json (+ tokenizer_config.json, config.json), becomes the
/// tokenizer.ggml.* keys as convert_hf_to_gguf.py writes them; empty writes no tokenizer keys.
/// Architectures Llama and Mistral without sliding window ("llama") and Qwen3 ("qwen3");
/// anything else throws. write_gguf_streamed writes the same bytes.
void write_gguf(const std::string& path, const ModelSpec& spec,
                const std::vector<GgufTensorData>& tensors,
                const std::string& model_dir_for_tokenizer, const GgufWriteOptions& options = {});

/// A tensor of a streamed GGUF: name, shape and type (its byte count follows from them).
struct GgufTensorSpec {
  std::string name;
  std::vector<int64_t> ne;  ///< ggml order: ne[0] innermost
  int32_t ggml_type = 0;
};

/// Tensor i's encoded bytes (exactly as many as its type and shape take). Called for
/// different i from several threads at once.
using GgufTensorEncoder = std::function<std::vector<uint8_t>(size_t i)>;

/// write_gguf without holding the tensors: checks every type and shape, writes the header and
/// tensor infos (offsets follow from type × shape), then each tensor's bytes as `encode`
/// yields them, in file order, into `path`.tmp.<pid>, renamed onto `path` at the end (removed
/// on any error). At most `max_in_flight` tensors are encoded (in parallel) or waiting to be
/// written at once. An encoder that returns the wrong byte count throws Error naming the
/// tensor; an encoder's Error propagates.
void write_gguf_streamed(const std::string& path, const ModelSpec& spec,
                         const std::vector<GgufTensorSpec>& tensors,
                         const GgufTensorEncoder& encode,
                         const std::string& model_dir_for_tokenizer,
                         const GgufWriteOptions& options = {}, int max_in_flight = 4);

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

/// Loads a "llama" or "qwen3" GGUF into fp32 HF-layout weights (llama q/k rows un-permuted;
/// rope_freqs → RopeScaling::Type::Factors; qwen3 → qk_norm).
/// format = "gguf", description = "gguf <file type>: <n> x <type>, ..." and `quantized` empty.
LoadedModel load_gguf(const std::string& path);

/// The tokenizer stored in a GGUF: for tokenizer.ggml.model "llama" a sentencepiece model
/// rebuilt from tokens / scores / token_type (BPE, byte fallback, identity normalization with
/// a dummy "▁" prefix — what llama.cpp's SPM tokenizer does); for "gpt2" the byte-level BPE
/// tokenizer of the vocabulary, merges and tokenizer.ggml.pre (llama-bpe, qwen2; others
/// refused).
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
