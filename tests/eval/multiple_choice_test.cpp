// MMLU / C-Eval: the CSV parser, loaders on hand-made fixture directories, the
// exact prompts, accuracy bookkeeping with scripted scorers, and the Transformer
// scorer against a naive forward on tinycode.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/errors.h"
#include "eval/multiple_choice.h"
#include "model/model_spec.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;

using Rows = std::vector<std::vector<std::string>>;

TEST(Csv, PlainQuotedEscapedAndMultiline) {
  EXPECT_EQ(parse_csv("a,b,c\n1,2,3\n", "t"), (Rows{{"a", "b", "c"}, {"1", "2", "3"}}));
  EXPECT_EQ(parse_csv("a,b\r\n1,2", "t"), (Rows{{"a", "b"}, {"1", "2"}}));  // CRLF, no final EOL
  EXPECT_EQ(parse_csv("\"x, y\",\"say \"\"hi\"\"\"\n", "t"), (Rows{{"x, y", "say \"hi\""}}));
  EXPECT_EQ(parse_csv("\"line1\nline2\r\nline3\",z\n", "t"),
            (Rows{{"line1\nline2\r\nline3", "z"}}));
  EXPECT_EQ(parse_csv("a,,\n,b,\n", "t"), (Rows{{"a", "", ""}, {"", "b", ""}}));
  EXPECT_EQ(parse_csv("\"\",x\n", "t"), (Rows{{"", "x"}}));
  EXPECT_EQ(parse_csv("a\n\n\nb\n", "t"), (Rows{{"a"}, {"b"}}));           // blank lines skipped
  EXPECT_EQ(parse_csv("\xEF\xBB\xBF\"q\",1\n", "t"), (Rows{{"q", "1"}}));  // BOM
  EXPECT_EQ(parse_csv("5\" pipe,x\n", "t"), (Rows{{"5\" pipe", "x"}}));    // literal quote
  EXPECT_EQ(parse_csv("中文,\"逗号，和\n换行\"\n", "t"), (Rows{{"中文", "逗号，和\n换行"}}));
  EXPECT_EQ(parse_csv("", "t"), Rows{});
  EXPECT_EQ(parse_csv("x", "t"), (Rows{{"x"}}));
}

