#include "model/bpe_tokenizer.h"

#include <utf8proc.h>
#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "model/bpe_pretokenizer.h"

namespace qsweep {
namespace fs = std::filesystem;

namespace {

using nlohmann::json;

/// Heterogeneous lookup: find(string_view) without building a std::string.
struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StrMap = std::unordered_map<std::string, V, StrHash, std::equal_to<>>;

std::string utf8_of(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

/// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes
/// to U+0100.. in byte order.
std::array<uint32_t, 256> byte_to_codepoint() {
  std::array<uint32_t, 256> cp{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    cp[b] = printable ? b : next++;
  }
  return cp;
}

bool is_word_char(std::string_view s, size_t at, bool before) {
  if (before) {
    if (at == 0) return false;
    size_t i = at - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    at = i;
  } else if (at >= s.size()) {
    return false;
  }
  utf8proc_int32_t cp = 0;
  utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + at),
                   static_cast<utf8proc_ssize_t>(s.size() - at), &cp);
  if (cp == '_') return true;
  const auto c = utf8proc_category(cp);
  return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
         (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

bool is_space(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r');
}

struct AddedToken {
  std::string content;
  int id = -1;
  bool lstrip = false, rstrip = false, single_word = false, normalized = false;
};

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(const json& j, const json& config, const std::string& origin,
               const std::string& config_origin);

  std::vector<int> encode(const std::string& text, bool add_bos) const override;
  std::string decode(const std::vector<int>& ids) const override;
  int vocab_size() const override { return static_cast<int>(tokens_.size()); }
  int bos_id() const override { return bos_; }
  int eos_id() const override { return eos_; }
  bool add_bos_token() const override { return add_bos_; }
  std::string piece(int id) const override {
    check_id(id);
    return tokens_[static_cast<size_t>(id)];
  }
  std::string describe() const override {
    const std::string norm = normalizer_.describe();
    return cat("byte-level BPE from ", origin_, " (", tokens_.size(), " tokens, ", merges_.size(),
               " merges", ignore_merges_ ? ", ignore_merges" : "", norm.empty() ? "" : ", ", norm,
               ")");
  }

 private:
  struct Merge {
    int rank;
    int id;
  };
  using AddedIndex = std::array<std::vector<int>, 256>;  // first byte → added tokens, longest first

  static uint64_t key(int a, int b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void check_id(int id) const {
    QS_THROW_IF_NOT(id >= 0 && id < vocab_size() && kind_[static_cast<size_t>(id)] != 0,
                    "token id ", id, " is not in the vocabulary of ", origin_, " (", vocab_size(),
                    " ids)");
  }
  void load_model(const json& model);
  void load_added(const json& j);
  void load_specials(const json& j, const json& config, const std::string& config_origin);
  int lookup(const std::string& content) const;
  template <typename OnText, typename OnId>
  void split_added(std::string_view text, const AddedIndex& index, OnText on_text,
                   OnId on_id) const;
  void encode_plain(std::string_view text, std::vector<int>& out) const;
  void bpe(std::string_view piece, std::vector<int>& out) const;
  void merge_word(std::vector<int>& word) const;

  std::string origin_;
  std::vector<std::string> tokens_;   // id → piece (byte-level form) or added content
  std::vector<std::string> decoded_;  // id → the bytes it decodes to
  std::vector<uint8_t> kind_;         // 0 no token, 1 model vocabulary, 2 added token
  StrMap<int> vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int, 256> byte_id_{};
  std::array<std::string, 256> byte_char_;
  bool ignore_merges_ = false;
  bpe::Normalizer normalizer_;
  bpe::PreTokenizer pre_;
  std::vector<AddedToken> added_;
  AddedIndex raw_index_, normalized_index_;
  bool has_normalized_added_ = false;
  int bos_ = -1, eos_ = -1;
  bool add_bos_ = false;

  static constexpr size_t kCacheMax = 1 << 18;
  mutable std::mutex cache_mu_;
  mutable StrMap<std::vector<int>> cache_;
};

BpeTokenizer::BpeTokenizer(const json& j, const json& config, const std::string& origin,
                           const std::string& config_origin)
    : origin_(origin),
      normalizer_(j.contains("normalizer") ? j["normalizer"] : json(), origin),
      pre_(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), origin) {
  load_model(j["model"]);
  load_added(j);
  if (j.contains("decoder") && !j["decoder"].is_null()) {
    const json& d = j["decoder"];
    QS_THROW_IF_NOT(d.is_object() && d.value("type", "") == "ByteLevel", origin, ": decoder.type '",
                    d.is_object() ? d.value("type", "") : "",
                    "' is not supported (qsweep decodes byte-level BPE: ByteLevel)");
  }
  load_specials(j, config, config_origin);
}

void BpeTokenizer::load_model(const json& m) {
  const std::string type = m.value("type", "BPE");
  QS_THROW_IF_NOT(type == "BPE", origin_, ": model.type '", type,
                  "' is not supported (qsweep reads BPE here; sentencepiece models need "
                  "tokenizer.model)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    QS_THROW_IF_NOT(!m.contains(k) || m[k].is_null() || m[k] == "", origin_, ": model.", k,
                    " is not supported (qsweep reads byte-level BPE without it)");
  QS_THROW_IF_NOT(!m.value("byte_fallback", false), origin_,
                  ": model.byte_fallback true is not supported (qsweep reads byte-level BPE)");
  QS_THROW_IF_NOT(!m.contains("dropout") || m["dropout"].is_null() ||
                      (m["dropout"].is_number() && m["dropout"].get<double>() == 0.0),
                  origin_, ": model.dropout is not supported (set it to null)");
  ignore_merges_ = m.value("ignore_merges", false);

  QS_THROW_IF_NOT(m.contains("vocab") && m["vocab"].is_object(), origin_,
                  ": key 'model.vocab' is missing (an object token → id)");
  vocab_.reserve(m["vocab"].size());
  for (const auto& [tok, v] : m["vocab"].items()) {
    QS_THROW_IF_NOT(
        v.is_number_integer() && v.get<long long>() >= 0 && v.get<long long>() < (1LL << 24),
        origin_, ": model.vocab['", tok, "'] is not an id in [0, 2^24)");
    const int id = v.get<int>();
    vocab_[tok] = id;
    if (static_cast<size_t>(id) >= tokens_.size()) {
      tokens_.resize(static_cast<size_t>(id) + 1);
      kind_.resize(static_cast<size_t>(id) + 1, 0);
    }
    tokens_[static_cast<size_t>(id)] = tok;
    kind_[static_cast<size_t>(id)] = 1;
  }

  const auto cp = byte_to_codepoint();
  for (size_t b = 0; b < 256; ++b) {
    byte_char_[b] = utf8_of(cp[b]);
    const auto it = vocab_.find(byte_char_[b]);
    QS_THROW_IF_NOT(it != vocab_.end(), origin_, ": model.vocab has no token for byte ", b, " ('",
                    byte_char_[b], "'); a byte-level BPE vocabulary holds all 256 bytes");
    byte_id_[b] = it->second;
  }

  QS_THROW_IF_NOT(m.contains("merges") && m["merges"].is_array(), origin_,
                  ": key 'model.merges' is missing (a list of \"a b\" strings or [a, b] pairs)");
  const json& merges = m["merges"];
  merges_.reserve(merges.size());
  std::string a, b;
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& e = merges[i];
    if (e.is_string()) {
      const auto& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      QS_THROW_IF_NOT(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos, origin_,
                      ": model.merges[", i, "] '", s, "' is not two tokens separated by a space");
      a.assign(s, 0, sp);
      b.assign(s, sp + 1);
    } else {
      QS_THROW_IF_NOT(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(),
                      origin_, ": model.merges[", i, "] is neither \"a b\" nor [\"a\", \"b\"]");
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    }
    const auto ia = vocab_.find(a), ib = vocab_.find(b), iab = vocab_.find(a + b);
    for (const auto& [it, t] : {std::pair{ia, &a}, std::pair{ib, &b}})
      QS_THROW_IF_NOT(it != vocab_.end(), origin_, ": model.merges[", i, "] names '", *t,
                      "', which is not in model.vocab (merges must name vocabulary tokens)");
    QS_THROW_IF_NOT(iab != vocab_.end(), origin_, ": model.merges[", i, "] makes '", a + b,
                    "', which is not in model.vocab");
    merges_.insert_or_assign(key(ia->second, ib->second), Merge{static_cast<int>(i), iab->second});
  }
}

void BpeTokenizer::load_added(const json& j) {
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    QS_THROW_IF_NOT(j["added_tokens"].is_array(), origin_, ": added_tokens is not a list");
    for (size_t i = 0; i < j["added_tokens"].size(); ++i) {
      const json& t = j["added_tokens"][i];
      QS_THROW_IF_NOT(t.is_object() && t.contains("id") && t["id"].is_number_integer() &&
                          t["id"].get<long long>() >= 0 && t["id"].get<long long>() < (1LL << 24) &&
                          t.contains("content") && t["content"].is_string() &&
                          !t["content"].get<std::string>().empty(),
                      origin_, ": added_tokens[", i,
                      "] needs an \"id\" in [0, 2^24) and a non-empty \"content\"");
      AddedToken a;
      a.content = t["content"].get<std::string>();
      a.id = t["id"].get<int>();
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      a.single_word = t.value("single_word", false);
      a.normalized = t.value("normalized", false);
      const auto id = static_cast<size_t>(a.id);
      if (id >= tokens_.size()) {
        tokens_.resize(id + 1);
        kind_.resize(id + 1, 0);
      }
      tokens_[id] = a.content;
      kind_[id] = 2;
      has_normalized_added_ |= a.normalized && !normalizer_.identity();
      added_.push_back(std::move(a));
    }
  }
  for (size_t k = 0; k < added_.size(); ++k) {
    const auto& a = added_[k];
    auto& index = a.normalized && !normalizer_.identity() ? normalized_index_ : raw_index_;
    index[static_cast<unsigned char>(a.content[0])].push_back(static_cast<int>(k));
  }
  for (auto* index : {&raw_index_, &normalized_index_})
    for (auto& list : *index)
      std::stable_sort(list.begin(), list.end(), [&](int x, int y) {
        return added_[static_cast<size_t>(x)].content.size() >
               added_[static_cast<size_t>(y)].content.size();
      });

