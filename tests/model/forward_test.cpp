// The forward pass on random models written to disk by the test itself:
//  * against a naive double-precision implementation written from the HF Llama
//    definition (loops, no shared code) — GQA, odd vocab, q/k/v bias, sliding window;
//  * whole-model vs layer-by-layer entry points, and the linear-input hook;
//  * packing several sequences in one batch changes nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include <filesystem>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "model/model_spec.h"
#include "model/safetensors.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "tests/support/small_model.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

constexpr double kForwardMaxRelErr = 1e-4;

ModelSpec small_spec(Architecture arch) {
  return test::small_model_spec(arch);
}

using Mat = std::vector<std::vector<double>>;

Mat matmul_t(const Mat& x, const MatrixRM& W, const VectorF& b) {
  Mat y(x.size(), std::vector<double>(size_t(W.rows()), 0.0));
  for (size_t t = 0; t < x.size(); ++t)
    for (int64_t o = 0; o < W.rows(); ++o) {
      double acc = b.size() ? b[o] : 0.0;
      for (int64_t i = 0; i < W.cols(); ++i) acc += x[t][size_t(i)] * W(o, i);
      y[t][size_t(o)] = acc;
    }
  return y;
}

Mat rmsnorm(const Mat& x, const VectorF& w, double eps) {
  Mat y = x;
  for (auto& row : y) {
    double ms = 0;
    for (double v : row) ms += v * v;
    ms /= double(row.size());
    for (size_t i = 0; i < row.size(); ++i) row[i] = row[i] / std::sqrt(ms + eps) * w[int64_t(i)];
  }
  return y;
}

void rope(Mat& x, int heads, int hd, double theta) {
  for (size_t p = 0; p < x.size(); ++p)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < hd / 2; ++i) {
        const double ang = double(p) * std::pow(theta, -2.0 * i / hd);
        double& a = x[p][size_t(h * hd + i)];
        double& b = x[p][size_t(h * hd + i + hd / 2)];
        const double a0 = a, b0 = b;
        a = a0 * std::cos(ang) - b0 * std::sin(ang);
        b = b0 * std::cos(ang) + a0 * std::sin(ang);
      }
}

