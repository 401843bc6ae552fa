// Byte-level BPE from a Hugging Face tokenizer.json (Llama-3, Qwen2/2.5/3, GPT-2 style):
// the GPT-2 byte-to-unicode mapping, merges in the "a b" string form or the [a, b] pair form,
// model.ignore_merges, the normalizer and the Split/ByteLevel pre-tokenizer
// (model/bpe_pretokenizer.h), added tokens matched in plain text as HF does by default
// (split_special_tokens false: leftmost-longest, lstrip/rstrip/single_word/normalized
// honoured), byte-level decoding. BOS: the post_processor's TemplateProcessing prefix, else
// tokenizer_config.json's bos_token; add_bos_token(): tokenizer_config.json's add_bos_token
// when given, else whether the template prepends one.
#pragma once

#include <memory>
#include <string>

#include "model/tokenizer.h"

namespace qsweep {

/// From the texts of tokenizer.json and tokenizer_config.json (`config_json` may be empty);
/// `origin` names tokenizer.json in errors and describe().
std::unique_ptr<Tokenizer> make_bpe_tokenizer(const std::string& tokenizer_json,
                                              const std::string& config_json,
                                              const std::string& origin);

/// DIR/tokenizer.json (+ DIR/tokenizer_config.json when present).
std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::string& dir);

}  // namespace qsweep
