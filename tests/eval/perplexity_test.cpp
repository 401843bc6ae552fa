// Perplexity: the four reference values of tinycode/reference/perplexity.json to
// 4 significant digits, and the protocols' token accounting on a toy model.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "backends/backend.h"
#include "common/errors.h"
#include "common/mapped_file.h"
#include "eval/datasets.h"
#include "eval/perplexity.h"
#include "model/model_spec.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

// A toy model: 2 layers, random weights; fast enough for many protocol cases.
class ToyModel : public ::testing::Test {
 protected:
  ToyModel() : model_(spec(), random_weights(spec(), 42, 0.3f)) {
    std::mt19937 rng(uint32_t(test::test_seed(42)));
    std::uniform_int_distribution<int> d(0, 30);
    for (int i = 0; i < 1000; ++i) tokens_.push_back(d(rng));
  }
  static ModelSpec spec() {
    ModelSpec s;
    s.arch_name = "LlamaForCausalLM";
    s.vocab_size = 31;
    s.hidden_size = 16;
    s.intermediate_size = 24;
    s.num_layers = 2;
    s.num_heads = 2;
    s.num_kv_heads = 2;
    s.head_dim = 8;
    s.max_position_embeddings = 64;
    return s;
  }
  Transformer model_;
  std::vector<int> tokens_;
};

TEST_F(ToyModel, StridedScoresEveryTokenAfterTheFirstExactlyOnce) {
  for (int n : {2, 63, 64, 65, 200, 1000})
    for (int stride : {1, 7, 32, 63}) {
      PerplexityOptions opt;
      opt.protocol = PerplexityProtocol::Strided;
      opt.ctx = 64;
      opt.stride = stride;
      opt.max_tokens = n;
      const auto r = evaluate_perplexity(model_, tokens_, opt);
      EXPECT_EQ(r.scored_tokens, n - 1) << "n " << n << " stride " << stride;
      EXPECT_EQ(r.tokens_used, n);
    }
}

// With stride == ctx no window overlaps, so (as in Hugging Face's loop, whose
// label shift never scores a window's first token) each window's first token
// goes unscored: that is exactly the chunks protocol.
TEST_F(ToyModel, StridedWithStrideEqualToCtxIsChunks) {
  PerplexityOptions c;
  c.ctx = 50;
  c.max_tokens = 500;
  PerplexityOptions s = c;
  s.protocol = PerplexityProtocol::Strided;
  s.stride = 50;
  const auto a = evaluate_perplexity(model_, tokens_, c);
  const auto b = evaluate_perplexity(model_, tokens_, s);
  EXPECT_EQ(a.scored_tokens, 10 * 49);
  EXPECT_EQ(a.scored_tokens, b.scored_tokens);
  EXPECT_DOUBLE_EQ(a.mean_nll, b.mean_nll);
}

TEST_F(ToyModel, ChunksDropTheShortTailAndCountHonestly) {
  PerplexityOptions opt;
  opt.ctx = 64;
  opt.max_tokens = 200;
  const auto r = evaluate_perplexity(model_, tokens_, opt);
  EXPECT_EQ(r.windows, 3);
  EXPECT_EQ(r.tokens_used, 192);
  EXPECT_EQ(r.tokens_dropped, 8);
  EXPECT_EQ(r.scored_tokens, 3 * 63);
  // Batching does not change anything.
  opt.batch_rows = 64;
  const auto r1 = evaluate_perplexity(model_, tokens_, opt);
  EXPECT_EQ(r1.token_nll, r.token_nll);
}

TEST_F(ToyModel, NllIsMinusLogSoftmaxOfTheTarget) {
  // Independent check of the scoring: one chunk, log-softmax by hand.
  PerplexityOptions opt;
  opt.ctx = 20;
  opt.max_tokens = 20;
  const auto r = evaluate_perplexity(model_, tokens_, opt);
  MatrixRM logits = model_.forward(std::vector<int>(tokens_.begin(), tokens_.begin() + 20));
  log_softmax_rows(logits);
  double sum = 0;
  for (int t = 1; t < 20; ++t) {
    EXPECT_NEAR(r.token_nll[size_t(t - 1)], -logits(t - 1, tokens_[size_t(t)]), 1e-5);
    sum += -logits(t - 1, tokens_[size_t(t)]);
  }
  EXPECT_NEAR(r.mean_nll, sum / 19, 1e-6);
  EXPECT_NEAR(r.perplexity, std::exp(sum / 19), 1e-4);
}

// With a backend the weights go to its memory and the NLLs come from its token_nll op
// (ResidentModel): the same per-token NLLs and the same token accounting, for both protocols
// and with windows batched several to a forward. Run on "cuda" too when a device is usable.
TEST_F(ToyModel, ResidentBackendPathScoresTheSameTokens) {
  for (const char* device : {"cpu", "cuda"}) {
    if (std::string(device) == "cuda" && !cuda_available()) continue;
    auto backend = make_backend(device);
    for (auto protocol : {PerplexityProtocol::Chunks, PerplexityProtocol::Strided}) {
      PerplexityOptions opt;
      opt.protocol = protocol;
      opt.ctx = 24;
      opt.stride = 10;
      opt.batch_rows = 60;  // two windows per forward
      const auto ref = evaluate_perplexity(model_, tokens_, opt);
      opt.backend = backend.get();
      const auto r = evaluate_perplexity(model_, tokens_, opt);
      ASSERT_EQ(r.scored_tokens, ref.scored_tokens);
      ASSERT_EQ(r.token_nll.size(), ref.token_nll.size());
      for (size_t i = 0; i < r.token_nll.size(); ++i)
        ASSERT_NEAR(r.token_nll[i], ref.token_nll[i], 1e-5) << device << " token " << i;
      EXPECT_NEAR(r.mean_nll, ref.mean_nll, 1e-6);
    }
  }
}

TEST_F(ToyModel, BadOptionsAreErrors) {
  PerplexityOptions opt;
  opt.ctx = 1;
  EXPECT_THROW(evaluate_perplexity(model_, tokens_, opt), Error);
  opt.ctx = 16;
  opt.protocol = PerplexityProtocol::Strided;
  opt.stride = 17;
  EXPECT_THROW(evaluate_perplexity(model_, tokens_, opt), Error);
  opt.stride = 8;
  EXPECT_THROW(evaluate_perplexity(model_, std::vector<int>{3}, opt), Error);
  EXPECT_THROW(parse_protocol("sliding"), Error);
}

TEST(Datasets, MissingAndEmptyAreClearErrors) {
  const std::string dir = test::make_temp_dir("ds");
  try {
    resolve_eval_dataset("wikitext2", dir);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("wiki.test.raw"), std::string::npos) << e.what();
  }
  EXPECT_THROW(resolve_eval_dataset("no-such-set", dir), Error);
  const std::string empty = dir + "/empty.txt";
  { std::ofstream(empty) << ""; }
  try {
    read_dataset_text(resolve_eval_dataset(empty, dir));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is empty"), std::string::npos) << e.what();
  }
  EXPECT_EQ(resolve_eval_dataset("code-heldout", test::data_dir()).domain, "code");
}

}  // namespace
}  // namespace qsweep
