// Issue #15's proof: the forward pass over Backend ops, with weights kept as stored (mmapped
// F16/BF16 views, quantized codes), equals the pre-#15 CPU Transformer (test::ReferenceForward:
// the old code on fp32 copies of the same weights) bit for bit: max |Δ| exactly 0 for the
// packed forward, token-by-token decode with the KV cache, and every input the run_layer hook
// sees. On the three shared models and random Llama / Qwen2 / Mistral specs stored as F32,
// F16, BF16 and RTN codes. One exception (issue #18): token-by-token decode (m = 1) on F16/BF16
// weights runs the CPU backend's fp16/bf16 GEMV (cpu_gemv_w16), which sums the same products in
// another fp32 order, so those steps are checked against kW16DecodeRelTol instead of exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/errors.h"
#include "model/model_spec.h"
#include "model/safetensors.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "quantizers/quantizers.h"
#include "tests/support/reference_forward.h"
#include "tests/support/small_model.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

// Exact equality, not a tolerance: the same values in the same order of operations.
void expect_identical(const MatrixRM& got, const MatrixRM& ref, const std::string& what) {
  ASSERT_EQ(got.rows(), ref.rows()) << what;
  ASSERT_EQ(got.cols(), ref.cols()) << what;
  EXPECT_EQ((got - ref).cwiseAbs().maxCoeff(), 0.0f) << what;
}

// Decode on F16/BF16 weights (m = 1: cpu_gemv_w16 instead of Eigen's GEMV on the widened weight).
// Both sum the same exact fp32 products x·w (the widening is exact), in different orders: each
// linear output differs by at most (k/32 + 24 + k)·2⁻²⁴·Σ|x·w| (GemvShapes' bound plus the
// classic k·u of the reference sum), ≤ 5e-5·Σ|x·w| for these models (k ≤ 768). The
// rest of the step (norms, RoPE, softmax, residuals) is the same code on inputs that moved
// that little; with cancellation in Σ x·w and a handful of layers, the logits move by a few
// such units relative to their scale. Bound: max |Δ| ≤ 1e-4·max|ref| per step; measured
// ≤ 5.0e-7 here (1/200 of the bound). Rounding the GEMV's outputs to fp16 (2⁻¹¹, what an
// fp16 kernel would add) breaks it; so would a gross error (a dropped lane, tail or row).
constexpr double kW16DecodeRelTol = 1e-4;

void expect_close(const MatrixRM& got, const MatrixRM& ref, double rel_tol,
                  const std::string& what) {
  if (rel_tol == 0) return expect_identical(got, ref, what);
  ASSERT_EQ(got.rows(), ref.rows()) << what;
  ASSERT_EQ(got.cols(), ref.cols()) << what;
  const double scale = ref.cwiseAbs().maxCoeff();
  EXPECT_LE((got - ref).cwiseAbs().maxCoeff(), rel_tol * scale)
      << what << " (max |ref| " << scale << ")";
}

std::vector<std::vector<int>> packed_sequences(int vocab) {
  std::vector<std::vector<int>> seqs = {{}, {3}, {}};
  for (int i = 0; i < 41; ++i) seqs[0].push_back((i * 37 + 11) % vocab);
  for (int i = 0; i < 17; ++i) seqs[2].push_back((i * 101 + 5) % vocab);
  return seqs;
}

// decode_rel_tol: 0 (exact) or kW16DecodeRelTol for the m = 1 decode steps on 16-bit weights.
void check_equivalent(const Transformer& model, const std::string& name,
                      double decode_rel_tol = 0) {
  SCOPED_TRACE(name);
  const test::ReferenceForward ref(model.spec(), test::reference_weights(model.weights()));
  const auto seqs = packed_sequences(model.spec().vocab_size);
  expect_identical(model.forward(seqs), ref.forward(seqs), "forward");

  // Decode: a prefill of 5 tokens, then one at a time.
  KvCache cache;
  test::RefKvCache ref_cache;
  const std::vector<int>& s = seqs[0];
  expect_identical(model.decode(cache, {s.begin(), s.begin() + 5}),
                   ref.decode(ref_cache, {s.begin(), s.begin() + 5}), "prefill");
  for (size_t t = 5; t < 12; ++t)
    expect_close(model.decode(cache, {s[t]}), ref.decode(ref_cache, {s[t]}), decode_rel_tol,
                 "decode token " + std::to_string(t));

  // run_layer: every hook input and every layer's output.
  std::vector<int> lengths, ref_lengths;
  MatrixRM h = model.embed(seqs, &lengths), rh = ref.embed(seqs, &ref_lengths);
  expect_identical(h, rh, "embed");
  for (int l = 0; l < model.spec().num_layers; ++l) {
    std::map<std::pair<int, LinearRole>, MatrixRM> got, want;
    model.run_layer(l, h, lengths, [&](int layer, LinearRole r, const MatrixRM& x) {
      got[{layer, r}] = x;
    });
    ref.run_layer(l, rh, ref_lengths, [&](int layer, LinearRole r, const MatrixRM& x) {
      want[{layer, r}] = x;
    });
    ASSERT_EQ(got.size(), 7u);
    ASSERT_EQ(want.size(), 7u);
    for (const auto& [key, x] : want)
      expect_identical(got[key], x, cat("layer ", l, " hook ", linear_role_name(key.second)));
    expect_identical(h, rh, cat("layer ", l, " output"));
  }
  expect_identical(model.head(h), ref.head(rh), "head");
}

