// What the GGUF writer, reader and tokenizer parts share (formats/gguf_*.cpp only).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "formats/detail/gguf_io.h"
#include "formats/gguf.h"

namespace qsweep::gguf_detail {

inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxDims = 4;       // GGML_MAX_DIMS
inline constexpr size_t kMaxNameLength = 63;  // GGML_MAX_NAME (64) minus the NUL

bool is_float_type(int32_t t);
/// "Q4_K", "F16", "IQ2_XS" (known but unsupported), or "type 77".
std::string ggml_type_name(int32_t t);
/// True for the types this library reads and writes (Q8_K is an intermediate type in ggml).
bool supported_type(int32_t t);
/// Bytes of a tensor of type t with ne0 values per row and `rows` rows; Error (with `where`)
/// when ne0 is not a multiple of the block size.
int64_t tensor_bytes(int32_t t, int64_t ne0, int64_t rows, const std::string& where);
uint64_t align_up(uint64_t x, uint64_t a);
/// llama_ftype numbers (llama.h) and their names.
const std::map<int32_t, const char*>& ftype_names();
/// llama_ftype of a uniform type (the "_S" mix for K-quants, as llama-quantize names them).
int32_t ftype_of(int32_t t);

/// Metadata key/value writer (the KV section of the header).
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

/// The tokenizer.ggml.* keys from the tokenizer of `dir`: sentencepiece tokenizer.model when
/// present (convert_hf_to_gguf's _create_vocab_sentencepiece), else byte-level BPE
/// tokenizer.json (write_bpe_tokenizer_kv).
void write_tokenizer_kv(KvWriter& kv, const std::string& dir, const ModelSpec& spec);
/// tokenizer.json → tokenizer.ggml.model "gpt2", pre, tokens, token_type, merges, special ids,
/// add_*_token, chat_template (convert_hf_to_gguf's _set_vocab_gpt2); Error when the
/// pre-tokenizer is not one llama.cpp names (llama-bpe, qwen2).
void write_bpe_tokenizer_kv(KvWriter& kv, const std::string& dir, const ModelSpec& spec);
/// The tokenizer of a "gpt2" GGUF vocabulary (gguf_bpe_vocab.cpp); Error naming the key for an
/// unknown tokenizer.ggml.pre.
std::unique_ptr<Tokenizer> make_bpe_tokenizer_from_gguf(const GgufFile& f);
/// "llama" or "qwen3": general.architecture and the metadata key prefix of `spec`.
std::string gguf_arch(const ModelSpec& spec);

}  // namespace qsweep::gguf_detail