  // What each id decodes to: HF's ByteLevel decoder maps every character back to its
  // byte, and keeps a token's own bytes when one of its characters is not a byte character.
  const auto cp = byte_to_codepoint();
  std::unordered_map<int32_t, char> char_byte;
  for (size_t b = 0; b < 256; ++b) char_byte[static_cast<int32_t>(cp[b])] = static_cast<char>(b);
  decoded_.resize(tokens_.size());
  for (size_t id = 0; id < tokens_.size(); ++id) {
    const std::string& t = tokens_[id];
    std::string out;
    size_t i = 0;
    while (i < t.size()) {
      utf8proc_int32_t c = -1;
      const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(t.data() + i),
                                      static_cast<utf8proc_ssize_t>(t.size() - i), &c);
      const auto it = n > 0 ? char_byte.find(c) : char_byte.end();
      if (it == char_byte.end()) {
        out = t;
        break;
      }
      out += it->second;
      i += static_cast<size_t>(n);
    }
    decoded_[id] = std::move(out);
  }
}

int BpeTokenizer::lookup(const std::string& content) const {
  for (const auto& a : added_)
    if (a.content == content) return a.id;
  const auto it = vocab_.find(content);
  return it == vocab_.end() ? -1 : it->second;
}

void BpeTokenizer::load_specials(const json& j, const json& config,
                                 const std::string& config_origin) {
  // The post-processor's template: the special tokens before $A are what HF adds.
  std::vector<int> prefix;
  bool has_template = false;
  const auto read_post = [&](const json& p, const std::string& where, auto& self) -> void {
    if (p.is_null()) return;
    const std::string type = p.is_object() ? p.value("type", "") : "";
    if (type == "Sequence") {
      QS_THROW_IF_NOT(p.contains("processors") && p["processors"].is_array(), origin_, ": ", where,
                      ".processors is missing");
      for (size_t i = 0; i < p["processors"].size(); ++i)
        self(p["processors"][i], cat(where, ".processors[", i, "]"), self);
    } else if (type == "TemplateProcessing") {
      has_template = true;
      QS_THROW_IF_NOT(p.contains("single") && p["single"].is_array(), origin_, ": ", where,
                      ".single is missing (the template of one sequence)");
      for (const json& item : p["single"]) {
        if (item.contains("Sequence")) break;
        QS_THROW_IF_NOT(item.contains("SpecialToken") && item["SpecialToken"].contains("id") &&
                            item["SpecialToken"]["id"].is_string(),
                        origin_, ": ", where,
                        ".single holds an item that is neither a "
                        "SpecialToken nor a Sequence");
        const std::string name = item["SpecialToken"]["id"].get<std::string>();
        const json* st = p.contains("special_tokens") && p["special_tokens"].contains(name)
                             ? &p["special_tokens"][name]
                             : nullptr;
        if (st && st->contains("ids") && (*st)["ids"].is_array()) {
          for (const json& id : (*st)["ids"]) prefix.push_back(id.get<int>());
        } else {
          const int id = lookup(name);
          QS_THROW_IF_NOT(id >= 0, origin_, ": ", where, " names the special token '", name,
                          "', which is not a token");
          prefix.push_back(id);
        }
      }
    } else {
      QS_THROW_IF_NOT(type == "ByteLevel", origin_, ": ", where, ".type '", type,
                      "' is not supported (qsweep reads ByteLevel, TemplateProcessing and "
                      "Sequence)");
    }
  };
  read_post(j.contains("post_processor") ? j["post_processor"] : json(), "post_processor",
            read_post);

  const auto config_token = [&](const char* k) -> int {
    if (!config.is_object() || !config.contains(k) || config[k].is_null()) return -1;
    const json& v = config[k];
    const std::string content = v.is_string() ? v.get<std::string>()
                                : v.is_object() && v.contains("content") && v["content"].is_string()
                                    ? v["content"].get<std::string>()
                                    : std::string();
    QS_THROW_IF_NOT(!content.empty(), config_origin, ": ", k,
                    " is neither a string nor {\"content\": ...}");
    const int id = lookup(content);
    QS_THROW_IF_NOT(id >= 0, config_origin, ": ", k, " '", content, "' is not a token of ",
                    origin_);
    return id;
  };
  for (const int id : prefix) check_id(id);
  bos_ = prefix.empty() ? config_token("bos_token") : prefix.front();
  eos_ = config_token("eos_token");
  add_bos_ = has_template && !prefix.empty();
  if (config.is_object() && config.contains("add_bos_token") &&
      config["add_bos_token"].is_boolean())
    add_bos_ = config["add_bos_token"].get<bool>() && bos_ >= 0;
}