TEST(Csv, ErrorsNameTheOriginAndLine) {
  const auto err = [](const std::string& text) {
    try {
      parse_csv(text, "f.csv");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err("a,b\nc,\"open\nmore").find("f.csv:2: unterminated"), std::string::npos)
      << err("a,b\nc,\"open\nmore");
  EXPECT_NE(err("a\n\"q\"x,1\n").find("f.csv:2: unexpected character 'x'"), std::string::npos)
      << err("a\n\"q\"x,1\n");
  EXPECT_NE(err("ok\nbad\xff\n").find("f.csv:2: invalid UTF-8"), std::string::npos)
      << err("ok\nbad\xff\n");
  EXPECT_NE(err("\xe4\xb8").find("invalid UTF-8"), std::string::npos);  // truncated sequence
}

void write_file(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << s;
}

/// MMLU tarball layout: data/{dev,test}/<subject>_{dev,test}.csv, no header.
std::string make_mmlu_fixture() {
  const fs::path root = test::make_temp_dir("mmlu");
  const fs::path d = root / "data";
  write_file(d / "dev" / "abstract_algebra_dev.csv",
             "\"Find 1+1, in Z_3.\",0,1,2,3,C\n"
             "What is a group?,A set,\"A set, with an operation\",A ring,A field,B\n");
  write_file(d / "test" / "abstract_algebra_test.csv",
             "Q1 correct-is-B,w,correct,w,w,B\n"
             "Q2 correct-is-A,correct,w,w,w,A\n"
             "Q3 correct-is-D,w,w,w,correct,D\n");
  write_file(d / "dev" / "astronomy_dev.csv", "Sun is a?,star,planet,moon,comet,A\n");
  write_file(d / "test" / "astronomy_test.csv", "\"  Q4 \"\"quoted\"\"  \",w,w,correct,w,C\n");
  write_file(d / "test" / "notes.txt", "ignored");
  return root.string();
}

/// C-Eval layout: {dev,val}/<subject>_{dev,val}.csv with a header; Chinese text.
std::string make_ceval_fixture(bool mapping) {
  const fs::path root = test::make_temp_dir("ceval");
  write_file(root / "dev" / "computer_network_dev.csv",
             "id,question,A,B,C,D,answer,explanation\n"
             "0,\"TCP 属于哪一层？\",应用层,传输层,网络层,物理层,B,\"1. 传输层\"\n");
  write_file(root / "val" / "computer_network_val.csv",
             "id,question,A,B,C,D,answer,explanation\n"
             "0,IP 属于哪一层？,应用层,传输层,correct,物理层,C,\n"
             "1,\"HTTP, 属于哪一层？\",correct,传输层,网络层,物理层,A,\n");
  write_file(root / "test" / "computer_network_test.csv",
             "id,question,A,B,C,D\n0,无答案,a,b,c,d\n");
  if (mapping)
    write_file(root / "subject_mapping.json",
               R"({"computer_network": ["Computer Network", "计算机网络", "STEM"]})");
  return root.string();
}

/// A scorer that knows the answers: the choice whose text is "correct" wins.
/// (It reads the last question of the context, as a model would.)
LoglikelihoodScorer oracle_scorer(std::vector<std::string>* contexts = nullptr) {
  LoglikelihoodScorer s;
  s.loglikelihood = [contexts](const std::string& ctx, const std::vector<std::string>& conts) {
    if (contexts) contexts->push_back(ctx);
    EXPECT_EQ(conts.size(), 4u);
    std::vector<double> ll(conts.size(), -5.0);
    const size_t last = ctx.rfind("\n\n");
    const std::string q = last == std::string::npos ? ctx : ctx.substr(last);
    const char* letters = "ABCD";
    for (int c = 0; c < 4; ++c)
      if (q.find(std::string("\n") + letters[c] + ". correct") != std::string::npos)
        ll[size_t(c)] = -0.1;
    return ll;
  };
  return s;
}

/// A scorer that always prefers one continuation.
LoglikelihoodScorer constant_scorer(int preferred) {
  LoglikelihoodScorer s;
  s.loglikelihood = [preferred](const std::string&, const std::vector<std::string>& conts) {
    std::vector<double> ll(conts.size(), -3.0);
    ll[size_t(preferred)] = -1.0;
    return ll;
  };
  return s;
}

TEST(Mmlu, LoaderAndExactPrompt) {
  const std::string root = make_mmlu_fixture();
  McOptions opt;
  const auto subjects = load_mc_subjects(McBenchmark::Mmlu, root, opt);
  ASSERT_EQ(subjects.size(), 2u);
  EXPECT_EQ(subjects[0].name, "abstract_algebra");
  EXPECT_EQ(subjects[0].display_name, "abstract algebra");
  ASSERT_EQ(subjects[0].dev.size(), 2u);
  EXPECT_EQ(subjects[0].dev[0].question, "Find 1+1, in Z_3.");
  EXPECT_EQ(subjects[0].dev[1].choices[1], "A set, with an operation");
  EXPECT_EQ(subjects[0].dev[0].answer, 2);
  ASSERT_EQ(subjects[0].eval.size(), 3u);
  EXPECT_EQ(subjects[1].eval[0].question, "  Q4 \"quoted\"  ");
  EXPECT_EQ(mc_build_context(McBenchmark::Mmlu, subjects[0], 5, subjects[0].eval[0]),
            "The following are multiple choice questions (with answers) about abstract "
            "algebra.\n\n"
            "Find 1+1, in Z_3.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: C\n\n"
            "What is a group?\nA. A set\nB. A set, with an operation\nC. A ring\nD. A field\n"
            "Answer: B\n\n"
            "Q1 correct-is-B\nA. w\nB. correct\nC. w\nD. w\nAnswer:");
  EXPECT_EQ(mc_build_context(McBenchmark::Mmlu, subjects[1], 0, subjects[1].eval[0]),
            "The following are multiple choice questions (with answers) about astronomy.\n\n"
            "Q4 \"quoted\"\nA. w\nB. w\nC. correct\nD. w\nAnswer:");
  EXPECT_EQ(mc_continuations(McBenchmark::Mmlu)[1], " B");
}

TEST(Mmlu, AccuracyWithScriptedScorers) {
  const std::string root = make_mmlu_fixture();
  // Always " B": abstract_algebra answers B, A, D → 1/3; astronomy C → 0/1.
  McResult r = evaluate_mmlu(root, constant_scorer(1));
  EXPECT_EQ(r.status, "ok");
  ASSERT_EQ(r.subjects.size(), 2u);
  EXPECT_EQ(r.subjects[0].items, 3);
  EXPECT_EQ(r.subjects[0].correct, 1);
  EXPECT_NEAR(r.subjects[0].accuracy, 1.0 / 3, 1e-12);
  EXPECT_EQ(r.subjects[1].correct, 0);
  EXPECT_EQ(r.items, 4);
  EXPECT_NEAR(r.micro_accuracy, 0.25, 1e-12);
  EXPECT_NEAR(r.macro_accuracy, (1.0 / 3 + 0.0) / 2, 1e-12);
  EXPECT_NEAR(r.micro_standard_error, std::sqrt(0.25 * 0.75 / 4), 1e-12);
  EXPECT_EQ(r.split, "test");
  // The oracle gets everything; with a limit of 2 per subject, 3 items.
  r = evaluate_mmlu(root, oracle_scorer());
  EXPECT_EQ(r.correct, 4);
  EXPECT_DOUBLE_EQ(r.macro_accuracy, 1.0);
  McOptions opt;
  opt.limit = 2;
  r = evaluate_mmlu(root, oracle_scorer(), opt);
  EXPECT_EQ(r.items, 3);
  opt.limit = 0;
  opt.subjects = {"astronomy"};
  opt.keep_items = true;
  r = evaluate_mmlu(root, constant_scorer(2), opt);
  ASSERT_EQ(r.subjects.size(), 1u);
  EXPECT_EQ(r.subjects[0].subject, "astronomy");
  EXPECT_EQ(r.subjects[0].predictions, std::vector<int>{2});
  EXPECT_DOUBLE_EQ(r.micro_accuracy, 1.0);
  opt.subjects = {"no_such_subject"};
  EXPECT_THROW(evaluate_mmlu(root, oracle_scorer(), opt), Error);
}

TEST(Mmlu, ShotsAreDroppedToFitTheWindow) {
  const std::string root = make_mmlu_fixture();
  std::vector<std::string> contexts;
  LoglikelihoodScorer s = oracle_scorer(&contexts);
  s.input_tokens = [](const std::string& c, const std::string& cont) {
    return int64_t(c.size() + cont.size());  // "tokens" = bytes
  };
  McOptions opt;
  opt.subjects = {"abstract_algebra"};
  const size_t zero_shot =
      mc_build_context(McBenchmark::Mmlu, load_mc_subjects(McBenchmark::Mmlu, root, opt)[0], 0,
                       {"Q1 correct-is-B", {"w", "correct", "w", "w"}, 1})
          .size();
  s.window = int64_t(zero_shot) + 2 + 50;  // fits one shot (~50 bytes), not two
  McResult r = evaluate_mmlu(root, s, opt);
  EXPECT_EQ(r.correct, 3);
  EXPECT_EQ(r.subjects[0].items_fewer_shots, 3);
  EXPECT_EQ(r.subjects[0].min_shots, 1);
  EXPECT_EQ(r.items_truncated, 0);
  ASSERT_EQ(contexts.size(), 3u);
  EXPECT_NE(contexts[0].find("Find 1+1"), std::string::npos);
  EXPECT_EQ(contexts[0].find("What is a group?"), std::string::npos);
  s.window = 10;  // nothing fits: 0 shots and counted as truncated
  r = evaluate_mmlu(root, s, opt);
  EXPECT_EQ(r.subjects[0].min_shots, 0);
  EXPECT_EQ(r.items_truncated, 3);
}

TEST(Mmlu, MissingDataIsSkippedAndBadDataIsAnError) {
  const McResult r = evaluate_mmlu("/nonexistent/mmlu", oracle_scorer());
  EXPECT_EQ(r.status.rfind("skipped: ", 0), 0u) << r.status;
  EXPECT_NE(r.status.find("/nonexistent/mmlu/test not found"), std::string::npos) << r.status;
  EXPECT_EQ(r.items, 0);

  const fs::path root = test::make_temp_dir("mmlu-bad");
  write_file(root / "test" / "x_test.csv", "q,a,b,c,d,B\nq2,a,b,c,E\n");
  write_file(root / "dev" / "x_dev.csv", "q,a,b,c,d,B\n");
  try {
    evaluate_mmlu(root.string(), oracle_scorer());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x_test.csv: record 2: 5 columns"), std::string::npos)
        << e.what();
  }
  write_file(root / "test" / "x_test.csv", "q,a,b,c,d,F\n");
  EXPECT_THROW(evaluate_mmlu(root.string(), oracle_scorer()), Error);
  fs::remove(root / "dev" / "x_dev.csv");
  write_file(root / "test" / "x_test.csv", "q,a,b,c,d,B\n");
  EXPECT_THROW(evaluate_mmlu(root.string(), oracle_scorer()), Error);  // no dev file for shots
  McOptions zero;
  zero.shots = 0;
  EXPECT_EQ(evaluate_mmlu(root.string(), oracle_scorer(), zero).status, "ok");
}

TEST(Ceval, LoaderPromptAndAccuracy) {
  const std::string root = make_ceval_fixture(true);
  const auto subjects = load_mc_subjects(McBenchmark::Ceval, root, {});
  ASSERT_EQ(subjects.size(), 1u);
  EXPECT_EQ(subjects[0].display_name, "计算机网络");
  ASSERT_EQ(subjects[0].eval.size(), 2u);
  EXPECT_EQ(subjects[0].eval[1].question, "HTTP, 属于哪一层？");
  EXPECT_EQ(subjects[0].eval[1].answer, 0);
  EXPECT_EQ(mc_build_context(McBenchmark::Ceval, subjects[0], 5, subjects[0].eval[0]),
            "以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n"
            "TCP 属于哪一层？\nA. 应用层\nB. 传输层\nC. 网络层\nD. 物理层\n答案：B\n\n"
            "IP 属于哪一层？\nA. 应用层\nB. 传输层\nC. correct\nD. 物理层\n答案：");
  EXPECT_EQ(mc_continuations(McBenchmark::Ceval)[0], "A");
  McResult r = evaluate_ceval(root, oracle_scorer());
  EXPECT_EQ(r.status, "ok");
  EXPECT_EQ(r.split, "val");
  EXPECT_EQ(r.items, 2);
  EXPECT_DOUBLE_EQ(r.micro_accuracy, 1.0);
  r = evaluate_ceval(root, constant_scorer(2));  // C: right on item 0 only
  EXPECT_DOUBLE_EQ(r.micro_accuracy, 0.5);
  EXPECT_DOUBLE_EQ(r.macro_accuracy, 0.5);
  // Without subject_mapping.json the file's subject name is used.
  EXPECT_EQ(load_mc_subjects(McBenchmark::Ceval, make_ceval_fixture(false), {})[0].display_name,
            "computer network");
  // The test split has no answers: a clear Error.
  McOptions test_split;
  test_split.split = "test";
  EXPECT_THROW(evaluate_ceval(root, oracle_scorer(), test_split), Error);
  EXPECT_EQ(evaluate_ceval("/nonexistent/ceval", oracle_scorer()).status,
            "skipped: /nonexistent/ceval/val not found");
}

// The Transformer scorer equals a naive computation: forward on context + continuation
// tokens, sum of log-softmax at the continuation positions.
TEST(TinycodeLoglikelihood, MatchesNaiveForward) {
  const std::string dir = test::tinycode_dir();
  const ModelSpec spec = load_model_spec(dir);
  const Transformer model(spec, load_weights(dir, spec));
  const auto tok = load_tokenizer(dir);
  const LoglikelihoodScorer scorer = make_transformer_scorer(model, *tok);
  EXPECT_EQ(scorer.window, 256);
  const std::string root = make_mmlu_fixture();
  const auto subjects = load_mc_subjects(McBenchmark::Mmlu, root, {});
  std::string long_ctx;
  for (int i = 0; i < 40; ++i) long_ctx += "def f" + std::to_string(i) + "(x):\n    return x\n";
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {mc_build_context(McBenchmark::Mmlu, subjects[0], 5, subjects[0].eval[0]),
       {" A", " B", " C", " D"}},
      {"import os\nimport sys\n\ndef main", {"():\n    pass", "(argv):", " ", "_x"}},
      {"中文 context ", {"答案", " A"}},              // trailing space moves to the continuation
      {long_ctx, {" A", "def g(y):\n    return y"}},  // longer than the window
  };
  for (const auto& [ctx, conts] : cases) {
    const std::vector<double> got = scorer.loglikelihood(ctx, conts);
    ASSERT_EQ(got.size(), conts.size());
    for (size_t c = 0; c < conts.size(); ++c) {
      // naive: harness tokenization, then one forward per continuation
      std::string cx = ctx, cc = conts[c];
      while (!cx.empty() && cx.back() == ' ') {
        cc = " " + cc;
        cx.pop_back();
      }
      std::vector<int> full = tok->encode(cx, true);
      const std::vector<int> whole = tok->encode(cx + cc, true);
      const std::vector<int> cont(whole.begin() + std::ptrdiff_t(full.size()), whole.end());
      ASSERT_FALSE(cont.empty());
      full.insert(full.end(), cont.begin(), cont.end());
      EXPECT_EQ(scorer.input_tokens(ctx, conts[c]), int64_t(full.size()) - 1);
      if (full.size() > 257) full.erase(full.begin(), full.end() - 257);
      full.pop_back();
      MatrixRM logits = model.forward(full);
      log_softmax_rows(logits);
      double want = 0;
      for (size_t j = 0; j < cont.size(); ++j)
        want += logits(int64_t(full.size() - cont.size() + j), cont[j]);
      EXPECT_NEAR(got[c], want, 1e-4)
          << "context '" << ctx.substr(0, 30) << "' cont '" << conts[c] << "'";
      EXPECT_LT(got[c], 0.0);
    }
  }
  // And a whole (tiny) MMLU run end to end with the real model.
  const McResult r = evaluate_mmlu(root, scorer);
  EXPECT_EQ(r.status, "ok");
  EXPECT_EQ(r.items, 4);
  std::printf("tinycode on the fixture: micro %.3f macro %.3f, fewer-shot items %lld\n",
              r.micro_accuracy, r.macro_accuracy, (long long)r.items_fewer_shots);
}

