// The task table, EvalConfig::resolved and run_eval: the one dispatch of every task.
#include "eval/task.h"

#include <gtest/gtest.h>

#include <random>

#include "common/errors.h"
#include "eval/perplexity.h"
#include "eval/run_eval.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "tests/support/small_model.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

TEST(TaskTable, EveryNameRoundTrips) {
  const std::vector<Task> all = {Task::Perplexity, Task::Kld,  Task::LineCompletion,
                                 Task::HumanEval,  Task::Mbpp, Task::Mmlu,
                                 Task::Ceval,      Task::Gsm8k};
  ASSERT_EQ(task_table().size(), all.size());
  ASSERT_EQ(task_names().size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    const TaskInfo& info = task_info(all[i]);
    EXPECT_EQ(info.task, all[i]);
    EXPECT_EQ(task_names()[i], info.name);
    EXPECT_EQ(task_from_name(info.name), all[i]) << info.name;
    EXPECT_EQ(task_name(all[i]), info.name);
    EXPECT_FALSE(info.id_prefix.empty());
    EXPECT_FALSE(info.metric.empty());
    EXPECT_EQ(info.keys.front(), "dataset") << info.name;
  }
  EXPECT_EQ(task_name(Task::LineCompletion), "line_completion");
  EXPECT_EQ(task_info(Task::Perplexity).metric, "perplexity");
  EXPECT_FALSE(task_info(Task::Perplexity).higher_is_better);
  EXPECT_EQ(task_info(Task::HumanEval).metric, "pass@1_pct");
  EXPECT_TRUE(task_info(Task::Gsm8k).higher_is_better);
  EXPECT_EQ(task_info(Task::Gsm8k).domain, "math");
  EXPECT_FALSE(task_from_name("nope"));
  EXPECT_FALSE(task_from_name("Perplexity"));
  EXPECT_FALSE(task_from_name(""));
}

EvalConfig config(Task t) {
  EvalConfig e;
  e.task = t;
  return e;
}

TEST(EvalConfigResolved, ContextDefaultsToTheModels) {
  const EvalConfig e = config(Task::Perplexity).resolved(2048);
  EXPECT_EQ(e.ctx, 2048);
  EXPECT_EQ(e.stride, 0);  // chunks: no stride
  EvalConfig k = config(Task::Kld);
  k.ctx = 128;
  EXPECT_EQ(k.resolved(2048).ctx, 128);  // explicit: kept
}

TEST(EvalConfigResolved, StridedStrideDefaultsToHalfTheContext) {
  EvalConfig e = config(Task::Perplexity);
  e.protocol = "strided";
  EXPECT_EQ(e.resolved(512).stride, 256);  // ctx from the model, then stride from ctx
  e.ctx = 100;
  EXPECT_EQ(e.resolved(512).stride, 50);
  e.stride = 7;
  EXPECT_EQ(e.resolved(512).stride, 7);
}

TEST(EvalConfigResolved, TaskDefaultsAndCaps) {
  const EvalConfig lc = config(Task::LineCompletion).resolved(64);
  EXPECT_EQ(lc.limit, 200);
  EXPECT_EQ(lc.max_new_tokens, 32);  // 48 capped at ctx / 2
  EXPECT_EQ(config(Task::LineCompletion).resolved(4096).max_new_tokens, 48);
  EXPECT_EQ(config(Task::LineCompletion).resolved(2).max_new_tokens, 1);  // at least 1
  EXPECT_EQ(config(Task::HumanEval).resolved(4096).max_new_tokens, 512);
  EXPECT_EQ(config(Task::HumanEval).resolved(4096).shots, -1);
  EXPECT_EQ(config(Task::Mbpp).resolved(256).max_new_tokens, 128);
  EXPECT_EQ(config(Task::Mbpp).resolved(256).shots, 3);
  EXPECT_EQ(config(Task::Gsm8k).resolved(4096).shots, 8);
  EXPECT_EQ(config(Task::Gsm8k).resolved(4096).max_new_tokens, 256);
  EXPECT_EQ(config(Task::Mmlu).resolved(4096).shots, 5);
  EXPECT_EQ(config(Task::Ceval).resolved(4096).shots, 5);
  EXPECT_EQ(config(Task::Mmlu).resolved(4096).limit, 0);  // all items

  EvalConfig given = config(Task::LineCompletion);
  given.limit = 12;
  given.max_new_tokens = 100;  // above ctx / 2: explicit values are kept
  const EvalConfig r = given.resolved(64);
  EXPECT_EQ(r.limit, 12);
  EXPECT_EQ(r.max_new_tokens, 100);
  EvalConfig shots = config(Task::Gsm8k);
  shots.shots = 0;
  EXPECT_EQ(shots.resolved(64).shots, 0);
}

