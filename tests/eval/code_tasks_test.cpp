// HumanEval / MBPP: loaders, program assembly, pass@k, and end-to-end runs with fake
// generators (canonical solutions must all pass, empty completions must all fail).
#include "eval/code_tasks.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

namespace fs = std::filesystem;

std::string humaneval_path() {
  return humaneval_file(test::data_dir());
}

#define REQUIRE_HUMANEVAL_AND_SANDBOX()                                                  \
  do {                                                                                   \
    if (!fs::exists(humaneval_path())) GTEST_SKIP() << humaneval_path() << " not found"; \
    const SandboxProbe probe = probe_sandbox();                                          \
    if (!probe.usable) GTEST_SKIP() << "sandbox unavailable here: " << probe.message;    \
  } while (0)

// ---- pass@k ----------------------------------------------------------------------------------

/// Fraction of the k-subsets of n samples (the first c correct) that contain a correct one.
double brute_force_pass_at_k(int n, int c, int k) {
  int hit = 0, total = 0;
  for (unsigned mask = 0; mask < (1u << n); ++mask) {
    if (__builtin_popcount(mask) != k) continue;
    ++total;
    if (mask & ((1u << c) - 1)) ++hit;
  }
  return static_cast<double>(hit) / total;
}

TEST(PassAtK, MatchesBruteForceEnumerationOverSubsets) {
  for (int n = 1; n <= 10; ++n)
    for (int c = 0; c <= n; ++c)
      for (int k = 1; k <= n; ++k)
        EXPECT_NEAR(pass_at_k(n, c, k), brute_force_pass_at_k(n, c, k), 1e-12)
            << "n=" << n << " c=" << c << " k=" << k;
}

TEST(PassAtK, StableForLargeNAndEdgeCases) {
  // 1 - C(n-c, k) / C(n, k) through log-gamma, for n where the binomials overflow doubles.
  auto lchoose = [](int a, int b) {
    return std::lgamma(a + 1.0) - std::lgamma(b + 1.0) - std::lgamma(a - b + 1.0);
  };
  for (auto [n, c, k] : {std::tuple{2000, 13, 100}, {2000, 1, 1}, {1000, 999, 10}, {500, 3, 250}}) {
    const double expected = 1 - std::exp(lchoose(n - c, k) - lchoose(n, k));
    EXPECT_NEAR(pass_at_k(n, c, k), expected, 1e-9) << n << " " << c << " " << k;
  }
  EXPECT_EQ(pass_at_k(5, 0, 3), 0.0);
  EXPECT_EQ(pass_at_k(5, 5, 1), 1.0);
  EXPECT_EQ(pass_at_k(5, 3, 3), 1.0);  // n - c < k
  EXPECT_DOUBLE_EQ(pass_at_k(10, 3, 1), 0.3);
  EXPECT_THROW(pass_at_k(3, 4, 1), Error);
  EXPECT_THROW(pass_at_k(3, 1, 4), Error);
}

// ---- pieces ----------------------------------------------------------------------------------

TEST(CodeTasks, TruncateAtStops) {
  const auto stops = humaneval_stop_sequences();
  EXPECT_EQ(stops, (std::vector<std::string>{"\nclass", "\ndef", "\n#", "\nif", "\nprint"}));
  EXPECT_EQ(truncate_at_stops("    return 1\n\ndef g():\n", stops), "    return 1\n");
  EXPECT_EQ(truncate_at_stops("    return 1\nprint(f())\n#x", stops), "    return 1");
  EXPECT_EQ(truncate_at_stops("    # fine\n    if x:\n", stops), "    # fine\n    if x:\n");
  EXPECT_EQ(truncate_at_stops("x = 1\n[DONE]\nmore", mbpp_stop_sequences()), "x = 1\n");
  EXPECT_EQ(truncate_at_stops("", stops), "");
}

