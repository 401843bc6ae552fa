// The text side of a Hugging Face tokenizer.json (internal to model/): the normalizer
// (NFC/NFD/NFKC/NFKD through utf8proc) and the pre-tokenizer (Split regexes through PCRE2
// with UTF + UCP, so \p{L}, \p{N}, \s and the (?!\S) look-ahead behave as in HF's Onig/Rust
// regexes, and ByteLevel). Both are built from the JSON once and are then immutable.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace qsweep::bpe {

/// tokenizer.json "normalizer": null, NFC, NFD, NFKC, NFKD or a Sequence of them.
class Normalizer {
 public:
  /// `origin` names the file in errors.
  Normalizer(const nlohmann::json& j, const std::string& origin);
  bool identity() const { return forms_.empty(); }
  std::string apply(std::string_view text) const;
  /// "NFC", "" when none.
  std::string describe() const;

 private:
  std::vector<std::string> forms_;
};

/// tokenizer.json "pre_tokenizer": Split (Regex or String pattern, behavior Isolated or
/// Removed), ByteLevel (use_regex adds the GPT-2 split; it must be the last step) or a
/// Sequence of them. A ByteLevel step is required: only byte-level BPE is supported.
class PreTokenizer {
 public:
  PreTokenizer(const nlohmann::json& j, const std::string& origin);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;
  /// Appends the pre-tokens of `text` (views into it) to `out`, in order. Throws Error when
  /// `text` is not valid UTF-8.
  void split(std::string_view text, std::vector<std::string_view>& out) const;
  /// ByteLevel's add_prefix_space: every pre-token not starting with ' ' gets one.
  bool add_prefix_space() const { return add_prefix_space_; }

 private:
  struct Step;
  void add_split(const nlohmann::json& j, const std::string& where, const std::string& origin);
  std::vector<std::unique_ptr<Step>> steps_;
  bool add_prefix_space_ = false;
  bool byte_level_ = false;
};

}  // namespace qsweep::bpe
