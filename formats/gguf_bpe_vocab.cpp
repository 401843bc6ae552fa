// The GGUF byte-level BPE vocabulary (tokenizer.ggml.model "gpt2"): tokenizer.json →
// tokenizer.ggml.* keys as llama.cpp's convert_hf_to_gguf.py writes them (TextModel.
// get_vocab_base + _set_vocab_gpt2, and gguf-py/gguf/vocab.py SpecialVocab for the merges,
// special token ids and add_*_token flags), and a tokenizer rebuilt from those keys.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "formats/detail/gguf_internal.h"
#include "model/bpe_tokenizer.h"

namespace qsweep {
namespace fs = std::filesystem;
using nlohmann::json;

namespace gguf_detail {

namespace {

// gguf-py/gguf/constants.py TokenType.
constexpr int kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

// The pre-tokenizers llama.cpp names (src/llama-vocab.cpp: "llama-bpe" → LLAMA3 with
// ignore_merges, "qwen2" → QWEN2), by the Split regex their tokenizer.json files carry
// (llama.cpp's own copies are the same expressions with (?i:) spelled out) and the normalizer.
struct PreTokenizerName {
  const char* name;
  const char* regex;
  const char* normalizer;  ///< "" = none
  bool ignore_merges;
  bool add_bos_default;  ///< llama.cpp's add_bos for this pre type when the key is absent
};
constexpr PreTokenizerName kPreNames[] = {
    {"llama-bpe",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     "", true, true},
    {"qwen2",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     "NFC", false, false},
};

std::string known_pre_names() {
  std::string s;
  for (const auto& p : kPreNames) s += cat(s.empty() ? "" : ", ", p.name);
  return s;
}

const PreTokenizerName* pre_by_name(const std::string& name) {
  for (const auto& p : kPreNames)
    if (name == p.name) return &p;
  return nullptr;
}

/// The Split regex of a tokenizer.json pre_tokenizer (Sequence[Split, ByteLevel]), or "".
std::string split_regex(const json& pre) {
  if (!pre.is_object()) return "";
  if (pre.value("type", "") == "Split" && pre.contains("pattern") && pre["pattern"].is_object())
    return pre["pattern"].value("Regex", "");
  if (pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
      pre["pretokenizers"].is_array())
    for (const json& p : pre["pretokenizers"])
      if (std::string r = split_regex(p); !r.empty()) return r;
  return "";
}

std::string normalizer_name(const json& n) {
  return n.is_object() ? n.value("type", "") : "";
}

/// convert_hf_to_gguf.py TextModel.does_token_look_special.
bool looks_special(const std::string& t) {
  auto wrapped = [&](std::string_view a, std::string_view b) {
    return t.size() >= a.size() + b.size() && t.starts_with(a) && t.ends_with(b);
  };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") ||
         wrapped("<\xef\xbd\x9c", "\xef\xbd\x9c>") || wrapped("<unused", ">");
}

json read_json(const std::string& path) {
  try {
    return json::parse(read_text_file(path));
  } catch (const json::exception& e) {
    throw Error(cat(path, ": not valid JSON (", e.what(), ")"));
  }
}

}  // namespace

void write_bpe_tokenizer_kv(KvWriter& kv, const std::string& dir, const ModelSpec& spec) {
  const std::string file = (fs::path(dir) / "tokenizer.json").string();
  const json tj = read_json(file);
  QS_THROW_IF_NOT(tj.contains("model") && tj["model"].is_object() &&
                      tj["model"].value("type", "BPE") == "BPE" && tj["model"].contains("vocab") &&
                      tj["model"]["vocab"].is_object() && tj["model"].contains("merges") &&
                      tj["model"]["merges"].is_array(),
                  file, ": GGUF export needs a BPE model with 'vocab' and 'merges'");
  // Which llama.cpp pre-tokenizer (convert_hf_to_gguf.py get_vocab_base_pre names it from a
  // hash of the tokenizer's output; the Split regex and the normalizer decide that output).
  const std::string regex = split_regex(tj.value("pre_tokenizer", json()));
  const std::string norm = normalizer_name(tj.value("normalizer", json()));
  const PreTokenizerName* pre = nullptr;
  for (const auto& p : kPreNames)
    if (regex == p.regex && norm == p.normalizer) pre = &p;
  QS_THROW_IF_NOT(pre, file, ": pre_tokenizer Split regex / normalizer '", norm,
                  "' is not one llama.cpp names (qsweep exports ", known_pre_names(),
                  "); this tokenizer cannot be written to GGUF");

  // get_vocab_base: every id below vocab_size, added tokens CONTROL (special or looking
  // special) or USER_DEFINED, holes "[PAD<i>]" UNUSED.
  std::vector<std::string> tokens(size_t(spec.vocab_size));
  std::vector<int32_t> types(size_t(spec.vocab_size), -1);
  auto put = [&](int64_t id, const std::string& tok, int type) {
    QS_THROW_IF_NOT(id >= 0 && id < spec.vocab_size, file, ": token '", tok, "' has id ", id,
                    ", outside the model's vocab_size ", spec.vocab_size);
    tokens[size_t(id)] = tok;
    types[size_t(id)] = type;
  };
  for (const auto& [tok, id] : tj["model"]["vocab"].items()) {
    QS_THROW_IF_NOT(id.is_number_integer(), file, ": model.vocab['", tok, "'] is not an integer");
    put(id.get<int64_t>(), tok, kNormal);
  }
  json added = tj.value("added_tokens", json::array());
  QS_THROW_IF_NOT(added.is_array(), file, ": added_tokens is not an array");
  std::map<std::string, int64_t> added_ids;  // content → first id (SpecialVocab's lookup)
  for (const json& a : added) {
    QS_THROW_IF_NOT(a.is_object() && a.contains("id") && a["id"].is_number_integer() &&
                        a.contains("content") && a["content"].is_string(),
                    file, ": an added_tokens entry lacks an integer 'id' or a string 'content'");
    const std::string c = a["content"].get<std::string>();
    const bool special = a.value("special", false) || looks_special(c);
    put(a["id"].get<int64_t>(), c, special ? kControl : kUserDefined);
    added_ids.emplace(c, a["id"].get<int64_t>());
  }
  for (int i = 0; i < spec.vocab_size; ++i)
    if (types[size_t(i)] < 0) tokens[size_t(i)] = cat("[PAD", i, "]"), types[size_t(i)] = kUnused;

  // SpecialVocab._try_load_from_tokenizer_json: merges as "a b" (pairs joined, a space
  // inside a part written as U+0120).
  std::vector<std::string> merges;
  for (const json& m : tj["model"]["merges"]) {
    if (m.is_string()) {
      merges.push_back(m.get<std::string>());
      continue;
    }
    QS_THROW_IF_NOT(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), file,
                    ": model.merges entry ", merges.size(), " is neither \"a b\" nor [a, b]");
    std::string s;
    for (int k = 0; k < 2; ++k) {
      if (k) s += ' ';
      for (char c : m[size_t(k)].get<std::string>())
        s += c == ' ' ? std::string("\xc4\xa0") : std::string(1, c);
    }
    merges.push_back(std::move(s));
  }