TEST(CodeTasks, HumanEvalLoaderAndProgramAssembly) {
  if (!fs::exists(humaneval_path())) GTEST_SKIP() << humaneval_path() << " not found";
  const auto problems = load_humaneval(humaneval_path());
  ASSERT_EQ(problems.size(), 164u);
  EXPECT_EQ(problems[0].task_id, "HumanEval/0");
  EXPECT_EQ(problems[0].entry_point, "has_close_elements");
  EXPECT_EQ(problems[163].task_id, "HumanEval/163");
  const auto& p = problems[0];
  EXPECT_EQ(humaneval_program(p, "    return True"),
            p.prompt + "    return True\n" + p.test + "\ncheck(has_close_elements)");
}

TEST(CodeTasks, LoaderErrorsNameTheFileAndLine) {
  const std::string dir = test::make_temp_dir("code-tasks-bad");
  const std::string bad = dir + "/bad.jsonl";
  std::ofstream(bad)
      << R"({"task_id": "A", "prompt": "p", "canonical_solution": "c", "test": "t", "entry_point": "f"})"
      << "\n{not json}\n";
  try {
    load_humaneval(bad);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad + ":2"), std::string::npos) << e.what();
  }
  std::ofstream(bad) << R"({"task_id": "A", "prompt": "p"})"
                     << "\n";
  try {
    load_humaneval(bad);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("canonical_solution"), std::string::npos) << e.what();
  }
  // A malformed file is an error result, not an exception that stops a sweep.
  const CodeEvalResult r =
      run_humaneval([](const std::string&, const GenerationOptions&) { return Generation{}; }, bad);
  EXPECT_EQ(r.status, CodeEvalStatus::error);
  EXPECT_NE(r.message.find("canonical_solution"), std::string::npos) << r.message;
  fs::remove_all(dir);
}

TEST(CodeTasks, MissingDataIsSkippedNotThrown) {
  int calls = 0;
  GenerateFn gen = [&](const std::string&, const GenerationOptions&) {
    ++calls;
    return Generation{};
  };
  const std::string missing = "/nonexistent/qsweep/HumanEval.jsonl.gz";
  CodeEvalResult r = run_humaneval(gen, missing);
  EXPECT_EQ(r.status, CodeEvalStatus::skipped);
  EXPECT_EQ(r.message, "skipped: " + missing + " not found");
  EXPECT_STREQ(to_string(r.status), "skipped");
  r = run_mbpp(gen, mbpp_file("/nonexistent/qsweep-data"));
  EXPECT_EQ(r.status, CodeEvalStatus::skipped);
  EXPECT_EQ(r.message, "skipped: /nonexistent/qsweep-data/mbpp/mbpp.jsonl not found");
  EXPECT_EQ(calls, 0);
}

// ---- HumanEval end to end ----------------------------------------------------------------------

/// A fake model that answers every HumanEval prompt with its canonical solution.
GenerateFn canonical_generator(std::vector<GenerationOptions>* seen = nullptr) {
  auto by_prompt = std::make_shared<std::map<std::string, std::string>>();
  for (const auto& p : load_humaneval(humaneval_path())) (*by_prompt)[p.prompt] = p.reference;
  return [by_prompt, seen](const std::string& prompt, const GenerationOptions& g) {
    if (seen) seen->push_back(g);
    Generation out;
    out.text = by_prompt->at(prompt);
    out.finish_reason = "stop";
    return out;
  };
}

