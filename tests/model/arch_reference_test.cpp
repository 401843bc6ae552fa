// Qwen3 (q_norm/k_norm, explicit head_dim, tied embeddings) and Llama-3.1 (llama3
// rope_scaling, explicit head_dim, tied, sharded BF16) against the independent fp32
// reference logits in ../shared/models/{qwen3,llama31}-tiny-random/reference: the CPU
// Transformer on a fresh CPU backend and the KV-cache decode path. Also
// shows the reference notices each feature being dropped, checks the llama3 frequency
// factors against transformers' formula written out here, and the rope_type refusal.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "backends/backend.h"
#include "common/errors.h"
#include "common/mapped_file.h"
#include "model/model_spec.h"
#include "model/rope.h"
#include "model/safetensors.h"
#include "model/transformer.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

// fp32 order of operations at logit std ~10 (the READMEs' advice).
constexpr double kAbsTol = 1e-3;

struct Prompt {
  std::string name;
  std::vector<int> ids;
  std::vector<int> rows;  ///< positions whose logits the reference holds
};

struct Reference {
  std::string dir;
  ModelSpec spec;
  std::vector<Prompt> prompts;
  std::map<std::string, std::vector<float>> logits;  ///< [rows.size(), vocab] per prompt
};

std::string model_dir(const std::string& name) {
  return test::shared_dir() + "/models/" + name;
}

const Reference& reference(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Reference>> cache;
  auto& r = cache[name];
  if (!r) {
    r = std::make_unique<Reference>();
    r->dir = model_dir(name);
    r->spec = load_model_spec(r->dir);
    const auto j = nlohmann::json::parse(read_text_file(r->dir + "/reference/prompts.json"));
    SafetensorsFile f(r->dir + "/reference/logits.safetensors");
    for (const auto& p : j["prompts"]) {
      Prompt q{p["name"].get<std::string>(), p["token_ids"].get<std::vector<int>>(),
               p["rows"].get<std::vector<int>>()};
      const TensorView* t = f.find(q.name);
      QS_ASSERT(t != nullptr && t->shape == std::vector<int64_t>({int64_t(q.rows.size()),
                                                                  int64_t(r->spec.vocab_size)}));
      r->logits[q.name] = t->to_float();
      r->prompts.push_back(std::move(q));
    }
  }
  return *r;
}

const Transformer& model(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Transformer>> cache;
  auto& m = cache[name];
  if (!m) {
    const Reference& r = reference(name);
    m = std::make_unique<Transformer>(r.spec, load_weights(r.dir, r.spec));
  }
  return *m;
}

// Max |logit − reference| over the reference rows of prompt p, whose logits start at
// row `row0` of `logits` (one row per token of the prompt).
double max_abs_diff(const Reference& r, const Prompt& p, const MatrixRM& logits, int64_t row0) {
  const std::vector<float>& want = r.logits.at(p.name);
  const int64_t V = r.spec.vocab_size;
  double d = 0;
  for (size_t i = 0; i < p.rows.size(); ++i)
    for (int64_t v = 0; v < V; ++v)
      d = std::max(d, std::abs(double(logits(row0 + p.rows[i], v)) -
                               double(want[i * size_t(V) + size_t(v)])));
  return d;
}

// Largest difference over every prompt, run as one packed batch through `m`.
double max_diff_transformer(const std::string& name, const Transformer& m) {
  const Reference& r = reference(name);
  std::vector<std::vector<int>> seqs;
  for (const auto& p : r.prompts) seqs.push_back(p.ids);
  const MatrixRM logits = m.forward(seqs);
  double d = 0;
  int64_t row0 = 0;
  for (const auto& p : r.prompts) {
    d = std::max(d, max_abs_diff(r, p, logits, row0));
    row0 += int64_t(p.ids.size());
  }
  return d;
}

class ArchReference : public ::testing::TestWithParam<std::string> {};