  // SpecialVocab: ids from tokenizer_config.json's *_token (looked up among added_tokens),
  // then config.json's *_token_id; add_bos/add_eos from a TemplateProcessing post-processor,
  // overridden by tokenizer_config.json's add_*_token.
  const fs::path cfg_path = fs::path(dir) / "tokenizer_config.json";
  const json cfg = fs::exists(cfg_path) ? read_json(cfg_path.string()) : json();
  const char* kTypes[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
  std::vector<std::pair<std::string, int64_t>> ids;
  auto set_id = [&](const std::string& typ, const json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= spec.vocab_size)
      return;
    for (const auto& [t, _] : ids)
      if (t == typ) return;
    ids.emplace_back(typ, v.get<int64_t>());
  };
  std::map<std::string, bool> add_flags;
  std::string cfg_bos, cfg_eos;
  if (cfg.is_object()) {
    auto content = [&](const char* k) {
      const json v = cfg.value(k, json());
      return v.is_string() ? v.get<std::string>()
             : v.is_object() && v.value("content", json()).is_string()
                 ? v["content"].get<std::string>()
                 : std::string();
    };
    cfg_bos = content("bos_token");
    if (cfg_bos.empty()) cfg_bos = content("cls_token");
    cfg_eos = content("eos_token");
    if (cfg_eos.empty()) cfg_eos = content("sep_token");
  }
  const json post = tj.value("post_processor", json());
  if (post.is_object()) {
    const json procs = post.contains("processors") ? post["processors"] : json::array({post});
    for (const json& p : procs) {
      if (!p.is_object() || p.value("type", "") != "TemplateProcessing") continue;
      const json single = p.value("single", json::array());
      if (!single.is_array() || single.size() <= 1) continue;
      auto special_id = [](const json& item) {
        return item.is_object() && item.contains("SpecialToken")
                   ? item["SpecialToken"].value("id", std::string())
                   : std::string();
      };
      if (std::string first = special_id(single.front()); !first.empty()) {
        if (!cfg.is_object()) cfg_bos = first;
        add_flags["bos"] = first == cfg_bos;
      }
      if (std::string last = special_id(single.back()); !last.empty()) {
        if (!cfg.is_object()) cfg_eos = last;
        add_flags["eos"] = last == cfg_eos;
      }
    }
  }
  if (cfg.is_object()) {
    for (const char* typ : kTypes) {
      const json add = cfg.value(cat("add_", typ, "_token"), json());
      if (add.is_boolean()) add_flags[typ] = add.get<bool>();
      const json v = cfg.value(cat(typ, "_token"), json());
      const std::string c = v.is_string() ? v.get<std::string>()
                            : v.is_object() && v.value("content", json()).is_string()
                                ? v["content"].get<std::string>()
                                : std::string();
      if (c.empty()) continue;
      auto it = added_ids.find(c);
      if (it != added_ids.end()) set_id(typ, it->second);
    }
  }
  const fs::path config_path = fs::path(dir) / "config.json";
  if (fs::exists(config_path)) {
    const json c = read_json(config_path.string());
    for (const char* typ : kTypes) set_id(typ, c.value(cat(typ, "_token_id"), json()));
  }

