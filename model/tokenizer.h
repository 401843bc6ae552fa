// Tokenizers behind one interface, so that callers never know which kind a
// model uses: sentencepiece `tokenizer.model` (Llama-1/2, Mistral, tinycode) honouring
// tokenizer_config.json, and byte-level BPE `tokenizer.json` (Llama-3, Qwen2/3;
// model/bpe_tokenizer.h). A directory with both keeps using tokenizer.model.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace qsweep {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// Token ids of `text`. A BOS is prepended when `add_bos` is true (the caller
  /// decides: prompts follow add_bos_token(), perplexity text is tokenized without).
  virtual std::vector<int> encode(const std::string& text, bool add_bos) const = 0;
  virtual std::string decode(const std::vector<int>& ids) const = 0;
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;  ///< -1 when the model has none
  virtual int eos_id() const = 0;
  /// tokenizer_config.json's add_bos_token (default true for Llama tokenizers).
  virtual bool add_bos_token() const = 0;
  /// The vocabulary piece of one id (e.g. "▁def", "<0x0A>").
  virtual std::string piece(int id) const = 0;
  /// "sentencepiece (bpe, 4096 pieces)"
  virtual std::string describe() const = 0;
};

/// A sentencepiece tokenizer from a serialized ModelProto (e.g. rebuilt from a
/// GGUF vocabulary); `origin` names where it came from in errors and describe().
std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const std::string& serialized_proto,
                                                        bool add_bos, const std::string& origin);

/// Loads the tokenizer of a Hugging Face model directory: tokenizer.model when present,
/// else tokenizer.json; throws Error naming the file when none is supported.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir);

}  // namespace qsweep