TEST_P(ArchReference, SpecHasTheFeatures) {
  const ModelSpec& s = reference(GetParam()).spec;
  EXPECT_EQ(s.head_dim, 32);
  EXPECT_NE(s.head_dim * s.num_heads, s.hidden_size);  // explicit head_dim matters
  EXPECT_TRUE(s.tie_word_embeddings);
  if (GetParam() == "qwen3-tiny-random") {
    EXPECT_EQ(s.arch, Architecture::Qwen3);
    EXPECT_TRUE(s.qk_norm);
  } else {
    EXPECT_EQ(s.rope_scaling.type, RopeScaling::Type::Llama3);
  }
}

TEST_P(ArchReference, TransformerLogitsMatchReference) {
  const double d = max_diff_transformer(GetParam(), model(GetParam()));
  EXPECT_LT(d, kAbsTol);
  RecordProperty("max_abs_diff", std::to_string(d));
}

TEST_P(ArchReference, TransformerOnMadeCpuBackendMatchesReference) {
  const Reference& r = reference(GetParam());
  const std::unique_ptr<Backend> cpu = make_backend("cpu");
  const Transformer rm(model(GetParam()).spec(), model(GetParam()).weights(), *cpu);
  for (const auto& p : r.prompts) EXPECT_LT(max_abs_diff(r, p, rm.forward({p.ids}), 0), kAbsTol);
}

TEST_P(ArchReference, KvCacheDecodeMatchesReference) {
  // The longest prompt: a prefill of the first 250 tokens, then one token at a time.
  const Reference& r = reference(GetParam());
  const Prompt& p = r.prompts.back();
  ASSERT_GT(p.ids.size(), 300u);
  const Transformer& m = model(GetParam());
  KvCache cache;
  MatrixRM logits(int64_t(p.ids.size()), r.spec.vocab_size);
  logits.topRows(250) = m.decode(cache, std::vector<int>(p.ids.begin(), p.ids.begin() + 250));
  for (size_t t = 250; t < p.ids.size(); ++t) logits.row(int64_t(t)) = m.decode(cache, {p.ids[t]});
  EXPECT_LT(max_abs_diff(r, p, logits, 0), kAbsTol);
}

INSTANTIATE_TEST_SUITE_P(Models, ArchReference,
                         ::testing::Values("qwen3-tiny-random", "llama31-tiny-random"),
                         [](const auto& info) {
                           return info.param == "qwen3-tiny-random" ? "Qwen3" : "Llama31";
                         });

// The reference notices each feature missing: the differences are far above kAbsTol.
TEST(ArchReferenceSensitivity, DroppingQkNormIsCaught) {
  const Transformer& m = model("qwen3-tiny-random");
  ModelSpec s = m.spec();
  s.qk_norm = false;
  ModelWeights w = m.weights();
  for (auto& L : w.layers) L.q_norm = L.k_norm = VectorF();
  EXPECT_GT(max_diff_transformer("qwen3-tiny-random", Transformer(s, std::move(w))), 100 * kAbsTol);
}

TEST(ArchReferenceSensitivity, DroppingLlama3RopeScalingIsCaught) {
  const Transformer& m = model("llama31-tiny-random");
  ModelSpec s = m.spec();
  s.rope_scaling = RopeScaling();
  EXPECT_GT(max_diff_transformer("llama31-tiny-random", Transformer(s, m.weights())),
            100 * kAbsTol);
}

TEST(ArchReferenceSensitivity, UntiedOrZeroLmHeadIsCaught) {
  for (const char* name : {"qwen3-tiny-random", "llama31-tiny-random"}) {
    const Transformer& m = model(name);
    ModelWeights w = m.weights();
    w.lm_head.mutable_matrix().setZero();
    EXPECT_GT(max_diff_transformer(name, Transformer(m.spec(), std::move(w))), 100 * kAbsTol)
        << name;
  }
}

