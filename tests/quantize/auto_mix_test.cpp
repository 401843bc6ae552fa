// Per-group type plans, the budgeted solver and the sensitivity study (issue #19).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "quantize/auto_mix.h"
#include "quantize/auto_mix_model.h"
#include "quantize/sensitivity.h"
#include "quantizers/kquants/kquants.h"
#include "tests/quantize/tiny_fixture.h"

namespace qsweep {
namespace {
namespace gt = kquants::ggml_type;

TEST(GroupTypes, GroupsAreTheWeightTensorsInFileOrder) {
  const ModelSpec& spec = tiny().model.spec();
  const auto groups = tensor_groups(spec);
  ASSERT_EQ(groups.size(), size_t(spec.num_layers) * 7 + 2);
  EXPECT_EQ(groups.front().role, "token_embd");
  EXPECT_EQ(groups.back().role, "output");
  EXPECT_EQ(groups[1].name, "blk.0.attn_q.weight");
  EXPECT_EQ(groups[1].role, "attn_q");
  EXPECT_EQ(groups[7].role, "ffn_down");
  EXPECT_EQ(groups[7].layer, 0);
  EXPECT_EQ(groups[8].layer, 1);
  // ffn_down [hidden, intermediate]: rows 256 of 768 → Q4_K 768/256 blocks × 144 bytes.
  EXPECT_EQ(group_bytes(groups[7], gt::Q4_K), 256 * 3 * 144);
  EXPECT_EQ(group_bytes(groups[7], gt::F16), 256 * 768 * 2);
}

// A per-group plan equal to Q4_K_M's rules writes the very bytes of the built-in mix.
TEST(GroupTypes, PlanOfQ4KMGroupsIsByteIdenticalToTheMix) {
  const Transformer& m = tiny().model;
  const KQuantMixResult mix = quantize_kquant_mix(m, kquants::Mix::Q4_K_M, nullptr);
  std::map<std::string, int32_t> types;
  for (const auto& c : mix.choices) types[c.name] = c.ggml_type;
  const GgufTypePlan plan =
      group_type_plan(m.spec(), types, kquants::mix_llama_ftype(kquants::Mix::Q4_K_M));
  const auto tensors = encode_gguf_tensors("test", m.spec(), m.weights(), plan);
  const auto mixed = encode_gguf_tensors("test", m.spec(), m.weights(), mix.plan);
  ASSERT_EQ(tensors.size(), mixed.size());
  ASSERT_EQ(mix.source.size(), mixed.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(tensors[i].name, mixed[i].name);
    EXPECT_EQ(mix.source[i].name, mixed[i].name);
    EXPECT_EQ(tensors[i].ggml_type, mixed[i].ggml_type) << tensors[i].name;
    EXPECT_TRUE(tensors[i].bytes == mixed[i].bytes) << tensors[i].name;
  }
  EXPECT_EQ(plan.write_options().file_type, mix.write_options.file_type);
  EXPECT_THROW(group_type_plan(m.spec(), {{"blk.99.attn_q.weight", gt::Q4_K}}), Error);
}

// ---- solver against brute force ----

struct Instance {
  std::vector<std::vector<MixOption>> options;
  int64_t budget = 0;
};

Instance random_instance(std::mt19937& rng, int groups, int types) {
  Instance in;
  std::uniform_int_distribution<int> bytes(1, 30);
  std::uniform_real_distribution<double> cost(0, 1);
  int64_t least = 0, most = 0;
  for (int g = 0; g < groups; ++g) {
    std::vector<MixOption> o;
    int64_t lo = 1 << 30, hi = 0;
    for (int t = 0; t < types; ++t) {
      o.push_back({int64_t(bytes(rng)) * 4, cost(rng)});
      lo = std::min(lo, o.back().bytes);
      hi = std::max(hi, o.back().bytes);
    }
    least += lo;
    most += hi;
    in.options.push_back(o);
  }
  in.budget = std::uniform_int_distribution<int64_t>(least, most)(rng);
  return in;
}

/// Least cost of any choice using at most `budget` bytes (enumerating every choice).
double brute_force(const Instance& in, int64_t budget) {
  const size_t n = in.options.size();
  std::vector<size_t> idx(n, 0);
  double best = INFINITY;
  while (true) {
    int64_t b = 0;
    double c = 0;
    for (size_t g = 0; g < n; ++g) {
      b += in.options[g][idx[g]].bytes;
      c += in.options[g][idx[g]].cost;
    }
    if (b <= budget) best = std::min(best, c);
    size_t g = 0;
    while (g < n && ++idx[g] == in.options[g].size()) idx[g++] = 0;
    if (g == n) break;
  }
  return best;
}

TEST(MixSolver, DynamicProgrammingMatchesBruteForce) {
  std::mt19937 rng(19);
  for (int trial = 0; trial < 200; ++trial) {
    const Instance in = random_instance(rng, 1 + trial % 6, 1 + trial % 4);
    const MixSolution s = solve_mix(in.options, in.budget);
    ASSERT_TRUE(s.exact);
    EXPECT_LE(s.bytes, in.budget);
    EXPECT_NEAR(s.cost, brute_force(in, in.budget), 1e-12) << "trial " << trial;
  }
}

TEST(MixSolver, LagrangianIsFeasibleAndOptimalForTheBytesItUses) {
  std::mt19937 rng(7);
  int tight = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const Instance in = random_instance(rng, 2 + trial % 5, 2 + trial % 3);
    const MixSolution s = solve_mix_lagrangian(in.options, in.budget);
    ASSERT_FALSE(s.exact);
    EXPECT_LE(s.bytes, in.budget);
    EXPECT_NEAR(s.cost, brute_force(in, s.bytes), 1e-12) << "trial " << trial;
    if (std::abs(s.cost - brute_force(in, in.budget)) < 1e-12) ++tight;
    // Forcing the fallback through solve_mix gives the same answer.
    EXPECT_EQ(solve_mix(in.options, in.budget, 1).choice, s.choice);
  }
  EXPECT_GT(tight, 50);  // often optimal for the whole budget too
}

TEST(MixSolver, ImpossibleBudgetIsAnError) {
  const std::vector<std::vector<MixOption>> o = {{{10, 0}, {20, 0}}, {{5, 0}}};
  EXPECT_THROW(solve_mix(o, 14), Error);
  EXPECT_EQ(solve_mix(o, 15).bytes, 15);
}

// ---- sensitivity ----

std::vector<std::vector<int>> windows(int n, int len) {
  std::vector<std::vector<int>> w;
  const auto& t = tiny().code_tokens;
  for (int i = 0; i < n; ++i) w.emplace_back(t.begin() + i * len, t.begin() + (i + 1) * len);
  return w;
}

/// KL(P_fp16 || Q) per token, from whole forward passes of two models (no cache).
double direct_kl(const Transformer& base, const Transformer& q,
                 const std::vector<std::vector<int>>& w) {
  MatrixRM p = base.forward(w), r = q.forward(w);
  log_softmax_rows(p);
  log_softmax_rows(r);
  double sum = 0;
  for (int64_t i = 0; i < p.rows(); ++i)
    for (int64_t v = 0; v < p.cols(); ++v) sum += std::exp(p(i, v)) * (p(i, v) - r(i, v));
  return sum / double(p.rows());
}

TEST(Sensitivity, CachedMeasurementEqualsAWholeForwardPass) {
  const Transformer& base = tiny().model;
  const auto w = windows(3, 48);
  SensitivityStudy study(base, w, /*batch_windows=*/2);  // two batches
  EXPECT_EQ(study.tokens(), 3 * 48);
  const auto& groups = study.groups();
  for (size_t gi : {size_t(0), size_t(9), size_t(7 * 5 + 7), groups.size() - 1}) {
    const TensorGroup& g = groups[gi];
    // Independent: quantize → dequantize through kquants directly, whole forward passes.
    ModelWeights qw = base.weights();
    MatrixRM& m = group_matrix(qw, g).mutable_matrix();
    const auto bytes =
        kquants::quantize_tensor(kquants::QuantType::Q3_K, m.data(), m.rows(), m.cols());
    const auto d = kquants::dequantize_tensor(kquants::QuantType::Q3_K, bytes, m.rows(), m.cols());
    std::copy(d.begin(), d.end(), m.data());
    const double expect = direct_kl(base, Transformer(base.spec(), qw), w);
    const SensitivityMeasurement cached = study.measure(g, gt::Q3_K);
    const SensitivityMeasurement full = study.measure(g, gt::Q3_K, /*from_cache=*/false);
    EXPECT_GT(expect, 0) << g.name;
    EXPECT_NEAR(cached.kl, expect, 1e-6 * expect + 1e-9) << g.name;
    EXPECT_NEAR(full.kl, expect, 1e-6 * expect + 1e-9) << g.name;
    EXPECT_EQ(cached.bytes, int64_t(bytes.size()));
    EXPECT_GT(cached.kl_se, 0);
  }
  // The study restores the group: the FP16 model measured against itself is 0.
  EXPECT_EQ(study.measure_mix({}).kl, 0);
  // A mix of one group is that group's measurement; more bits, less KL.
  const double one = study.measure_mix({{groups[9].name, gt::Q2_K}}).kl;
  EXPECT_NEAR(one, study.measure(groups[9], gt::Q2_K).kl, 1e-9);
  EXPECT_LT(study.measure(groups[9], gt::Q6_K).kl, one);
}

// What one sensitivity node computes and stores (issue #19), and the mix read back from it.
TEST(Sensitivity, MeasureTypeIsEveryGroupsMeasurementAndTheStoredFormRoundTrips) {
  const Transformer& base = tiny().model;
  const auto w = windows(2, 16);
  SensitivityStudy study(base, w);
  const std::vector<SensitivityMeasurement> all = study.measure_type(gt::Q8_0);
  ASSERT_EQ(all.size(), study.groups().size());
  for (size_t gi : {size_t(0), size_t(13), all.size() - 1}) {
    EXPECT_EQ(all[gi].group, study.groups()[gi].name);
    EXPECT_EQ(all[gi].kl, study.measure(study.groups()[gi], gt::Q8_0).kl);
    const SensitivityMeasurement back =
        sensitivity_from_json(sensitivity_to_json(all[gi]), "s.json");
    EXPECT_EQ(back.group, all[gi].group);
    EXPECT_EQ(back.type, gt::Q8_0);
    EXPECT_EQ(back.kl, all[gi].kl);
    EXPECT_EQ(back.bytes, all[gi].bytes);
    EXPECT_EQ(back.layer, all[gi].layer);
  }
  nlohmann::json bad = sensitivity_to_json(all[0]);
  bad["kl"] = -0.5;
  EXPECT_THROW(sensitivity_from_json(bad, "s.json"), Error);
  bad = sensitivity_to_json(all[0]);
  bad["type"] = "Q9_K";
  try {
    sensitivity_from_json(bad, "s.json");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("s.json: key 'type'"), std::string::npos) << e.what();
  }
  // The mix from the table: at Q8_0's own size every group is Q8_0 (cheaper than F16, and
  // nothing else fits); a table of another model is an error naming the group.
  CalibrationSet held;
  held.windows = w;
  const int64_t q8_bytes = [&] {
    int64_t b = 0;
    for (const auto& m : all) b += m.bytes;
    return b;
  }();
  int64_t params = 0;
  for (const auto& g : study.groups()) params += g.params();
  const QuantMethodConfig cfg{Method::AutoMix, AutoMixOptions{"", 8.0 * q8_bytes / params}};
  const QuantizedModel qm = quantize_auto_mix_from_table(base, cfg, all, held);
  EXPECT_EQ(qm.method_meta["weight_bytes"], q8_bytes);
  for (const auto& c : qm.method_meta["choices"]) EXPECT_EQ(c["type"], "Q8_0") << c["name"];
  std::vector<SensitivityMeasurement> other = all;
  other[3].group = "blk.99.attn_q.weight";
  try {
    quantize_auto_mix_from_table(base, cfg, other, held);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'blk.99.attn_q.weight', which is no tensor group"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace qsweep
