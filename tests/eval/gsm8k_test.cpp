// GSM8K: answer extraction, the loader (fixture and the real files), the exact
// few-shot prompt, and accuracy with scripted generators.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "common/errors.h"
#include "eval/gsm8k.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;

TEST(Gsm8k, ExtractsTheLastNumber) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"She makes 9 * 2 = $18 every day.\n#### 18", "18"},
      {"The answer is 18.", "18"},
      {"Total: $1,234.50.", "1234.50"},
      {"He lost -3 points", "-3"},
      {"He owes -$7", "-7"},
      {"5 - 3 = 2", "2"},
      {"3.5 hours", "3.5"},
      {"1,2,3", "3"},
      {"12,34", "34"},
      {"10,000,000 stars", "10000000"},
      {"x = 7.\n\n", "7"},
      {"ratio 3/4", "4"},
      {"#### 70000", "70000"},
      {"costs 1,000 then 2,50", "50"},
  };
  for (const auto& [text, want] : cases) {
    const auto got = extract_last_number(text);
    ASSERT_TRUE(got.has_value()) << text;
    EXPECT_EQ(*got, want) << text;
  }
  EXPECT_FALSE(extract_last_number("no digits here.").has_value());
  EXPECT_FALSE(extract_last_number("").has_value());
  EXPECT_TRUE(gsm8k_numbers_equal("18", "18.0"));
  EXPECT_TRUE(gsm8k_numbers_equal("1234.50", "1234.5"));
  EXPECT_TRUE(gsm8k_numbers_equal("-3", "-3.00"));
  EXPECT_FALSE(gsm8k_numbers_equal("18", "18.5"));
  EXPECT_FALSE(gsm8k_numbers_equal("18", "-18"));
  EXPECT_FALSE(gsm8k_numbers_equal("", "18"));
}

void write_file(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << s;
}

std::string make_fixture() {
  const fs::path d = test::make_temp_dir("gsm8k");
  write_file(
      d / "test.jsonl",
      R"({"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=<<3+4=7>>7\n#### 7"})"
      "\n"
      R"({"question": "A pen costs $1,200. Two pens?", "answer": "2*1200=2400\n#### 2,400"})"
      "\n\n"
      R"({"question": "Half of 5?", "answer": "5/2=2.5\n#### 2.5"})"
      "\n");
  write_file(d / "train.jsonl", R"({"question": "Q one?", "answer": "step\n#### 1"})"
                                "\n"
                                R"({"question": "Q two?", "answer": "step two\n#### 2"})"
                                "\n"
                                R"({"question": "Q three?", "answer": "s\n#### 3"})"
                                "\n");
  return d.string();
}