template <typename OnText, typename OnId>
void BpeTokenizer::split_added(std::string_view text, const AddedIndex& index, OnText on_text,
                               OnId on_id) const {
  const size_t n = text.size();
  size_t start = 0, i = 0;
  while (i < n) {
    const AddedToken* hit = nullptr;
    for (const int k : index[static_cast<unsigned char>(text[i])]) {
      const AddedToken& a = added_[static_cast<size_t>(k)];
      if (a.content.size() > n - i ||
          std::memcmp(text.data() + i, a.content.data(), a.content.size()) != 0)
        continue;
      if (a.single_word &&
          (is_word_char(text, i, true) || is_word_char(text, i + a.content.size(), false)))
        continue;
      hit = &a;  // the longest token at the leftmost position
      break;
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t s = i, e = i + hit->content.size();
    if (hit->lstrip)
      while (s > start && is_space(text[s - 1])) --s;
    if (hit->rstrip)
      while (e < n && is_space(text[e])) ++e;
    if (s > start) on_text(text.substr(start, s - start));
    on_id(hit->id);
    start = i = e;
  }
  if (start < n) on_text(text.substr(start));
}

std::vector<int> BpeTokenizer::encode(const std::string& text, bool add_bos) const {
  std::vector<int> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_bos && bos_ >= 0) ids.push_back(bos_);
  const auto push_id = [&](int id) { ids.push_back(id); };
  split_added(
      text, raw_index_,
      [&](std::string_view segment) {
        if (normalizer_.identity()) return encode_plain(segment, ids);
        const std::string normalized = normalizer_.apply(segment);
        if (!has_normalized_added_) return encode_plain(normalized, ids);
        split_added(
            normalized, normalized_index_, [&](std::string_view s) { encode_plain(s, ids); },
            push_id);
      },
      push_id);
  return ids;
}