void run_canonical(int limit) {
  REQUIRE_HUMANEVAL_AND_SANDBOX();
  std::vector<GenerationOptions> seen;
  CodeEvalOptions opt;
  opt.limit = limit;
  const auto t0 = std::chrono::steady_clock::now();
  const CodeEvalResult r = run_humaneval(canonical_generator(&seen), humaneval_path(), opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.status, CodeEvalStatus::ok) << r.message;
  const int n = limit ? limit : 164;
  EXPECT_EQ(r.items, n);
  ASSERT_EQ(r.problems.size(), static_cast<size_t>(n));
  for (const auto& p : r.problems)
    EXPECT_EQ(p.correct, 1) << p.task_id << ": " << to_string(p.samples[0].status) << "\n"
                            << p.samples[0].stderr_tail;
  EXPECT_DOUBLE_EQ(r.pass_at.at(1), 1.0);
  EXPECT_DOUBLE_EQ(r.standard_error.at(1), 0.0);
  EXPECT_EQ(r.sample_status_counts.at("ok"), n);
  // The task's stop sequences reach the generator.
  ASSERT_EQ(seen.size(), static_cast<size_t>(n));
  EXPECT_EQ(seen[0].stop, humaneval_stop_sequences());
  EXPECT_EQ(seen[0].temperature, 0);
  EXPECT_NE(r.protocol.find("HumanEval.jsonl.gz"), std::string::npos) << r.protocol;
  EXPECT_NE(r.protocol.find("\"\\nclass\""), std::string::npos) << r.protocol;
  EXPECT_NE(r.protocol.find("timeout=10s"), std::string::npos) << r.protocol;
  std::printf("%d canonical HumanEval solutions: %.2f s wall (isolation %s)\n%s\n", n, secs,
              r.isolation.c_str(), r.protocol.c_str());
}

TEST(HumanEval, First20CanonicalSolutionsPass) {
  run_canonical(20);
}

TEST(HumanEval, All164CanonicalSolutionsPass) {
  run_canonical(0);
}

