// generate() against a naive reference that recomputes the full forward pass for
// every new token (greedy = argmax, ties → lowest id), on tinycode and on a random
// Mistral model with a toy character tokenizer; the finish reasons (length,
// context, stop, eos), long prompts, seeded sampling and nucleus cut-off.
#include "eval/generation.h"

#include <gtest/gtest.h>

#include <memory>

#include "common/errors.h"
#include "model/model_spec.h"
#include "model/weights.h"
#include "tests/support/small_model.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

// One character per id: ids 3… are "abc…z01…"; 0..2 decode to nothing.
class ToyTokenizer : public Tokenizer {
 public:
  ToyTokenizer(int bos, int eos) : bos_(bos), eos_(eos) {}
  std::vector<int> encode(const std::string& text, bool add_bos) const override {
    std::vector<int> ids;
    if (add_bos && bos_ >= 0) ids.push_back(bos_);
    for (char c : text) {
      const size_t i = kAlphabet.find(c);
      QS_THROW_IF_NOT(i != std::string::npos, "toy tokenizer: no id for '", c, "'");
      ids.push_back(3 + int(i));
    }
    return ids;
  }
  std::string decode(const std::vector<int>& ids) const override {
    std::string s;
    for (int id : ids)
      if (id >= 3) s += kAlphabet.at(size_t(id - 3));
    return s;
  }
  int vocab_size() const override { return 3 + int(kAlphabet.size()); }
  int bos_id() const override { return bos_; }
  int eos_id() const override { return eos_; }
  bool add_bos_token() const override { return bos_ >= 0; }
  std::string piece(int id) const override { return decode({id}); }
  std::string describe() const override { return "toy"; }

 private:
  inline static const std::string kAlphabet = "abcdefghijklmnopqrstuvwxyz01234567";
  int bos_, eos_;
};

ModelSpec toy_spec() {
  ModelSpec s = test::small_model_spec(Architecture::Mistral);
  s.max_position_embeddings = 24;
  s.sliding_window = 6;
  return s;
}

// Greedy decoding the slow way: the whole sequence through forward() per token.
std::vector<int> naive_greedy(const Transformer& m, std::vector<int> ids, int n, int eos) {
  std::vector<int> out;
  while (int(out.size()) < n && int(ids.size()) <= m.spec().max_position_embeddings) {
    const MatrixRM logits = m.forward(ids);
    const auto last = logits.row(logits.rows() - 1);
    int best = 0;
    for (int v = 1; v < last.size(); ++v)
      if (last[v] > last[best]) best = v;
    out.push_back(best);
    if (best == eos) break;
    ids.push_back(best);
  }
  return out;
}

class Tinycode : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = test::tinycode_dir();
    const ModelSpec spec = load_model_spec(dir);
    model_ = std::make_unique<Transformer>(spec, load_weights(dir, spec));
    tok_ = load_tokenizer(dir);
  }
  static void TearDownTestSuite() {
    model_.reset();
    tok_.reset();
  }
  Generation gen(const std::string& prompt, const GenerationOptions& o) {
    return generate(*model_, *tok_, prompt, o);
  }
  static inline std::unique_ptr<Transformer> model_;
  static inline std::unique_ptr<Tokenizer> tok_;
  const std::string prompt_ = "import os\n\n\ndef list_files(path):\n    result = []\n    for ";
};

TEST_F(Tinycode, GreedyEqualsArgmaxOfRepeatedForward) {
  GenerationOptions o;
  o.max_new_tokens = 40;
  const Generation g = gen(prompt_, o);
  const std::vector<int> ids = tok_->encode(prompt_, tok_->add_bos_token());
  const std::vector<int> want = naive_greedy(*model_, ids, 40, tok_->eos_id());
  EXPECT_EQ(g.tokens, want);
  EXPECT_EQ(g.finish_reason, want.back() == tok_->eos_id() ? "eos" : "length");
  // The text is the continuation of the prompt's decoded text (leading spaces kept).
  std::vector<int> all = ids;
  all.insert(all.end(), want.begin(), want.end());
  EXPECT_EQ(tok_->decode(ids) + g.text, tok_->decode(all));
  EXPECT_FALSE(g.text.empty());
  // make_generate_fn is the same thing behind a std::function.
  EXPECT_EQ(make_generate_fn(*model_, *tok_)(prompt_, o).tokens, g.tokens);
}

TEST_F(Tinycode, StopSequencesCutBeforeTheEarliest) {
  GenerationOptions o;
  o.max_new_tokens = 40;
  const Generation full = gen(prompt_, o);
  ASSERT_GE(full.text.size(), 20u) << full.text;
  const std::string late = full.text.substr(14, 3), early = full.text.substr(6, 2);
  o.stop = {late, "@@never@@", early};
  const Generation g = gen(prompt_, o);
  EXPECT_EQ(g.finish_reason, "stop");
  const size_t cut = std::min(full.text.find(late), full.text.find(early));
  EXPECT_EQ(g.text, full.text.substr(0, cut));
  // Generation ran exactly until the token that completed the stop.
  ASSERT_LE(g.tokens.size(), full.tokens.size());
  EXPECT_TRUE(std::equal(g.tokens.begin(), g.tokens.end(), full.tokens.begin()));
  const std::vector<int> ids = tok_->encode(prompt_, true);
  auto text_of = [&](size_t n) {
    std::vector<int> all = ids;
    all.insert(all.end(), g.tokens.begin(), g.tokens.begin() + int64_t(n));
    return tok_->decode(all).substr(tok_->decode(ids).size());
  };
  const std::string& winner = full.text.find(late) < full.text.find(early) ? late : early;
  EXPECT_NE(text_of(g.tokens.size()).find(winner), std::string::npos);
  EXPECT_EQ(text_of(g.tokens.size() - 1).find(early), std::string::npos);
  EXPECT_EQ(text_of(g.tokens.size() - 1).find(late), std::string::npos);
}