// An empty context with a tokenizer that adds no BOS: lm-evaluation-harness scores the
// continuation after its prefix_token_id, the BOS when the tokenizer has one (Llama-3's
// <|begin_of_text|> 128000), else the EOS (Qwen3's <|im_end|> 151645).
TEST(BpeLoglikelihood, EmptyContextUsesTheHarnessPrefixToken) {
  for (const auto& [name, prefix] : std::vector<std::pair<std::string, int>>{
           {"qwen3-tiny-random", 151645}, {"llama31-tiny-random", 128000}}) {
    const std::string dir = test::shared_dir() + "/models/" + name;
    const ModelSpec spec = load_model_spec(dir);
    const Transformer model(spec, load_weights(dir, spec));
    const auto tok = load_tokenizer(dir);
    ASSERT_FALSE(tok->add_bos_token()) << name;
    const LoglikelihoodScorer scorer = make_transformer_scorer(model, *tok);
    const std::vector<std::string> conts = {"The answer is 42.", " B"};
    const std::vector<double> got = scorer.loglikelihood("", conts);
    ASSERT_EQ(got.size(), conts.size());
    for (size_t c = 0; c < conts.size(); ++c) {
      const std::vector<int> cont = tok->encode(conts[c], false);
      std::vector<int> input = {prefix};
      input.insert(input.end(), cont.begin(), cont.end() - 1);
      EXPECT_EQ(scorer.input_tokens("", conts[c]), int64_t(input.size()));
      MatrixRM logits = model.forward(input);
      log_softmax_rows(logits);
      double want = 0;
      for (size_t j = 0; j < cont.size(); ++j) want += logits(int64_t(j), cont[j]);
      EXPECT_NEAR(got[c], want, 1e-4) << name << " '" << conts[c] << "'";
    }
  }
}

}  // namespace
}  // namespace qsweep