TEST(HumanEval, EmptyCompletionsAllFail) {
  REQUIRE_HUMANEVAL_AND_SANDBOX();
  const auto t0 = std::chrono::steady_clock::now();
  const CodeEvalResult r = run_humaneval(
      [](const std::string&, const GenerationOptions&) { return Generation{}; }, humaneval_path());
  ASSERT_EQ(r.status, CodeEvalStatus::ok) << r.message;
  EXPECT_EQ(r.items, 164);
  EXPECT_EQ(r.pass_at.at(1), 0.0);
  EXPECT_EQ(r.sample_status_counts.at("failed"), 164);  // failures, not sandbox errors
  std::printf("164 empty completions: %.2f s wall\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

TEST(HumanEval, StopSequencesCutTheCompletionAndMixedResultsScore) {
  REQUIRE_HUMANEVAL_AND_SANDBOX();
  const auto problems = load_humaneval(humaneval_path());
  std::map<std::string, std::pair<std::string, int>> by_prompt;
  for (size_t i = 0; i < problems.size(); ++i)
    by_prompt[problems[i].prompt] = {problems[i].reference, static_cast<int>(i)};
  // Even problems: canonical + trailing junk that the stop sequences remove; odd: wrong.
  GenerateFn gen = [&](const std::string& prompt, const GenerationOptions&) {
    const auto& [ref, i] = by_prompt.at(prompt);
    Generation g;
    g.text = i % 2 == 0 ? ref + "\n\nprint(undefined_name)\nraise SystemExit(3)\n"
                        : std::string("    raise ValueError('wrong')\n");
    return g;
  };
  CodeEvalOptions opt;
  opt.limit = 10;
  const CodeEvalResult r = run_humaneval(gen, humaneval_path(), opt);
  ASSERT_EQ(r.status, CodeEvalStatus::ok) << r.message;
  EXPECT_EQ(r.items, 10);
  EXPECT_DOUBLE_EQ(r.pass_at.at(1), 0.5);
  // 5 ones, 5 zeros: sample std sqrt(2.5 / 9), over sqrt(10).
  EXPECT_NEAR(r.standard_error.at(1), std::sqrt(2.5 / 9) / std::sqrt(10.0), 1e-12);
  for (size_t i = 0; i < r.problems.size(); ++i) {
    EXPECT_EQ(r.problems[i].correct, i % 2 == 0 ? 1 : 0) << r.problems[i].task_id;
    if (i % 2 == 0) {
      EXPECT_EQ(r.problems[i].samples[0].completion.find("print"), std::string::npos);
    }
  }
}

TEST(HumanEval, PassAtKWithSeveralSamples) {
  REQUIRE_HUMANEVAL_AND_SANDBOX();
  const auto problems = load_humaneval(humaneval_path());
  std::map<std::string, std::string> by_prompt;
  for (const auto& p : problems) by_prompt[p.prompt] = p.reference;
  // Samples with odd seeds are right: 2 of 4 per problem.
  GenerateFn gen = [&](const std::string& prompt, const GenerationOptions& g) {
    Generation out;
    out.text = g.seed % 2 == 1 ? by_prompt.at(prompt) : "    return None\n";
    return out;
  };
  CodeEvalOptions opt;
  opt.limit = 3;
  opt.n_samples = 4;
  opt.ks = {1, 2, 4};
  opt.generation.temperature = 0.8;
  opt.generation.seed = 100;
  const CodeEvalResult r = run_humaneval(gen, humaneval_path(), opt);
  ASSERT_EQ(r.status, CodeEvalStatus::ok) << r.message;
  for (const auto& p : r.problems) EXPECT_EQ(p.correct, 2) << p.task_id;
  EXPECT_DOUBLE_EQ(r.pass_at.at(1), 0.5);
  EXPECT_NEAR(r.pass_at.at(2), 1 - 1.0 / 6, 1e-12);
  EXPECT_DOUBLE_EQ(r.pass_at.at(4), 1.0);
  EXPECT_NE(r.protocol.find("temperature=0.8"), std::string::npos) << r.protocol;
  // k > n and identical greedy samples are refused up front.
  opt.ks = {8};
  EXPECT_THROW(run_humaneval(gen, humaneval_path(), opt), Error);
  opt.ks = {1};
  opt.generation.temperature = 0;
  EXPECT_THROW(run_humaneval(gen, humaneval_path(), opt), Error);
}

// ---- MBPP ---------------------------------------------------------------------------------------

nlohmann::json mbpp_record(int id, const std::string& text, const std::string& code,
                           std::vector<std::string> tests, const std::string& setup = "") {
  return {{"task_id", id},
          {"text", text},
          {"code", code},
          {"test_list", tests},
          {"test_setup_code", setup},
          {"challenge_test_list", nlohmann::json::array()}};
}

TEST(Mbpp, LoaderPromptProgramAndRunOnAHandMadeFixture) {
  const std::string dir = test::make_temp_dir("mbpp-fixture");
  const std::string file = dir + "/mbpp.jsonl";
  {
    std::ofstream f(file);
    f << mbpp_record(11, "Write a function to add two numbers.", "def add(a, b):\r\n  return a + b",
                     {"assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"})
             .dump()
      << "\n"
      << mbpp_record(12, "Write a function to square the mean of a list.",
                     "def sq_mean(xs):\n  return (sum(xs) / len(xs)) ** 2",
                     {"assert sq_mean(data) == 4.0", "assert sq_mean([3]) == 9"}, "data = [1, 3]")
             .dump()
      << "\n";
  }
  const auto problems = load_mbpp(file);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].task_id, "11");
  EXPECT_EQ(problems[1].test_setup_code, "data = [1, 3]");
  EXPECT_EQ(problems[1].test_list.size(), 2u);
  EXPECT_EQ(mbpp_prompt(problems[0], {}),
            "You are an expert Python programmer, and here is your task: Write a function to "
            "add two numbers. Your code should pass these tests:\n\nassert add(1, 2) == 3\n"
            "assert add(-1, 1) == 0\nassert add(0, 0) == 0\n[BEGIN]\n");
  EXPECT_EQ(mbpp_program(problems[1], "CODE"),
            "CODE\ndata = [1, 3]\nassert sq_mean(data) == 4.0\nassert sq_mean([3]) == 9\n");

  const SandboxProbe probe = probe_sandbox();
  if (!probe.usable) GTEST_SKIP() << "sandbox unavailable here: " << probe.message;
  std::map<std::string, std::string> answers;  // prompt -> completion
  for (const auto& p : problems) answers[mbpp_prompt(p, {})] = p.reference + "\n[DONE]\njunk";
  std::vector<GenerationOptions> seen;
  GenerateFn gen = [&](const std::string& prompt, const GenerationOptions& g) {
    seen.push_back(g);
    Generation out;
    out.text = answers.at(prompt);
    return out;
  };
  CodeEvalResult r = run_mbpp(gen, file);
  ASSERT_EQ(r.status, CodeEvalStatus::ok) << r.message;
  EXPECT_EQ(r.items, 2);
  EXPECT_DOUBLE_EQ(r.pass_at.at(1), 1.0);
  EXPECT_EQ(seen.at(0).stop, mbpp_stop_sequences());
  EXPECT_EQ(r.problems[0].samples[0].completion, problems[0].reference + "\n");
  EXPECT_NE(r.protocol.find("split=test(11-510) fewshot=0"), std::string::npos) << r.protocol;

  // One wrong answer: 1 of 2.
  answers[mbpp_prompt(problems[1], {})] = "def sq_mean(xs):\n  return 0\n";
  r = run_mbpp(gen, file);
  EXPECT_DOUBLE_EQ(r.pass_at.at(1), 0.5);
  EXPECT_EQ(r.problems[1].correct, 0);

  // The sanitized JSON variant (prompt / test_imports) loads the same way.
  const std::string sanitized = dir + "/sanitized-mbpp.json";
  std::ofstream(sanitized) << nlohmann::json::array(
                                  {{{"source_file", "x"},
                                    {"task_id", 12},
                                    {"prompt", "Write a function to square the mean of a list."},
                                    {"code", "def sq_mean(xs):\n  return (sum(xs) / len(xs)) ** 2"},
                                    {"test_imports", {"import math"}},
                                    {"test_list", {"assert sq_mean([3]) == 9"}}}})
                                  .dump(1);
  const auto s = load_mbpp(sanitized);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].prompt, "Write a function to square the mean of a list.");
  EXPECT_EQ(s[0].test_setup_code, "import math");
  fs::remove_all(dir);
}

