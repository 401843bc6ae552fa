// `qsweep tokenize` end to end: the reference ids of the shared tokenizers come back line by
// line, --add-special follows the tokenizer, bad lines exit 2 naming the line.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/mapped_file.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
using nlohmann::json;

struct CliRun {
  int status = -1;
  std::string out, err;
};

CliRun qsweep_tokenize(const std::string& args, const std::string& stdin_file = "/dev/null") {
  const std::string dir = test::make_temp_dir("tokenize_cli");
  const std::string cmd = std::string(QSWEEP_BINARY_DIR) + "/qsweep tokenize " + args + " >" + dir +
                          "/out 2>" + dir + "/err <" + stdin_file;
  const int rc = std::system(cmd.c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc), read_text_file(dir + "/out"),
          read_text_file(dir + "/err")};
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t nl; (nl = s.find('\n', at)) != std::string::npos; at = nl + 1)
    out.push_back(s.substr(at, nl - at));
  return out;
}

/// The first `n` reference records of a shared tokenizer, as {"text"} lines and expected ids.
std::pair<std::string, std::vector<std::vector<int>>> first_records(const std::string& name,
                                                                    size_t n) {
  const std::string tok_dir = test::shared_dir() + "/tokenizers/" + name;
  const std::string file = test::make_temp_dir("tokenize_in") + "/in.jsonl";
  std::ofstream out(file);
  std::vector<std::vector<int>> ids;
  // The edge cases come after the code lines: take from both ends.
  const auto all = lines_of(read_text_file(tok_dir + "/reference_ids.jsonl"));
  for (size_t i = 0; i < all.size(); ++i) {
    if (i >= n && i + n < all.size()) continue;
    const json j = json::parse(all[i]);
    out << json{{"text", j["text"]}}.dump() << "\n";
    ids.push_back(j["ids"].get<std::vector<int>>());
  }
  return {file, ids};
}

TEST(TokenizeCli, ReferenceIdsLineByLine) {
  for (const std::string name : {"llama3", "qwen3"}) {
    const auto [file, expected] = first_records(name, 20);
    for (const bool from_stdin : std::vector<bool>{false, true}) {
      if (from_stdin && name != "llama3") continue;  // stdin once is enough
      const std::string model = "--model " + test::shared_dir() + "/tokenizers/" + name;
      const CliRun r =
          from_stdin ? qsweep_tokenize(model, file) : qsweep_tokenize(model + " --jsonl " + file);
      ASSERT_EQ(r.status, 0) << r.err;
      const auto lines = lines_of(r.out);
      ASSERT_EQ(lines.size(), expected.size());
      for (size_t i = 0; i < lines.size(); ++i)
        EXPECT_EQ(json::parse(lines[i])["ids"].get<std::vector<int>>(), expected[i])
            << name << " line " << i + 1;
    }
  }
}

TEST(TokenizeCli, AddSpecialFollowsTheTokenizer) {
  const std::string file = test::make_temp_dir("tokenize_special") + "/in.jsonl";
  std::ofstream(file) << "{\"text\": \"Hello world\"}\n";
  // Llama-3's file adds no BOS even with special tokens (its post_processor is ByteLevel).
  const std::string l3 = "--model " + test::shared_dir() + "/tokenizers/llama3 --jsonl " + file;
  EXPECT_EQ(qsweep_tokenize(l3).out, "{\"ids\": [9906, 1917]}\n");
  EXPECT_EQ(qsweep_tokenize(l3 + " --add-special").out, "{\"ids\": [9906, 1917]}\n");
  // tinycode's sentencepiece model adds its BOS (id 1) only with --add-special.
  const std::string tc = "--model " + test::tinycode_dir() + " --jsonl " + file;
  const auto plain = json::parse(qsweep_tokenize(tc).out)["ids"].get<std::vector<int>>();
  const auto special =
      json::parse(qsweep_tokenize(tc + " --add-special").out)["ids"].get<std::vector<int>>();
  ASSERT_FALSE(plain.empty());
  EXPECT_NE(plain[0], 1);
  ASSERT_EQ(special.size(), plain.size() + 1);
  EXPECT_EQ(special[0], 1);
}

TEST(TokenizeCli, BadLinesExit2NamingTheLine) {
  const std::string dir = test::make_temp_dir("tokenize_bad");
  // The line checks do not depend on the tokenizer: tinycode's loads fastest.
  const std::string model = "--model " + test::tinycode_dir() + " --jsonl ";
  for (const auto& [content, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"{\"text\": \"a\"}\n{\"text\": \"b\"\n", "in.jsonl:2: not valid JSON"},
           {"{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"txt\": \"c\"}\n", "in.jsonl:3: no \"text\""},
           {"{\"text\": 5}\n", "in.jsonl:1: no \"text\" string"}}) {
    std::ofstream(dir + "/in.jsonl") << content;
    const CliRun r = qsweep_tokenize(model + dir + "/in.jsonl");
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.out, "");
  }
  const CliRun missing = qsweep_tokenize(model + dir + "/nope.jsonl");
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("nope.jsonl: cannot open"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace qsweep
