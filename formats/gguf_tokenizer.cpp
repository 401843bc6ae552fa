// The GGUF tokenizer: sentencepiece vocabulary → tokenizer.ggml.* keys (writer side), and a
// sentencepiece model rebuilt from those keys (load_gguf_tokenizer).
#include <sentencepiece_processor.h>

#include <cstring>
#include <filesystem>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "formats/detail/gguf_internal.h"

namespace qsweep {
namespace fs = std::filesystem;
using namespace gguf_detail;

namespace {

constexpr int kTokenNormal = 1, kTokenUnknown = 2, kTokenControl = 3, kTokenUserDefined = 4,
              kTokenUnused = 5, kTokenByte = 6;

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

namespace gguf_detail {

void write_tokenizer_kv(KvWriter& kv, const std::string& dir, const ModelSpec& spec) {
  const std::string model_file = (fs::path(dir) / "tokenizer.model").string();
  if (!fs::exists(model_file) && fs::exists(fs::path(dir) / "tokenizer.json"))
    return write_bpe_tokenizer_kv(kv, dir, spec);
  QS_THROW_IF_NOT(fs::exists(model_file), model_file,
                  ": not found (nor tokenizer.json); GGUF export writes the model's tokenizer");
  sentencepiece::SentencePieceProcessor sp;
  const auto st = sp.LoadFromSerializedProto(read_text_file(model_file));  // regular file
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

}  // namespace gguf_detail

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path) {
  const GgufFile f(path);
  const std::string model = f.get_string("tokenizer.ggml.model").value_or("");
  if (model == "gpt2") return make_bpe_tokenizer_from_gguf(f);
  QS_THROW_IF_NOT(model == "llama", path, ": tokenizer.ggml.model '", model,
                  "' is not supported (qsweep rebuilds sentencepiece 'llama' and byte-level BPE "
                  "'gpt2' vocabularies); pass a tokenizer directory instead");
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
