#include "model/bpe_pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/errors.h"

namespace qsweep::bpe {

namespace {

// GPT-2's split, used by ByteLevel when use_regex is true.
const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string type_of(const nlohmann::json& j, const std::string& where, const std::string& origin) {
  QS_THROW_IF_NOT(j.is_object() && j.contains("type") && j["type"].is_string(), origin, ": ", where,
                  ".type is missing (expected an object with a \"type\" string)");
  return j["type"].get<std::string>();
}

bool all_ascii(std::string_view s) {
  for (const char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

void check_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    utf8proc_int32_t cp = 0;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                    static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    QS_THROW_IF_NOT(n > 0, "text is not valid UTF-8 (byte offset ", i,
                    "); tokenizers take UTF-8 text");
    i += static_cast<size_t>(n);
  }
}

}  // namespace

// ---------------------------------------------------------------- Normalizer

Normalizer::Normalizer(const nlohmann::json& j, const std::string& origin) {
  if (j.is_null()) return;
  const std::string type = type_of(j, "normalizer", origin);
  if (type == "Sequence") {
    QS_THROW_IF_NOT(j.contains("normalizers") && j["normalizers"].is_array(), origin,
                    ": normalizer.normalizers is missing (a Sequence lists its normalizers)");
    for (size_t i = 0; i < j["normalizers"].size(); ++i) {
      const std::string t =
          type_of(j["normalizers"][i], cat("normalizer.normalizers[", i, "]"), origin);
      QS_THROW_IF_NOT(t == "NFC" || t == "NFD" || t == "NFKC" || t == "NFKD", origin,
                      ": normalizer.normalizers[", i, "].type '", t,
                      "' is not supported (qsweep reads NFC, NFD, NFKC, NFKD)");
      forms_.push_back(t);
    }
    return;
  }
  QS_THROW_IF_NOT(type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD", origin,
                  ": normalizer.type '", type,
                  "' is not supported (qsweep reads NFC, NFD, NFKC, NFKD or a Sequence of them)");
  forms_.push_back(type);
}

std::string Normalizer::apply(std::string_view text) const {
  std::string s(text);
  if (all_ascii(s)) return s;  // every normal form leaves ASCII unchanged
  for (const auto& f : forms_) {
    int opt = UTF8PROC_STABLE;
    opt |= (f == "NFC" || f == "NFKC") ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
    if (f[2] == 'K') opt |= UTF8PROC_COMPAT;
    utf8proc_uint8_t* out = nullptr;
    const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                static_cast<utf8proc_ssize_t>(s.size()), &out,
                                static_cast<utf8proc_option_t>(opt));
    if (n < 0) {
      std::free(out);
      check_utf8(s);  // names the offset
      throw Error(cat("normalizer ", f, " failed: ", utf8proc_errmsg(n)));
    }
    s.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
    std::free(out);
  }
  return s;
}

std::string Normalizer::describe() const {
  std::string s;
  for (const auto& f : forms_) s += (s.empty() ? "" : "+") + f;
  return s;
}

// ---------------------------------------------------------------- PreTokenizer

struct PreTokenizer::Step {
  pcre2_code* code = nullptr;
  bool remove = false;  // behavior Removed: matches are dropped
  ~Step() { pcre2_code_free(code); }
};

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::add_split(const nlohmann::json& j, const std::string& where,
                             const std::string& origin) {
  QS_THROW_IF_NOT(j.contains("pattern") && j["pattern"].is_object(), origin, ": ", where,
                  ".pattern is missing (expected {\"Regex\": ...} or {\"String\": ...})");
  const auto& p = j["pattern"];
  std::string pattern;
  uint32_t options = PCRE2_UTF | PCRE2_UCP;
  if (p.contains("Regex") && p["Regex"].is_string()) {
    pattern = p["Regex"].get<std::string>();
  } else if (p.contains("String") && p["String"].is_string()) {
    pattern = p["String"].get<std::string>();
    options |= PCRE2_LITERAL;
  } else {
    throw Error(cat(origin, ": ", where,
                    ".pattern has neither a \"Regex\" nor a \"String\" (the two HF forms)"));
  }
  const std::string behavior =
      j.contains("behavior") && j["behavior"].is_string() ? j["behavior"].get<std::string>() : "";
  QS_THROW_IF_NOT(behavior == "Isolated" || behavior == "Removed", origin, ": ", where,
                  ".behavior '", behavior,
                  "' is not supported (qsweep reads Isolated and Removed)");
  QS_THROW_IF_NOT(!j.value("invert", false), origin, ": ", where,
                  ".invert true is not supported (qsweep reads invert false)");
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  auto step = std::make_unique<Step>();
  step->remove = behavior == "Removed";
  step->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                             &err, &err_offset, nullptr);
  if (!step->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw Error(cat(origin, ": ", where, ".pattern does not compile at offset ", err_offset, " (",
                    reinterpret_cast<const char*>(msg), ")"));
  }
  pcre2_jit_compile(step->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter
  steps_.push_back(std::move(step));
}