TEST_F(Tinycode, SamplingIsSeededAndTinyTopPIsGreedy) {
  GenerationOptions o;
  o.max_new_tokens = 30;
  o.temperature = 1.0;
  o.seed = 7;
  const Generation a = gen(prompt_, o), b = gen(prompt_, o);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.text, b.text);
  int differing = 0;
  for (uint64_t seed : {8, 9, 10}) {
    o.seed = seed;
    differing += gen(prompt_, o).tokens != a.tokens;
  }
  EXPECT_GE(differing, 2);
  // Sampling differs from greedy at T = 1 …
  GenerationOptions greedy;
  greedy.max_new_tokens = 30;
  const Generation g = gen(prompt_, greedy);
  EXPECT_NE(a.tokens, g.tokens);
  // … but a nucleus of one token is greedy, whatever the seed and temperature.
  o.top_p = 1e-9;
  o.temperature = 3.0;
  EXPECT_EQ(gen(prompt_, o).tokens, g.tokens);
  // A low temperature concentrates on the argmax too.
  o.top_p = 1.0;
  o.temperature = 1e-4;
  EXPECT_EQ(gen(prompt_, o).tokens, g.tokens);
}

TEST_F(Tinycode, RejectsBadOptions) {
  GenerationOptions o;
  o.top_p = 0;
  EXPECT_THROW(gen(prompt_, o), Error);
  o = {};
  o.temperature = -1;
  EXPECT_THROW(gen(prompt_, o), Error);
  o = {};
  o.stop = {""};
  EXPECT_THROW(gen(prompt_, o), Error);
  o = {};
  o.max_new_tokens = 0;
  const Generation g = gen(prompt_, o);
  EXPECT_TRUE(g.tokens.empty());
  EXPECT_EQ(g.finish_reason, "length");
}

TEST(GenerationToy, ContextFullAndLongPromptsKeepTheirEnd) {
  const ModelSpec spec = toy_spec();
  const Transformer model(spec, random_weights(spec, test::test_seed(21), 0.5f));
  const ToyTokenizer tok(/*bos=*/-1, /*eos=*/-1);
  const int ctx = spec.max_position_embeddings;
  GenerationOptions o;
  o.max_new_tokens = 100;
  // 19 prompt tokens + 5 fed back fill the window; the 6th token needs no position.
  const std::string prompt = "defghijklmnopqrstuv";
  const Generation g = generate(model, tok, prompt, o);
  EXPECT_EQ(g.finish_reason, "context");
  EXPECT_EQ(g.tokens, naive_greedy(model, tok.encode(prompt, false), 100, -1));
  EXPECT_EQ(g.tokens.size(), size_t(ctx - 19 + 1));
  // A prompt longer than the window: its last ctx tokens are kept.
  const std::string long_prompt = "abcdefghijklmnopqrstuvwxyz01234567abcdef";
  const Generation l = generate(model, tok, long_prompt, o);
  const std::vector<int> ids = tok.encode(long_prompt, false);
  const std::vector<int> tail(ids.end() - ctx, ids.end());
  EXPECT_EQ(l.tokens, naive_greedy(model, tail, 1, -1));
  EXPECT_EQ(l.finish_reason, "context");
}

TEST(GenerationToy, EosStopsAndIsReturnedAsAToken) {
  const ModelSpec spec = toy_spec();
  const Transformer model(spec, random_weights(spec, 3, 0.5f));
  GenerationOptions o;
  o.max_new_tokens = 8;
  const std::string prompt = "hello";
  const Generation free_run = generate(model, ToyTokenizer(1, -1), prompt, o);
  ASSERT_EQ(free_run.tokens.size(), 8u);
  // Declare the 4th greedy token to be EOS: generation ends there.
  const int eos = free_run.tokens[3];
  size_t first = 0;
  while (free_run.tokens[first] != eos) ++first;
  const Generation g = generate(model, ToyTokenizer(1, eos), prompt, o);
  EXPECT_EQ(g.finish_reason, "eos");
  EXPECT_EQ(g.tokens, std::vector<int>(free_run.tokens.begin(),
                                       free_run.tokens.begin() + int64_t(first) + 1));
  EXPECT_EQ(g.text, ToyTokenizer(1, eos).decode(std::vector<int>(
                        free_run.tokens.begin(), free_run.tokens.begin() + int64_t(first))));
}

}  // namespace
}  // namespace qsweep