TEST(ForwardEquivalence, SharedModelsKeptAsStored) {
  for (const char* name : {"tinycode", "qwen3-tiny-random", "llama31-tiny-random"}) {
    const std::string dir = test::shared_dir() + "/models/" + name;
    const ModelSpec spec = load_model_spec(dir);
    const Transformer model(spec, load_weights(dir, spec));
    // Stored as fp16/bf16: the linears stay views of the mapped file.
    EXPECT_NE(model.weights().layers[0].wq.dtype(), WeightDType::F32) << name;
    EXPECT_EQ(model.weights().layers[0].wq.f32_data(), nullptr) << name;
    // The stored form decodes to exactly what loading produced before (TensorView::to_float).
    const SafetensorsCheckpoint ckpt(dir);
    for (int l : {0, spec.num_layers - 1})
      for (LinearRole r : kAllLinearRoles) {
        const std::vector<float> old = ckpt.get(hf_linear_name(l, r)).to_float();
        const MatrixRM now = model.weights().layers[size_t(l)].linear(r).to_matrix();
        ASSERT_EQ(size_t(now.size()), old.size());
        EXPECT_EQ((now - Eigen::Map<const MatrixRM>(old.data(), now.rows(), now.cols()))
                      .cwiseAbs()
                      .maxCoeff(),
                  0.0f)
            << name << " " << hf_linear_name(l, r);
      }
    const std::vector<float> emb = ckpt.get("model.embed_tokens.weight").to_float();
    std::vector<float> row(size_t(spec.hidden_size));
    model.weights().embed.decode_rows(7, 1, row.data());
    EXPECT_TRUE(std::equal(row.begin(), row.end(), emb.begin() + 7 * spec.hidden_size)) << name;
    check_equivalent(model, name, kW16DecodeRelTol);
  }
}

TEST(ForwardEquivalence, RandomSpecsInEveryStoredForm) {
  for (Architecture arch : {Architecture::Llama, Architecture::Qwen2, Architecture::Mistral}) {
    const ModelSpec spec = test::small_model_spec(arch);
    const ModelWeights w = random_weights(spec, test::test_seed(15), 0.2f);
    check_equivalent(Transformer(spec, w), spec.arch_name + " F32");
    for (const char* dtype : {"F16", "BF16"}) {
      const std::string dir = test::make_temp_dir(cat("fwd_eq_", dtype));
      save_hf_checkpoint(dir, spec, w, dtype);
      const Transformer model(spec, load_weights(dir, spec));
      EXPECT_EQ(model.weights().layers[1].w_down.type_name(), dtype);
      check_equivalent(model, spec.arch_name + " " + dtype, kW16DecodeRelTol);
    }
    // Quantized: every linear held as RTN codes (a QTensor), decoded per linear.
    ModelWeights q = w;
    for (LayerWeights& L : q.layers)
      for (LinearRole r : kAllLinearRoles)
        L.linear(r) = qtensor_weight(
            std::make_shared<const QTensor>(quantize_rtn(L.linear(r).to_matrix(), {4, 16, false})));
    EXPECT_EQ(q.layers[0].wq.dtype(), WeightDType::Quantized);
    check_equivalent(Transformer(spec, q), spec.arch_name + " quantized");
  }
}

TEST(ForwardEquivalence, TiedLmHeadSharesTheEmbeddingStorage) {
  const std::string dir = test::shared_dir() + "/models/qwen3-tiny-random";
  const ModelSpec spec = load_model_spec(dir);
  ASSERT_TRUE(spec.tie_word_embeddings);
  const ModelWeights w = load_weights(dir, spec);
  ASSERT_NE(w.embed.half_data(), nullptr);
  EXPECT_EQ(w.lm_head.half_data(), w.embed.half_data());
}

}  // namespace
}  // namespace qsweep