// The naive reference: one sequence, double precision.
Mat naive_logits(const ModelSpec& s, const ModelWeights& w, const std::vector<int>& ids) {
  const size_t T = ids.size();
  Mat h(T, std::vector<double>(size_t(s.hidden_size)));
  for (size_t t = 0; t < T; ++t)
    for (int i = 0; i < s.hidden_size; ++i) h[t][size_t(i)] = w.embed.to_matrix()(ids[t], i);
  for (const auto& L : w.layers) {
    Mat x = rmsnorm(h, L.attn_norm, s.rms_norm_eps);
    Mat q = matmul_t(x, L.wq.to_matrix(), L.bq), k = matmul_t(x, L.wk.to_matrix(), L.bk),
        v = matmul_t(x, L.wv.to_matrix(), L.bv);
    rope(q, s.num_heads, s.head_dim, s.rope_theta);
    rope(k, s.num_kv_heads, s.head_dim, s.rope_theta);
    Mat att(T, std::vector<double>(size_t(s.num_heads * s.head_dim), 0.0));
    const int group = s.num_heads / s.num_kv_heads;
    for (int hh = 0; hh < s.num_heads; ++hh) {
      const int kvh = hh / group;
      for (size_t i = 0; i < T; ++i) {
        std::vector<double> p(T, 0.0);
        double mx = -1e300, sum = 0;
        for (size_t j = 0; j <= i; ++j) {
          if (s.sliding_window > 0 && i - j >= size_t(s.sliding_window)) continue;
          double d = 0;
          for (int e = 0; e < s.head_dim; ++e)
            d += q[i][size_t(hh * s.head_dim + e)] * k[j][size_t(kvh * s.head_dim + e)];
          p[j] = d / std::sqrt(double(s.head_dim));
          mx = std::max(mx, p[j]);
        }
        for (size_t j = 0; j <= i; ++j) {
          if (s.sliding_window > 0 && i - j >= size_t(s.sliding_window)) {
            p[j] = 0;
            continue;
          }
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        for (size_t j = 0; j <= i; ++j)
          for (int e = 0; e < s.head_dim; ++e)
            att[i][size_t(hh * s.head_dim + e)] += p[j] / sum * v[j][size_t(kvh * s.head_dim + e)];
      }
    }
    Mat o = matmul_t(att, L.wo.to_matrix(), L.bo);
    for (size_t t = 0; t < T; ++t)
      for (size_t i = 0; i < h[t].size(); ++i) h[t][i] += o[t][i];
    x = rmsnorm(h, L.mlp_norm, s.rms_norm_eps);
    Mat g = matmul_t(x, L.w_gate.to_matrix(), VectorF()),
        u = matmul_t(x, L.w_up.to_matrix(), VectorF());
    for (size_t t = 0; t < T; ++t)
      for (size_t i = 0; i < g[t].size(); ++i)
        g[t][i] = g[t][i] / (1 + std::exp(-g[t][i])) * u[t][i];
    Mat d = matmul_t(g, L.w_down.to_matrix(), VectorF());
    for (size_t t = 0; t < T; ++t)
      for (size_t i = 0; i < h[t].size(); ++i) h[t][i] += d[t][i];
  }
  return matmul_t(rmsnorm(h, w.final_norm, s.rms_norm_eps), w.lm_head.to_matrix(), VectorF());
}

double rel_err(const MatrixRM& got, int64_t row0, const Mat& want) {
  double num = 0, den = 0;
  for (size_t t = 0; t < want.size(); ++t)
    for (size_t v = 0; v < want[t].size(); ++v) {
      num = std::max(num, std::abs(double(got(row0 + int64_t(t), int64_t(v))) - want[t][v]));
      den = std::max(den, std::abs(want[t][v]));
    }
  return num / den;
}

std::vector<int> random_ids(int n, int vocab, std::mt19937& rng) {
  std::uniform_int_distribution<int> d(0, vocab - 1);
  std::vector<int> ids(static_cast<size_t>(n));
  for (auto& x : ids) x = d(rng);
  return ids;
}

class ForwardArch : public ::testing::TestWithParam<Architecture> {};

TEST_P(ForwardArch, MatchesNaiveReferenceAfterDiskRoundTrip) {
  const uint64_t seed = test::test_seed(1234);
  const ModelSpec spec = small_spec(GetParam());
  const std::string dir = test::make_temp_dir("fwd");
  // Written in F32 so the round trip is exact and the naive reference sees the same weights.
  save_hf_checkpoint(dir, spec, random_weights(spec, seed, 0.2f), "F32");
  const ModelSpec loaded = load_model_spec(dir);
  EXPECT_EQ(loaded.qkv_bias, spec.qkv_bias);
  EXPECT_EQ(loaded.sliding_window, spec.sliding_window);
  const Transformer model(loaded, load_weights(dir, loaded));

  std::mt19937 rng{uint32_t(seed)};
  const std::vector<std::vector<int>> seqs = {random_ids(17, spec.vocab_size, rng),
                                              random_ids(1, spec.vocab_size, rng),
                                              random_ids(9, spec.vocab_size, rng)};
  const MatrixRM packed = model.forward(seqs);
  int64_t row = 0;
  for (const auto& ids : seqs) {
    const Mat want = naive_logits(spec, model.weights(), ids);
    EXPECT_LT(rel_err(packed, row, want), kForwardMaxRelErr) << "length " << ids.size();
    // The same sequence alone gives the same logits as inside the packed batch.
    const MatrixRM alone = model.forward(ids);
    EXPECT_LT((alone - packed.middleRows(row, alone.rows())).cwiseAbs().maxCoeff(), 1e-5);
    row += int64_t(ids.size());
  }
}

TEST(Forward, ShardedCheckpointLoadsLikeASingleFile) {
  const ModelSpec spec = small_spec(Architecture::Llama);
  const std::string single = test::make_temp_dir("single");
  save_hf_checkpoint(single, spec, random_weights(spec, 8, 0.2f), "BF16");
  // Split the single file into two shards plus the index Hugging Face writes.
  const std::string sharded = test::make_temp_dir("sharded");
  std::filesystem::copy_file(single + "/config.json", sharded + "/config.json");
  SafetensorsFile whole(single + "/model.safetensors");
  std::vector<TensorToWrite> a, b;
  std::string index = "{\"metadata\": {}, \"weight_map\": {";
  for (size_t i = 0; i < whole.tensors().size(); ++i) {
    const TensorView& t = whole.tensors()[i];
    const bool first = i % 2 == 0;
    (first ? a : b).push_back({t.name, t.dtype, t.shape, t.data});
    index += cat(i ? ", " : "", "\"", t.name, "\": \"model-0000", first ? 1 : 2,
                 "-of-00002.safetensors\"");
  }
  index += "}}";
  write_safetensors(sharded + "/model-00001-of-00002.safetensors", a);
  write_safetensors(sharded + "/model-00002-of-00002.safetensors", b);
  write_file_atomic(sharded + "/model.safetensors.index.json", index.data(), index.size());
  const SafetensorsCheckpoint ckpt(sharded);
  EXPECT_EQ(ckpt.files().size(), 2u);
  const Transformer m1(spec, load_weights(single, spec)), m2(spec, load_weights(sharded, spec));
  const std::vector<int> ids = {1, 5, 9, 2, 36};
  EXPECT_EQ((m1.forward(ids) - m2.forward(ids)).cwiseAbs().maxCoeff(), 0.0f);
}

INSTANTIATE_TEST_SUITE_P(Architectures, ForwardArch,
                         ::testing::Values(Architecture::Llama, Architecture::Qwen2,
                                           Architecture::Mistral));

TEST(Forward, LayerByLayerEqualsWholeModelAndHookSeesEveryLinear) {
  const ModelSpec spec = small_spec(Architecture::Llama);
  const Transformer model(spec, random_weights(spec, test::test_seed(99), 0.2f));
  std::mt19937 rng(3);
  const std::vector<std::vector<int>> seqs = {random_ids(12, spec.vocab_size, rng),
                                              random_ids(7, spec.vocab_size, rng)};
  const MatrixRM whole = model.forward(seqs);

  std::vector<int> lengths;
  MatrixRM h = model.embed(seqs, &lengths);
  EXPECT_EQ(lengths, (std::vector<int>{12, 7}));
  std::map<std::pair<int, LinearRole>, int64_t> seen_cols;
  for (int l = 0; l < spec.num_layers; ++l)
    model.run_layer(l, h, lengths, [&](int layer, LinearRole role, const MatrixRM& x) {
      EXPECT_EQ(x.rows(), 19);
      seen_cols[{layer, role}] = x.cols();
    });
  const MatrixRM by_layer = model.head(h);
  EXPECT_EQ((whole - by_layer).cwiseAbs().maxCoeff(), 0.0f);

  ASSERT_EQ(seen_cols.size(), size_t(7 * spec.num_layers));
  for (int l = 0; l < spec.num_layers; ++l)
    for (LinearRole r : kAllLinearRoles) {
      // The hook's input width is the linear's in_features.
      EXPECT_EQ(seen_cols[std::make_pair(l, r)], model.weights().layers[size_t(l)].linear(r).cols())
          << "layer " << l << " " << linear_role_name(r);
    }
}

TEST(Forward, StopAfterSeesTheSameInputsAndNoMore) {
  const ModelSpec spec = small_spec(Architecture::Qwen2);
  const Transformer model(spec, random_weights(spec, 17, 0.2f));
  std::mt19937 rng(5);
  const std::vector<std::vector<int>> seqs = {random_ids(10, spec.vocab_size, rng)};
  std::vector<int> lengths;
  const MatrixRM h0 = model.embed(seqs, &lengths);
  std::map<LinearRole, MatrixRM> full, part;
  MatrixRM h = h0;
  model.run_layer(1, h, lengths, [&](int, LinearRole r, const MatrixRM& x) { full[r] = x; });
  for (LinearRole stop : kAllLinearRoles) {
    part.clear();
    MatrixRM s = h0;
    model.run_layer(
        1, s, lengths, [&](int, LinearRole r, const MatrixRM& x) { part[r] = x; }, stop);
    // Everything up to the stop role's input group is seen, bit-identical; nothing after.
    const size_t expect = stop <= LinearRole::V    ? 3
                          : stop == LinearRole::O  ? 4
                          : stop <= LinearRole::Up ? 6
                                                   : 7;
    EXPECT_EQ(part.size(), expect) << linear_role_name(stop);
    for (const auto& [r, x] : part) EXPECT_EQ(x, full.at(r)) << linear_role_name(r);
  }
}

TEST(Forward, LogSoftmaxRowsSumToOne) {
  MatrixRM z(2, 5);
  z << 1, 2, 3, 4, 5, -100, 0, 100, 3, 3;
  log_softmax_rows(z);
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(z.row(i).array().exp().sum(), 1.0, 1e-6);
  EXPECT_NEAR(z(1, 2), 0.0, 1e-6);
}

}  // namespace
}  // namespace qsweep