TEST(EvalConfigResolved, ResolvingTwiceChangesNothing) {
  EvalConfig e = config(Task::Mbpp);
  const EvalConfig once = e.resolved(300), twice = once.resolved(300);
  EXPECT_EQ(once.options_json(), twice.options_json());
  EXPECT_EQ(once.options_json()["ctx"], 300);
  EXPECT_EQ(once.options_json()["task"], "mbpp");
  EXPECT_EQ(once.options_json()["max_new_tokens"], 150);
  // Perplexity's options carry no generation keys.
  EXPECT_FALSE(config(Task::Perplexity).resolved(300).options_json().contains("top_k"));
}

class RunEval : public ::testing::Test {
 protected:
  RunEval()
      : model_(
            test::small_model_spec(Architecture::Llama),
            random_weights(test::small_model_spec(Architecture::Llama), test::test_seed(7), 0.5f)),
        tok_(load_tokenizer(test::tinycode_dir())) {
    std::mt19937 rng(uint32_t(test::test_seed(8)));
    std::uniform_int_distribution<int> d(0, model_.spec().vocab_size - 1);
    for (int i = 0; i < 300; ++i) tokens_.push_back(d(rng));
  }
  EvalInputs with_tokens() const {
    EvalInputs in(model_, *tok_);
    in.text_tokens = &tokens_;
    return in;
  }
  Transformer model_;
  std::unique_ptr<Tokenizer> tok_;
  std::vector<int> tokens_;
};

// run_eval for perplexity is evaluate_perplexity: the same value and per-token NLLs.
TEST_F(RunEval, PerplexityEqualsEvaluatePerplexity) {
  for (const char* protocol : {"chunks", "strided"}) {
    EvalConfig e;
    e.task = Task::Perplexity;
    e.protocol = protocol;
    e.max_tokens = 250;
    const EvalConfig r = e.resolved(model_.spec().max_position_embeddings);
    const EvalResult res = run_eval(r, with_tokens());

    PerplexityOptions po;
    po.protocol = parse_protocol(protocol);
    po.ctx = model_.spec().max_position_embeddings;
    po.max_tokens = 250;
    const PerplexityResult ref = evaluate_perplexity(model_, tokens_, po);
    ASSERT_TRUE(res.value);
    EXPECT_EQ(*res.value, ref.perplexity) << protocol;
    EXPECT_EQ(res.token_nll, ref.token_nll) << protocol;
    EXPECT_EQ(res.items, ref.scored_tokens);
    EXPECT_EQ(res.status, "ok");
    EXPECT_EQ(res.protocol, ref.protocol);
    const nlohmann::json j = res.to_json();
    EXPECT_EQ(j["value"].get<double>(), ref.perplexity);
    EXPECT_EQ(j["mean_nll"].get<double>(), ref.mean_nll);
    EXPECT_EQ(j["nll_standard_error"].get<double>(), ref.nll_standard_error);
    EXPECT_EQ(j["scored_tokens"], ref.scored_tokens);
    EXPECT_EQ(j["tokens_used"], ref.tokens_used);
    EXPECT_EQ(j["tokens_dropped"], ref.tokens_dropped);
    EXPECT_EQ(j["windows"], ref.windows);
    EXPECT_EQ(j["ctx"], ref.ctx);
    EXPECT_EQ(j["stride"], ref.stride);
    // metrics.json's keys exactly, as before run_eval existed.
    std::vector<std::string> keys;
    for (const auto& [k, v] : j.items()) keys.push_back(k);
    EXPECT_EQ(keys, (std::vector<std::string>{
                        "ctx", "mean_nll", "nll_standard_error", "protocol", "scored_tokens",
                        "seconds", "stride", "tokens_dropped", "tokens_used", "value", "windows"}));
  }
}

TEST_F(RunEval, NeedsAResolvedConfig) {
  EvalConfig e;  // ctx 0
  EXPECT_THROW(run_eval(e, with_tokens()), Error);
}

// A benchmark whose data is absent is skipped, with the reason, not an error.
TEST_F(RunEval, AbsentBenchmarkIsSkipped) {
  const std::string empty = test::make_temp_dir("run-eval-nodata");
  for (Task t : {Task::Mbpp, Task::HumanEval, Task::Mmlu, Task::Gsm8k}) {
    EvalConfig e;
    e.task = t;
    e.dataset = task_info(t).default_dataset;
    const EvalConfig r = e.resolved(model_.spec().max_position_embeddings);
    const TaskData data = resolve_task_data(r, empty);
    EXPECT_FALSE(data.present);
    EXPECT_TRUE(data.files.empty());
    const EvalResult res = run_eval(r, EvalInputs(model_, *tok_, data));
    EXPECT_FALSE(res.value) << task_name(t);
    EXPECT_EQ(res.status.rfind("skipped: ", 0), 0u) << res.status;
    EXPECT_NE(res.status.find(empty), std::string::npos) << res.status;
    const nlohmann::json j = res.to_json();
    EXPECT_TRUE(j["value"].is_null());
    EXPECT_TRUE(j["standard_error"].is_null());
    EXPECT_EQ(j["items"], 0);
    EXPECT_EQ(j["status"], res.status);
  }
}

}  // namespace
}  // namespace qsweep