void BpeTokenizer::encode_plain(std::string_view text, std::vector<int>& out) const {
  std::vector<std::string_view> pieces;
  pre_.split(text, pieces);
  for (const auto& p : pieces) bpe(p, out);
}

void BpeTokenizer::bpe(std::string_view piece, std::vector<int>& out) const {
  if (piece.empty()) return;
  std::string prefixed;
  if (pre_.add_prefix_space() && piece[0] != ' ') {
    prefixed = cat(" ", piece);
    piece = prefixed;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    const auto it = cache_.find(piece);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int> word;
  if (ignore_merges_) {  // a pre-token that is itself a token is emitted whole
    std::string mapped;
    for (const char c : piece) mapped += byte_char_[static_cast<unsigned char>(c)];
    const auto it = vocab_.find(mapped);
    if (it != vocab_.end()) word.push_back(it->second);
  }
  if (word.empty()) {
    word.reserve(piece.size());
    for (const char c : piece) word.push_back(byte_id_[static_cast<unsigned char>(c)]);
    merge_word(word);
  }
  out.insert(out.end(), word.begin(), word.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kCacheMax) cache_.clear();
  cache_.emplace(std::string(piece), std::move(word));
}

void BpeTokenizer::merge_word(std::vector<int>& word) const {
  const int n = static_cast<int>(word.size());
  if (n < 2) return;
  // Symbols form a linked list; a min-heap holds candidate merges by (rank, position), so
  // the lowest-ranked pair is merged first and equal ranks leftmost first, as HF does.
  std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    prev[static_cast<size_t>(i)] = i - 1;
    next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  using Cand = std::pair<int, int>;  // rank, position
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
  const auto consider = [&](int pos) {
    if (pos < 0) return;
    const int nx = next[static_cast<size_t>(pos)];
    if (nx < 0) return;
    const auto it =
        merges_.find(key(word[static_cast<size_t>(pos)], word[static_cast<size_t>(nx)]));
    if (it != merges_.end()) heap.emplace(it->second.rank, pos);
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const auto [rank, pos] = heap.top();
    heap.pop();
    const auto p = static_cast<size_t>(pos);
    if (word[p] < 0 || next[p] < 0) continue;
    const auto q = static_cast<size_t>(next[p]);
    const auto it = merges_.find(key(word[p], word[q]));
    if (it == merges_.end() || it->second.rank != rank) continue;  // stale
    word[p] = it->second.id;
    word[q] = -1;
    next[p] = next[q];
    if (next[q] >= 0) prev[static_cast<size_t>(next[q])] = pos;
    consider(prev[p]);
    consider(pos);
  }
  word.erase(std::remove(word.begin(), word.end(), -1), word.end());
}

std::string BpeTokenizer::decode(const std::vector<int>& ids) const {
  std::string out;
  for (const int id : ids) {
    check_id(id);
    out += decoded_[static_cast<size_t>(id)];
  }
  return out;
}

json parse_json(const std::string& text, const std::string& origin) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(cat(origin, ": not valid JSON (", e.what(), ")"));
  }
}

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(const std::string& tokenizer_json,
                                              const std::string& config_json,
                                              const std::string& origin) {
  const std::string config_origin =
      (fs::path(origin).parent_path() / "tokenizer_config.json").string();
  const json j = parse_json(tokenizer_json, origin);
  QS_THROW_IF_NOT(j.is_object(), origin, ": not a tokenizer.json (expected a JSON object)");
  QS_THROW_IF_NOT(j.contains("model") && j["model"].is_object(), origin,
                  ": key 'model' is missing (a tokenizer.json holds model.type BPE, model.vocab "
                  "and model.merges)");
  const json config = config_json.empty() ? json() : parse_json(config_json, config_origin);
  try {
    return std::make_unique<BpeTokenizer>(j, config, origin, config_origin);
  } catch (const json::exception& e) {  // a value of the wrong JSON type
    throw Error(cat(origin, ": unexpected value (", e.what(), ")"));
  }
}

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::string& dir) {
  const fs::path tj = fs::path(dir) / "tokenizer.json";
  const fs::path cfg = fs::path(dir) / "tokenizer_config.json";
  return make_bpe_tokenizer(read_text_file(tj.string()),
                            fs::exists(cfg) ? read_text_file(cfg.string()) : std::string(),
                            tj.string());
}

}  // namespace qsweep
