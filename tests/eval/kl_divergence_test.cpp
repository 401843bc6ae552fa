// KL divergence against a stored baseline: exactness with k = vocab against a
// naive double-precision KL, the lower-bound property with k < vocab, identical
// and perturbed models, and the binary file (round trip, truncation, corruption).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "eval/datasets.h"
#include "eval/kl_divergence.h"
#include "model/model_spec.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

ModelSpec toy_spec() {
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

/// A copy of `m` with N(0, sigma²) added to one weight matrix.
Transformer perturbed(const Transformer& m, float sigma, uint64_t seed) {
  ModelWeights w = m.weights();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  MatrixRM& wq = w.layers[0].linear(LinearRole::Down).mutable_matrix();
  for (int64_t i = 0; i < wq.size(); ++i) wq.data()[i] += d(rng);
  return Transformer(m.spec(), std::move(w));
}

/// Exact KL(P || Q) per scored position of the chunks protocol, naively in double.
struct Naive {
  std::vector<double> kl;
  int64_t agree = 0;
  std::vector<double> dlogp;
};
Naive naive_kl(const Transformer& p, const Transformer& q, const std::vector<int>& tokens,
               int ctx) {
  Naive out;
  const int64_t windows = int64_t(tokens.size()) / ctx;
  for (int64_t w = 0; w < windows; ++w) {
    const std::vector<int> seq(tokens.begin() + w * ctx, tokens.begin() + (w + 1) * ctx);
    const MatrixRM lp = p.forward(seq);
    const MatrixRM lq = q.forward(seq);
    const int64_t V = lp.cols();
    for (int t = 1; t < ctx; ++t) {
      const auto logsm = [V](const MatrixRM& m, int64_t row) {
        std::vector<double> v(static_cast<size_t>(V));
        double mx = -1e300;
        for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(m(row, j)));
        double s = 0;
        for (int64_t j = 0; j < V; ++j) s += std::exp(double(m(row, j)) - mx);
        for (int64_t j = 0; j < V; ++j) v[size_t(j)] = double(m(row, j)) - mx - std::log(s);
        return v;
      };
      const auto a = logsm(lp, t - 1);
      const auto b = logsm(lq, t - 1);
      double kl = 0;
      size_t am = 0, bm = 0;
      for (size_t j = 0; j < a.size(); ++j) {
        kl += std::exp(a[j]) * (a[j] - b[j]);
        if (a[j] > a[am]) am = j;
        if (b[j] > b[bm]) bm = j;
      }
      out.kl.push_back(kl);
      out.agree += am == bm;
      const int target = seq[size_t(t)];
      out.dlogp.push_back(b[size_t(target)] - a[size_t(target)]);
    }
  }
  return out;
}

class ToyKl : public ::testing::Test {
 protected:
  ToyKl() : base_(toy_spec(), random_weights(toy_spec(), 7, 0.3f)) {
    std::mt19937 rng(uint32_t(test::test_seed(11)));
    std::uniform_int_distribution<int> d(0, 30);
    for (int i = 0; i < 300; ++i) tokens_.push_back(d(rng));
  }
  Transformer base_;
  std::vector<int> tokens_;
};

TEST_F(ToyKl, FullVocabularyIsExactKl) {
  const Transformer var = perturbed(base_, 0.3f, 5);
  KlBaselineOptions o;
  o.ctx = 64;
  o.top_k = 31;
  const KlBaseline b = compute_kl_baseline(base_, tokens_, o);
  EXPECT_EQ(b.windows, 4);
  EXPECT_EQ(b.tokens_dropped, 300 - 256);
  EXPECT_EQ(b.positions, 4 * 63);
  KlOptions ko;
  ko.keep_token_kl = true;
  const KlResult r = evaluate_kl_divergence(var, b, ko);
  EXPECT_TRUE(r.exact);
  const Naive n = naive_kl(base_, var, tokens_, 64);
  ASSERT_EQ(r.token_kl.size(), n.kl.size());
  double sum = 0, dsum = 0;
  for (size_t i = 0; i < n.kl.size(); ++i) {
    EXPECT_NEAR(r.token_kl[i], n.kl[i], 1e-5 + 1e-4 * n.kl[i]) << "position " << i;
    sum += n.kl[i];
    dsum += n.dlogp[i];
  }
  EXPECT_GT(sum, 0.0);
  EXPECT_NEAR(r.mean_kld, sum / double(n.kl.size()), 1e-6);
  EXPECT_NEAR(r.top1_agreement, 100.0 * double(n.agree) / double(n.kl.size()), 1e-9);
  EXPECT_NEAR(r.mean_delta_logp, dsum / double(n.kl.size()), 1e-5);
  EXPECT_EQ(r.tokens, int64_t(n.kl.size()));
  EXPECT_GE(r.max_kld, r.p99_kld);
  EXPECT_GE(r.p99_kld, r.median_kld);
}