TEST(Mbpp, FewShotExemplarsAndTestSplit) {
  const std::string dir = test::make_temp_dir("mbpp-split");
  const std::string file = dir + "/mbpp.jsonl";
  {
    std::ofstream f(file);
    for (int id : {1, 2, 3, 4, 11, 600})
      f << mbpp_record(id, cat("Task ", id, "."), cat("def f():\n  return ", id),
                       {cat("assert f() == ", id)})
               .dump()
        << "\n";
  }
  std::vector<std::string> prompts;
  GenerateFn gen = [&](const std::string& prompt, const GenerationOptions&) {
    prompts.push_back(prompt);
    Generation g;
    g.text = "def f():\n  return 11\n";
    return g;
  };
  const CodeEvalResult r = run_mbpp(gen, file);
  if (r.status == CodeEvalStatus::error) GTEST_SKIP() << r.message;
  ASSERT_EQ(r.items, 1);  // only task 11 is in the test split
  EXPECT_EQ(r.problems[0].task_id, "11");
  EXPECT_DOUBLE_EQ(r.pass_at.at(1), 1.0);
  ASSERT_EQ(prompts.size(), 1u);
  const std::string& pr = prompts[0];
  EXPECT_LT(pr.find("here is your task: Task 2."), pr.find("here is your task: Task 3."));
  EXPECT_LT(pr.find("here is your task: Task 3."), pr.find("here is your task: Task 4."));
  EXPECT_LT(pr.find("here is your task: Task 4."), pr.find("here is your task: Task 11."));
  EXPECT_NE(pr.find("here is your task: Task 11."), std::string::npos);
  EXPECT_NE(prompts[0].find("def f():\n  return 4\n[DONE]\n\n"), std::string::npos) << prompts[0];
  EXPECT_EQ(prompts[0].find("Task 1."), std::string::npos);
  EXPECT_NE(r.protocol.find("fewshot=3"), std::string::npos) << r.protocol;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace qsweep