TEST(Gsm8k, LoaderOnFixtureAndErrors) {
  const std::string dir = make_fixture();
  const auto items = load_gsm8k(dir + "/test.jsonl");
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].reference, "7");
  EXPECT_EQ(items[1].reference, "2400");
  EXPECT_EQ(items[2].reference, "2.5");
  EXPECT_EQ(items[1].question, "A pen costs $1,200. Two pens?");
  const fs::path bad = fs::path(test::make_temp_dir("gsm8k-bad")) / "test.jsonl";
  const auto expect_error = [&](const std::string& content, const std::string& needle) {
    write_file(bad, content);
    try {
      load_gsm8k(bad.string());
      ADD_FAILURE() << "no error for " << content;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("{\"question\": \"q\", \"answer\": \"#### 1\"}\n{broken\n",
               "test.jsonl:2: invalid JSON");
  expect_error("{\"question\": \"q\"}\n", "test.jsonl:1: expected an object");
  expect_error("{\"question\": \"q\", \"answer\": \"no marker 5\"}\n", "has no \"#### <number>\"");
  expect_error("{\"question\": \"q\", \"answer\": \"#### none\"}\n", "no number after");
}

TEST(Gsm8k, RealDataLoads) {
  const std::string d = test::data_dir() + "/gsm8k";
  if (!fs::exists(d + "/test.jsonl")) GTEST_SKIP() << d << " not present";
  const auto test = load_gsm8k(d + "/test.jsonl");
  const auto train = load_gsm8k(d + "/train.jsonl");
  EXPECT_EQ(test.size(), 1319u);
  EXPECT_EQ(train.size(), 7473u);
  EXPECT_EQ(test[0].reference, "18");
  EXPECT_EQ(test[2].reference, "70000");
  EXPECT_EQ(train[0].reference, "72");
}

/// A generator that answers from a table keyed by the prompt's last question.
GenerateFn scripted(const std::map<std::string, std::string>& answers,
                    std::vector<std::string>* prompts = nullptr,
                    std::vector<GenerationOptions>* options = nullptr) {
  return [=](const std::string& prompt, const GenerationOptions& opt) {
    if (prompts) prompts->push_back(prompt);
    if (options) options->push_back(opt);
    const size_t q = prompt.rfind("Question: ");
    const size_t a = prompt.rfind("\nAnswer:");
    const std::string question = prompt.substr(q + 10, a - q - 10);
    Generation g;
    g.text = answers.count(question) ? answers.at(question) : " I do not know.";
    g.finish_reason = "stop";
    return g;
  };
}

TEST(Gsm8k, AccuracyWithScriptedGenerators) {
  const std::string dir = make_fixture();
  const std::map<std::string, std::string> right = {
      {"Tom has 3 apples and buys 4. How many?", " 3 + 4 = 7. The answer is 7."},
      {"A pen costs $1,200. Two pens?", " Two pens cost $2,400."},
      {"Half of 5?", " It is 2.50"}};
  const std::map<std::string, std::string> wrong = {
      {"Tom has 3 apples and buys 4. How many?", " 7 - 1 = 6"},
      {"A pen costs $1,200. Two pens?", " 2,400 ... no, 2,401"},
      {"Half of 5?", " 2.5 or maybe 3"}};
  std::vector<std::string> prompts;
  std::vector<GenerationOptions> options;
  Gsm8kOptions opt;
  opt.shots = 2;
  opt.max_new_tokens = 77;
  opt.keep_items = true;
  Gsm8kResult r = evaluate_gsm8k(dir, scripted(right, &prompts, &options), opt);
  EXPECT_EQ(r.status, "ok");
  EXPECT_EQ(r.items, 3);
  EXPECT_EQ(r.correct, 3);
  EXPECT_DOUBLE_EQ(r.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(r.standard_error, 0.0);
  ASSERT_EQ(r.per_item.size(), 3u);
  EXPECT_EQ(r.per_item[1].predicted, "2400");
  ASSERT_EQ(prompts.size(), 3u);
  EXPECT_EQ(prompts[0],
            "Question: Q one?\nAnswer: step\n#### 1\n\n"
            "Question: Q two?\nAnswer: step two\n#### 2\n\n"
            "Question: Tom has 3 apples and buys 4. How many?\nAnswer:");
  EXPECT_EQ(options[0].max_new_tokens, 77);
  EXPECT_EQ(options[0].temperature, 0.0);
  EXPECT_EQ(options[0].stop, (std::vector<std::string>{"\n\nQuestion:", "Question:"}));
  EXPECT_NE(r.protocol.find("shots=2"), std::string::npos);

  r = evaluate_gsm8k(dir, scripted(wrong), opt);
  EXPECT_EQ(r.correct, 0);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.0);

  opt.limit = 2;
  r = evaluate_gsm8k(
      dir, scripted({{"Half of 5?", "2.5"}, {"Tom has 3 apples and buys 4. How many?", "7"}}), opt);
  EXPECT_EQ(r.items, 2);
  EXPECT_EQ(r.correct, 1);
  EXPECT_EQ(r.no_number, 1);  // the pen question is not in the table
  EXPECT_NEAR(r.standard_error, std::sqrt(0.25 / 2), 1e-12);

  opt.limit = 0;
  opt.shots = 0;
  prompts.clear();
  r = evaluate_gsm8k(dir, scripted({}, &prompts), opt);
  EXPECT_EQ(prompts[0], "Question: Tom has 3 apples and buys 4. How many?\nAnswer:");
  EXPECT_EQ(r.no_number, 3);
  opt.shots = 4;  // train has 3
  EXPECT_THROW(evaluate_gsm8k(dir, scripted(right), opt), Error);
}

TEST(Gsm8k, MissingDataIsSkipped) {
  const Gsm8kResult r = evaluate_gsm8k("/nonexistent/gsm8k", scripted({}));
  EXPECT_EQ(r.status, "skipped: /nonexistent/gsm8k/test.jsonl not found");
  EXPECT_EQ(r.items, 0);
}

}  // namespace
}  // namespace qsweep