TEST_F(ToyKl, TopKIsALowerBound) {
  const Transformer var = perturbed(base_, 0.3f, 5);
  const Naive n = naive_kl(base_, var, tokens_, 64);
  double prev = 0;
  for (int k : {1, 4, 16, 30}) {
    KlBaselineOptions o;
    o.ctx = 64;
    o.top_k = k;
    KlOptions ko;
    ko.keep_token_kl = true;
    const KlResult r = evaluate_kl_divergence(var, compute_kl_baseline(base_, tokens_, o), ko);
    EXPECT_FALSE(r.exact);
    for (size_t i = 0; i < n.kl.size(); ++i)
      EXPECT_LE(r.token_kl[i], n.kl[i] + 1e-6) << "k " << k << " position " << i;
    EXPECT_GE(r.mean_kld, prev - 1e-7) << "a larger k refines the partition";
    prev = r.mean_kld;
  }
}

TEST_F(ToyKl, IdenticalModelGivesZero) {
  for (bool fp16 : {false, true}) {
    KlBaselineOptions o;
    o.ctx = 64;
    o.top_k = 8;
    o.fp16_values = fp16;
    const KlResult r = evaluate_kl_divergence(base_, compute_kl_baseline(base_, tokens_, o));
    EXPECT_EQ(r.mean_kld, 0.0) << "fp16 " << fp16;
    EXPECT_EQ(r.max_kld, 0.0);
    EXPECT_EQ(r.top1_agreement, 100.0);
    EXPECT_EQ(r.top1_agreement_standard_error, 0.0);
    EXPECT_EQ(r.mean_delta_logp, 0.0);
  }
}

TEST_F(ToyKl, RejectsBadOptions) {
  KlBaselineOptions o;
  o.ctx = 64;
  o.top_k = 32;  // > vocab 31
  EXPECT_THROW(compute_kl_baseline(base_, tokens_, o), Error);
  o.top_k = 0;
  EXPECT_THROW(compute_kl_baseline(base_, tokens_, o), Error);
  o.top_k = 4;
  o.ctx = 1;
  EXPECT_THROW(compute_kl_baseline(base_, tokens_, o), Error);
  o.ctx = 64;
  EXPECT_THROW(compute_kl_baseline(base_, {3}, o), Error);
  // a short text is one short window, as in perplexity's chunks protocol
  const KlBaseline b =
      compute_kl_baseline(base_, std::vector<int>(tokens_.begin(), tokens_.begin() + 10), o);
  EXPECT_EQ(b.windows, 1);
  EXPECT_EQ(b.positions, 9);
}