  kv.str("tokenizer.ggml.model", "gpt2");
  kv.str("tokenizer.ggml.pre", pre->name);
  kv.arr_header("tokenizer.ggml.tokens", GgufType::STRING, tokens.size());
  for (const auto& t : tokens) kv.w.put_str(t);
  kv.arr_header("tokenizer.ggml.token_type", GgufType::INT32, types.size());
  for (int32_t t : types) kv.w.put(t);
  kv.arr_header("tokenizer.ggml.merges", GgufType::STRING, merges.size());
  for (const auto& m : merges) kv.w.put_str(m);
  // gguf-py/gguf/constants.py Keys.Tokenizer (sic "seperator").
  const std::map<std::string, const char*> id_keys = {
      {"bos", "tokenizer.ggml.bos_token_id"},     {"eos", "tokenizer.ggml.eos_token_id"},
      {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
      {"pad", "tokenizer.ggml.padding_token_id"}, {"cls", "tokenizer.ggml.cls_token_id"},
      {"mask", "tokenizer.ggml.mask_token_id"}};
  for (const auto& [typ, id] : ids) kv.u32(id_keys.at(typ), uint32_t(id));
  // Only bos, eos and sep have GGUFWriter add_add_*_token handlers.
  for (const char* typ : {"bos", "eos", "sep"})
    if (auto it = add_flags.find(typ); it != add_flags.end())
      kv.boolean(cat("tokenizer.ggml.add_", typ, "_token"), it->second);
  if (cfg.is_object() && cfg.value("chat_template", json()).is_string())
    kv.str("tokenizer.chat_template", cfg["chat_template"].get<std::string>());
}

std::unique_ptr<Tokenizer> make_bpe_tokenizer_from_gguf(const GgufFile& f) {
  const std::string& path = f.path();
  const std::string pre_name = f.get_string("tokenizer.ggml.pre").value_or("default");
  const PreTokenizerName* pre = pre_by_name(pre_name);
  QS_THROW_IF_NOT(pre, path, ": key 'tokenizer.ggml.pre' = '", pre_name,
                  "' is not a pre-tokenizer qsweep knows (", known_pre_names(),
                  "); pass the model's tokenizer directory instead");
  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  const GgufValue* types = f.find("tokenizer.ggml.token_type");
  const GgufValue* merges = f.find("tokenizer.ggml.merges");
  QS_THROW_IF_NOT(
      tokens && tokens->type == GgufType::ARRAY && tokens->array_type == GgufType::STRING, path,
      ": key 'tokenizer.ggml.tokens' is missing or not an array of strings");
  QS_THROW_IF_NOT(
      merges && merges->type == GgufType::ARRAY && merges->array_type == GgufType::STRING, path,
      ": key 'tokenizer.ggml.merges' is missing or not an array of strings");
  const size_t n = tokens->strings.size();
  QS_THROW_IF_NOT(!types || (types->type == GgufType::ARRAY && types->ints.size() == n), path,
                  ": key 'tokenizer.ggml.token_type' is not an array of ", n, " integers");
  // A tokenizer.json equivalent: NORMAL tokens form the BPE vocabulary, CONTROL and
  // USER_DEFINED ones are added tokens (special = CONTROL), UNUSED ones are left out.
  json vocab = json::object(), added = json::array();
  for (size_t i = 0; i < n; ++i) {
    const int type = types ? int(types->ints[i]) : kNormal;
    const std::string& t = tokens->strings[i];
    if (type == kNormal) {
      vocab[t] = i;
    } else if (type == kControl || type == kUserDefined) {
      added.push_back({{"id", i},
                       {"content", t},
                       {"special", type == kControl},
                       {"normalized", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"single_word", false}});
    }
  }
  const json byte_level = {{"type", "ByteLevel"},
                           {"add_prefix_space", false},
                           {"trim_offsets", false},
                           {"use_regex", false}};
  json tj = {{"model",
              {{"type", "BPE"},
               {"vocab", vocab},
               {"merges", merges->strings},
               {"ignore_merges", pre->ignore_merges},
               {"byte_fallback", false}}},
             {"added_tokens", added},
             {"normalizer", *pre->normalizer ? json{{"type", pre->normalizer}} : json()},
             {"pre_tokenizer",
              {{"type", "Sequence"},
               {"pretokenizers",
                {{{"type", "Split"},
                  {"pattern", {{"Regex", pre->regex}}},
                  {"behavior", "Isolated"},
                  {"invert", false}},
                 byte_level}}}},
             {"post_processor", nullptr},
             {"decoder", byte_level}};
  auto piece = [&](const char* key) -> json {
    auto id = f.get_int(key);
    if (!id || *id < 0 || uint64_t(*id) >= n) return nullptr;
    return tokens->strings[size_t(*id)];
  };
  // llama.cpp (llama-vocab.cpp): add_bos defaults per pre type, the key overrides it.
  const json cfg = {
      {"bos_token", piece("tokenizer.ggml.bos_token_id")},
      {"eos_token", piece("tokenizer.ggml.eos_token_id")},
      {"add_bos_token", f.get_bool("tokenizer.ggml.add_bos_token").value_or(pre->add_bos_default)}};
  return make_bpe_tokenizer(tj.dump(), cfg.dump(), path + " (GGUF vocabulary)");
}

}  // namespace gguf_detail
}  // namespace qsweep