// transformers' _compute_llama3_parameters, written out in double (the base inv_freq in
// fp32 as torch computes it): inv_freq_llama per pair.
std::vector<double> hf_llama3_inv_freq(double base, int dim, double factor, double low_freq_factor,
                                       double high_freq_factor, double old_context_len) {
  const double pi = 3.141592653589793;
  std::vector<double> out;
  for (int i = 0; i < dim; i += 2) {
    const float inv_f32 = 1.0f / float(std::pow(base, double(float(i) / float(dim))));
    const double inv_freq = inv_f32;
    const double low_freq_wavelen = old_context_len / low_freq_factor;
    const double high_freq_wavelen = old_context_len / high_freq_factor;
    const double wavelen = 2 * pi / inv_freq;
    double inv_freq_llama = wavelen > low_freq_wavelen ? inv_freq / factor : inv_freq;
    const double smooth_factor =
        (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
    const double smoothed =
        (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama;
    const bool is_medium_freq = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    if (is_medium_freq) inv_freq_llama = smoothed;
    out.push_back(inv_freq_llama);
  }
  return out;
}

TEST(RopeFrequencies, Llama3FactorsFollowTransformersFormula) {
  struct Case {
    double theta;
    int head_dim, original;
    double factor;
  };
  // The shared tiny model (all three bands within 16 pairs) and Llama-3.1-8B's values.
  for (const Case c : {Case{500000.0, 32, 256, 8.0}, Case{500000.0, 128, 8192, 8.0}}) {
    ModelSpec s;
    s.head_dim = c.head_dim;
    s.rope_theta = c.theta;
    s.rope_scaling.type = RopeScaling::Type::Llama3;
    s.rope_scaling.factor = c.factor;
    s.rope_scaling.low_freq_factor = 1.0;
    s.rope_scaling.high_freq_factor = 4.0;
    s.rope_scaling.original_max_position_embeddings = c.original;
    const auto want = hf_llama3_inv_freq(c.theta, c.head_dim, c.factor, 1.0, 4.0, c.original);
    const auto factors = rope_freq_factors(s);
    const auto inv = rope_inv_freq(s);
    ModelSpec plain = s;
    plain.rope_scaling = RopeScaling();
    const auto base = rope_inv_freq(plain);
    ASSERT_EQ(factors.size(), size_t(c.head_dim / 2));
    ASSERT_EQ(inv.size(), want.size());
    int kept = 0, slowed = 0, smoothed = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(inv[i], want[i], 1e-6 * want[i]) << "pair " << i;
      EXPECT_NEAR(factors[i], double(base[i]) / want[i], 1e-6 * factors[i]) << "pair " << i;
      kept += factors[i] == 1.0f;
      slowed += factors[i] == float(c.factor);
      smoothed += factors[i] > 1.0f && factors[i] < float(c.factor);
    }
    EXPECT_GT(kept, 0);
    EXPECT_GT(slowed, 0);
    EXPECT_GT(smoothed, 0);
  }
}

TEST(RopeFrequencies, UnscaledHasNoFactors) {
  ModelSpec s;
  s.head_dim = 64;
  s.rope_theta = 10000.0;
  EXPECT_TRUE(rope_freq_factors(s).empty());
  const auto inv = rope_inv_freq(s);
  ASSERT_EQ(inv.size(), 32u);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(inv[size_t(i)], std::pow(10000.0, -i / 32.0), 1e-6);
}

TEST(RopeScalingConfig, UnknownRopeTypeIsRefusedByName) {
  std::string cfg = read_text_file(model_dir("llama31-tiny-random") + "/config.json");
  const std::string from = "\"rope_type\": \"llama3\"";
  const size_t at = cfg.find(from);
  ASSERT_NE(at, std::string::npos);
  cfg.replace(at, from.size(), "\"rope_type\": \"yarn\"");
  try {
    parse_model_spec(cfg, "m/config.json");
    FAIL() << "a yarn rope_scaling was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("m/config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rope_scaling.rope_type"), std::string::npos) << msg;
    EXPECT_NE(msg.find("yarn"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace qsweep