std::string read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void write_bytes(const std::string& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), std::streamsize(s.size()));
}
void expect_error(const std::string& path, const std::string& needle) {
  try {
    read_kl_baseline(path);
    ADD_FAILURE() << "no error for " << needle;
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}

TEST_F(ToyKl, FileRoundTripAndBadFiles) {
  const std::string dir = test::make_temp_dir("kld");
  const Transformer var = perturbed(base_, 0.2f, 9);
  for (bool fp16 : {false, true}) {
    KlBaselineOptions o;
    o.ctx = 64;
    o.top_k = 5;
    o.fp16_values = fp16;
    const KlBaseline b = compute_kl_baseline(base_, tokens_, o);
    const std::string path = dir + (fp16 ? "/b16.kld" : "/b32.kld");
    write_kl_baseline(path, b);
    const KlBaseline c = read_kl_baseline(path);
    EXPECT_EQ(c.protocol, b.protocol);
    EXPECT_EQ(c.ctx, b.ctx);
    EXPECT_EQ(c.top_k, b.top_k);
    EXPECT_EQ(c.vocab, b.vocab);
    EXPECT_EQ(c.fp16_values, fp16);
    EXPECT_EQ(c.tokens_in_text, b.tokens_in_text);
    EXPECT_EQ(c.tokens_dropped, b.tokens_dropped);
    EXPECT_EQ(c.windows, b.windows);
    EXPECT_EQ(c.positions, b.positions);
    EXPECT_EQ(c.tokens, b.tokens);
    EXPECT_EQ(c.top_ids, b.top_ids);
    EXPECT_EQ(c.top_logp, b.top_logp);  // fp16 values were rounded before storing
    EXPECT_EQ(c.rest_logp, b.rest_logp);
    EXPECT_EQ(c.target_logp, b.target_logp);
    const KlResult r1 = evaluate_kl_divergence(var, b);
    const KlResult r2 = evaluate_kl_divergence(var, c);
    EXPECT_EQ(r1.mean_kld, r2.mean_kld);
    EXPECT_GT(r1.mean_kld, 0.0);
    EXPECT_NE(r1.protocol.find(fp16 ? "values=fp16" : "values=fp32"), std::string::npos);
  }
  const std::string good = read_bytes(dir + "/b32.kld");
  const std::string bad = dir + "/bad.kld";
  write_bytes(bad, good.substr(0, good.size() - 9));
  expect_error(bad, "truncated");
  write_bytes(bad, good.substr(0, 20));
  expect_error(bad, "truncated");
  write_bytes(bad, good + "x");
  expect_error(bad, "longer");
  std::string corrupt = good;
  corrupt[good.size() / 2] = char(corrupt[good.size() / 2] ^ 0x10);
  write_bytes(bad, corrupt);
  expect_error(bad, "checksum");
  std::string magic = good;
  magic[0] = 'X';
  write_bytes(bad, magic);
  expect_error(bad, "magic");
  std::string version = good;
  version[8] = 9;
  write_bytes(bad, version);
  expect_error(bad, "version");
  std::string big = good;  // positions = 2^62: overflow must be an Error, not an allocation
  big[8 + 24 + 32 + 7] = 0x40;
  write_bytes(bad, big);
  expect_error(bad, "");
  EXPECT_THROW(read_kl_baseline(dir + "/missing.kld"), Error);
}

// tinycode on 2 windows of held-out code: top-32 ≤ exact (k = vocab), and close.
TEST(TinycodeKl, Top32IsCloseBelowExact) {
  const std::string dir = test::tinycode_dir();
  const ModelSpec spec = load_model_spec(dir);
  const Transformer base(spec, load_weights(dir, spec));
  const Transformer var = perturbed(base, 0.02f, 3);
  const auto tok = load_tokenizer(dir);
  const EvalDataset ds = resolve_eval_dataset("code-heldout", test::data_dir());
  std::string text = read_dataset_text(ds).substr(0, 20000);
  std::vector<int> tokens = tok->encode(text, false);
  ASSERT_GE(tokens.size(), 512u);
  tokens.resize(512);
  KlBaselineOptions o;
  o.ctx = 256;
  KlOptions ko;
  ko.keep_token_kl = true;
  const KlResult r32 = evaluate_kl_divergence(var, compute_kl_baseline(base, tokens, o), ko);
  o.top_k = spec.vocab_size;
  const KlResult rall = evaluate_kl_divergence(var, compute_kl_baseline(base, tokens, o), ko);
  const Naive n = naive_kl(base, var, tokens, 256);
  ASSERT_EQ(rall.token_kl.size(), n.kl.size());
  double exact = 0;
  for (size_t i = 0; i < n.kl.size(); ++i) {
    EXPECT_NEAR(rall.token_kl[i], n.kl[i], 1e-5 + 1e-3 * n.kl[i]) << i;
    EXPECT_LE(r32.token_kl[i], n.kl[i] + 1e-5) << i;
    exact += n.kl[i];
  }
  exact /= double(n.kl.size());
  std::printf("tinycode perturbed: exact KL %.6g, top-32 %.6g, full %.6g, agreement %.2f%%\n",
              exact, r32.mean_kld, rall.mean_kld, r32.top1_agreement);
  EXPECT_GT(r32.mean_kld, 0.0);
  EXPECT_LE(r32.mean_kld, rall.mean_kld + 1e-7);
  EXPECT_GT(r32.mean_kld, 0.7 * exact) << "top-32 + rest should capture most of the KL";
  EXPECT_NEAR(rall.mean_kld, exact, 1e-5 + 1e-4 * exact);
  const KlResult same = evaluate_kl_divergence(base, compute_kl_baseline(base, tokens, {}));
  EXPECT_EQ(same.mean_kld, 0.0);
  EXPECT_EQ(same.top1_agreement, 100.0);
}

}  // namespace
}  // namespace qsweep
