// Byte-level BPE from tokenizer.json against ids from an independent implementation
// (../shared/tokenizers/{llama3,qwen3}/reference_ids.jsonl, PROVENANCE.md there), the two
// merge forms, ignore_merges, special tokens in plain text, BOS/EOS and bad files.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "model/bpe_tokenizer.h"
#include "model/tokenizer.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

std::string tokenizer_dir(const std::string& name) {
  return test::shared_dir() + "/tokenizers/" + name;
}

/// Loaded once per name: the files are 9–11 MB of JSON.
const Tokenizer& shared_tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[name];
  if (!t) t = load_tokenizer(tokenizer_dir(name));
  return *t;
}

struct Record {
  std::string set, text;
  std::vector<int> ids;
};

std::vector<Record> reference(const std::string& name) {
  std::vector<Record> out;
  std::ifstream in(tokenizer_dir(name) + "/reference_ids.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    out.push_back({j["set"], j["text"], j["ids"].get<std::vector<int>>()});
  }
  return out;
}

class Reference : public ::testing::TestWithParam<std::string> {};

TEST_P(Reference, EveryRecordGivesItsIdsAndDecodesBack) {
  const Tokenizer& tok = shared_tokenizer(GetParam());
  const auto records = reference(GetParam());
  ASSERT_EQ(records.size(), 1048u);  // 48 edge cases + 1,000 code lines
  int wrong = 0, nfc_changed = 0;
  for (const auto& r : records) {
    const std::vector<int> ids = tok.encode(r.text, false);
    if (ids != r.ids && ++wrong <= 5) ADD_FAILURE() << r.set << " record: " << r.text;
    const std::string back = tok.decode(r.ids);
    if (back != r.text) {
      // Qwen3 normalizes to NFC: such text decodes to its NFC form (2 edge cases), which
      // tokenizes to the same ids.
      EXPECT_EQ(GetParam(), "qwen3") << r.text;
      EXPECT_EQ(tok.encode(back, false), r.ids) << r.text;
      ++nfc_changed;
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(nfc_changed, GetParam() == "qwen3" ? 2 : 0);
  if (GetParam() == "qwen3") {  // e + U+0301 COMBINING ACUTE → U+00E9
    EXPECT_EQ(tok.decode(tok.encode("e\u0301", false)), "\u00e9");
    EXPECT_EQ(tok.encode("e\u0301", false), tok.encode("\u00e9", false));
  }
}

INSTANTIATE_TEST_SUITE_P(BpeTokenizer, Reference, ::testing::Values("llama3", "qwen3"));

TEST(BpeTokenizer, SpecialTokensInPlainTextMapToTheirIds) {
  const Tokenizer& l3 = shared_tokenizer("llama3");
  // PROVENANCE.md: the reference library's ids for this text.
  EXPECT_EQ(l3.encode("<|begin_of_text|>Hello<|end_of_text|>", false),
            (std::vector<int>{128000, 9906, 128001}));
  EXPECT_EQ(l3.decode({128000, 9906, 128001}), "<|begin_of_text|>Hello<|end_of_text|>");
  const Tokenizer& q3 = shared_tokenizer("qwen3");
  EXPECT_EQ(q3.encode("<|im_start|>user\nhi<|im_end|>", false),
            (std::vector<int>{151644, 872, 198, 6023, 151645}));
  EXPECT_EQ(q3.encode("x<think>y", false)[1], 151667);  // a non-special added token
}

TEST(BpeTokenizer, BosAndEosFollowTheFiles) {
  // Neither file's post_processor adds a BOS; the configs name the BOS / EOS tokens.
  const Tokenizer& l3 = shared_tokenizer("llama3");
  EXPECT_FALSE(l3.add_bos_token());
  EXPECT_EQ(l3.bos_id(), 128000);
  EXPECT_EQ(l3.eos_id(), 128001);
  EXPECT_EQ(l3.vocab_size(), 128256);
  EXPECT_EQ(l3.encode("Hello world", false), (std::vector<int>{9906, 1917}));
  EXPECT_EQ(l3.encode("Hello world", true), (std::vector<int>{128000, 9906, 1917}));
  const Tokenizer& q3 = shared_tokenizer("qwen3");
  EXPECT_FALSE(q3.add_bos_token());
  EXPECT_EQ(q3.bos_id(), -1);
  EXPECT_EQ(q3.eos_id(), 151645);  // <|im_end|>
  EXPECT_EQ(q3.vocab_size(), 151669);
  EXPECT_EQ(q3.encode("Hello world", true), (std::vector<int>{9707, 1879}));
  EXPECT_EQ(q3.piece(9707), "Hello");
  EXPECT_THROW(q3.decode({151669}), Error);
}

/// The real tokenizer.json with its merges rewritten into the other form.
std::unique_ptr<Tokenizer> with_other_merge_form(const std::string& name) {
  json j = json::parse(read_text_file(tokenizer_dir(name) + "/tokenizer.json"));
  json merges = json::array();
  for (const json& m : j["model"]["merges"]) {
    if (m.is_string()) {
      const std::string s = m;
      const size_t sp = s.find(' ');
      merges.push_back(json::array({s.substr(0, sp), s.substr(sp + 1)}));
    } else {
      merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    }
  }
  EXPECT_NE(merges[0].is_string(), j["model"]["merges"][0].is_string());
  j["model"]["merges"] = merges;
  return make_bpe_tokenizer(j.dump(),
                            read_text_file(tokenizer_dir(name) + "/tokenizer_config.json"),
                            name + " with converted merges");
}

TEST(BpeTokenizer, StringAndPairMergeFormsGiveTheSameIds) {
  for (const std::string name : {"llama3", "qwen3"}) {
    const auto converted = with_other_merge_form(name);
    int wrong = 0;
    for (const auto& r : reference(name)) wrong += converted->encode(r.text, false) != r.ids;
    EXPECT_EQ(wrong, 0) << name;
  }
}

TEST(BpeTokenizer, IgnoreMergesEmitsAVocabularyPreTokenWhole) {
  // " hợp" is a Llama-3 token (100827) that the merges alone do not build: with
  // ignore_merges (the file's setting) it is one id, without it three.
  const Tokenizer& l3 = shared_tokenizer("llama3");
  EXPECT_EQ(l3.encode(" hợp", false), (std::vector<int>{100827}));
  json j = json::parse(read_text_file(tokenizer_dir("llama3") + "/tokenizer.json"));
  ASSERT_TRUE(j["model"]["ignore_merges"].get<bool>());
  j["model"]["ignore_merges"] = false;
  const auto off = make_bpe_tokenizer(j.dump(), "", "llama3 without ignore_merges");
  EXPECT_EQ(off->encode(" hợp", false), (std::vector<int>{305, 85400, 79}));
  EXPECT_EQ(off->decode({305, 85400, 79}), " hợp");
}

TEST(BpeTokenizer, TokenizerModelWinsOverTokenizerJson) {
  const std::string dir = test::make_temp_dir("both_tokenizers");
  fs::copy_file(test::tinycode_dir() + "/tokenizer.model", dir + "/tokenizer.model");
  fs::copy_file(tokenizer_dir("llama3") + "/tokenizer.json", dir + "/tokenizer.json");
  EXPECT_EQ(load_tokenizer(dir)->describe().rfind("sentencepiece", 0), 0u);
  fs::remove(dir + "/tokenizer.model");
  EXPECT_NE(load_tokenizer(dir)->describe().find("byte-level BPE"), std::string::npos);
}

// ---- a small byte-level tokenizer.json written here, for bad-file errors

json tiny_tokenizer() {
  json vocab = json::object();
  int next = 256, id = 0;
  for (int b = 0; b < 256; ++b) {  // GPT-2's byte → character table, written out again here
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    const int cp = printable ? b : next++;
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[s] = id++;
  }
  vocab["ab"] = id++;
  vocab["abc"] = id++;
  return {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b", "ab c"})}}},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"added_tokens", json::array({{{"id", 258}, {"content", "<eos>"}, {"special", true}}})}};
}

std::string error_of(const json& j) {
  const std::string dir = test::make_temp_dir("bad_tokenizer");
  std::ofstream(dir + "/tokenizer.json") << j.dump();
  try {
    load_tokenizer(dir);
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(dir + "/tokenizer.json"), std::string::npos) << what;
    return what;
  }
  ADD_FAILURE() << "no error for " << j.dump().substr(0, 200);
  return "";
}

TEST(BpeTokenizer, TinyFileWorks) {
  const std::string dir = test::make_temp_dir("tiny_tokenizer");
  std::ofstream(dir + "/tokenizer.json") << tiny_tokenizer().dump();
  const auto tok = load_tokenizer(dir);
  // "abc" and "ab" are merged, the space is byte 32's token (id 32 here), <eos> is added.
  EXPECT_EQ(tok->encode("abc ab<eos>", false), (std::vector<int>{257, 32, 256, 258}));
  EXPECT_EQ(tok->decode({257, 32, 256, 258}), "abc ab<eos>");
}

TEST(BpeTokenizer, AddedTokenFlagsAsHuggingFace) {
  // lstrip / rstrip take the whitespace beside the token into it; single_word matches only
  // between non-word characters (HF AddedToken).
  json j = tiny_tokenizer();
  j["added_tokens"].push_back({{"id", 259}, {"content", "<m>"}, {"lstrip", true}});
  j["added_tokens"].push_back({{"id", 260}, {"content", "<r>"}, {"rstrip", true}});
  j["added_tokens"].push_back({{"id", 261}, {"content", "<w>"}, {"single_word", true}});
  const auto tok = make_bpe_tokenizer(j.dump(), "", "flags fixture");
  EXPECT_EQ(tok->encode("ab <m>", false), (std::vector<int>{256, 259}));
  EXPECT_EQ(tok->encode("ab <r> ab", false), (std::vector<int>{256, 32, 260, 256}));
  EXPECT_EQ(tok->encode("a <w>.", false), (std::vector<int>{97, 32, 261, 46}));
  const auto glued = tok->encode("a<w>", false);
  EXPECT_EQ(std::count(glued.begin(), glued.end(), 261), 0);
}

TEST(BpeTokenizer, BadFilesNameTheFileAndTheKey) {
  json j = tiny_tokenizer();
  j.erase("model");
  EXPECT_NE(error_of(j).find("'model'"), std::string::npos);

  j = tiny_tokenizer();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({{{"type", "Whitespace"}}})}};
  const std::string pre = error_of(j);
  EXPECT_NE(pre.find("pre_tokenizer.pretokenizers[0].type 'Whitespace'"), std::string::npos) << pre;

  j = tiny_tokenizer();
  j["model"]["merges"] = json::array({"a b", "ab zz"});
  const std::string merge = error_of(j);
  EXPECT_NE(merge.find("model.merges[1] names 'zz'"), std::string::npos) << merge;

  j = tiny_tokenizer();
  j["model"]["merges"] = json::array({json::array({"a", "q"})});
  EXPECT_NE(error_of(j).find("makes 'aq'"), std::string::npos);

  j = tiny_tokenizer();
  j["model"]["type"] = "Unigram";
  EXPECT_NE(error_of(j).find("model.type 'Unigram'"), std::string::npos);

  j = tiny_tokenizer();
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  EXPECT_NE(error_of(j).find("pre_tokenizer.pattern does not compile"), std::string::npos);

  EXPECT_NE(error_of(json::parse("[1]")).find("not a tokenizer.json"), std::string::npos);
}

TEST(BpeTokenizer, InvalidUtf8TextIsAnError) {
  EXPECT_THROW(shared_tokenizer("qwen3").encode("abc \xff\xfe", false), Error);
  EXPECT_THROW(shared_tokenizer("llama3").encode("abc \xc3", false), Error);
}

}  // namespace
}  // namespace qsweep