PreTokenizer::PreTokenizer(const nlohmann::json& j, const std::string& origin) {
  QS_THROW_IF_NOT(!j.is_null(), origin,
                  ": pre_tokenizer is null; qsweep reads byte-level BPE (a ByteLevel "
                  "pre_tokenizer)");
  std::vector<std::pair<const nlohmann::json*, std::string>> list;
  const std::string type = type_of(j, "pre_tokenizer", origin);
  if (type == "Sequence") {
    QS_THROW_IF_NOT(j.contains("pretokenizers") && j["pretokenizers"].is_array(), origin,
                    ": pre_tokenizer.pretokenizers is missing (a Sequence lists its steps)");
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i)
      list.emplace_back(&j["pretokenizers"][i], cat("pre_tokenizer.pretokenizers[", i, "]"));
  } else {
    list.emplace_back(&j, "pre_tokenizer");
  }
  for (const auto& [step, where] : list) {
    const std::string t = type_of(*step, where, origin);
    QS_THROW_IF_NOT(!byte_level_, origin, ": ", where,
                    " follows the ByteLevel step; qsweep reads ByteLevel as the last step");
    if (t == "Split") {
      add_split(*step, where, origin);
    } else if (t == "ByteLevel") {
      byte_level_ = true;
      add_prefix_space_ = step->value("add_prefix_space", false);
      if (step->value("use_regex", true))
        add_split({{"pattern", {{"Regex", kGpt2Pattern}}}, {"behavior", "Isolated"}}, where,
                  origin);
    } else {
      throw Error(cat(origin, ": ", where, ".type '", t,
                      "' is not supported (qsweep reads Split, ByteLevel and Sequence)"));
    }
  }
  QS_THROW_IF_NOT(byte_level_, origin,
                  ": pre_tokenizer has no ByteLevel step; qsweep reads byte-level BPE only");
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  if (steps_.empty()) {
    check_utf8(text);
    if (!text.empty()) out.push_back(text);
    return;
  }
  std::vector<std::string_view> cur{text}, next;
  pcre2_match_data* md = pcre2_match_data_create(4, nullptr);
  try {
    for (const auto& step : steps_) {
      next.clear();
      for (const std::string_view piece : cur) {
        const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
        const size_t n = piece.size();
        size_t off = 0, last = 0;
        uint32_t opts = 0;  // the first call checks the UTF-8
        while (off <= n) {
          const int rc = pcre2_match(step->code, subject, n, off, opts, md, nullptr);
          if (rc == PCRE2_ERROR_NOMATCH) break;
          if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21)
            throw Error(cat("text is not valid UTF-8 (byte offset ",
                            (piece.data() - text.data()) + pcre2_get_startchar(md),
                            "); tokenizers take UTF-8 text"));
          QS_THROW_IF_NOT(rc >= 0, "pre-tokenizer regex failed (PCRE2 error ", rc, ")");
          opts = PCRE2_NO_UTF_CHECK;
          const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
          const size_t s = ov[0], e = ov[1];
          if (s > last) next.push_back(piece.substr(last, s - last));
          if (e > s) {
            if (!step->remove) next.push_back(piece.substr(s, e - s));
            last = off = e;
          } else {  // an empty match: step over one character
            last = s;
            if (s >= n) break;
            off = s + 1;
            while (off < n && (static_cast<unsigned char>(piece[off]) & 0xC0) == 0x80) ++off;
          }
        }
        if (last < n) next.push_back(piece.substr(last));
      }
      std::swap(cur, next);
    }
  } catch (...) {
    pcre2_match_data_free(md);
    throw;
  }
  pcre2_match_data_free(md);
  out.insert(out.end(), cur.begin(), cur.end());
}

}  // namespace qsweep::bpe
