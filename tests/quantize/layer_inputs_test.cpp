// quantize/layer_inputs: the calibration hidden states held between layers in fp16, against a
// reference computed directly (embed, run each layer on the same batches of windows, round to
// fp16 at each boundary with the scalar float_to_half), for several batch sizes; and the overflow
// path (fp32 from the layer that leaves fp16's range), whose reference skips the rounding there.
// The reference batches as LayerInputs does because the GEMM's row tiling depends on the row
// count, so a row's last fp32 bits depend on which rows share its batch.
#include <gtest/gtest.h>

#include "common/errors.h"
#include "common/half.h"
#include "model/weights.h"
#include "quantize/layer_inputs.h"
#include "tests/support/small_model.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

std::vector<std::vector<int>> some_windows(int vocab) {
  std::vector<std::vector<int>> w;
  for (int s = 0; s < 5; ++s) {
    std::vector<int> ids;
    for (int p = 0; p < 7 + 3 * s; ++p) ids.push_back((s * 11 + p * 5) % vocab);
    w.push_back(ids);
  }
  return w;
}

MatrixRM held(const LayerInputs& in) {
  MatrixRM all(in.rows(), in.cols());
  in.for_each_batch(
      [&](int64_t r0, MatrixRM& x, const std::vector<int>&) { all.middleRows(r0, x.rows()) = x; });
  return all;
}

// Transformer::run_layer over consecutive groups of `batch` windows.
void run_layer_in_batches(const Transformer& m, int l, MatrixRM& x, const std::vector<int>& lengths,
                          int batch) {
  int64_t row = 0;
  for (size_t w0 = 0; w0 < lengths.size(); w0 += size_t(batch)) {
    const std::vector<int> lens(lengths.begin() + long(w0),
                                lengths.begin() + long(std::min(lengths.size(), w0 + batch)));
    int64_t rows = 0;
    for (int n : lens) rows += n;
    MatrixRM part = x.middleRows(row, rows);
    m.run_layer(l, part, lens);
    x.middleRows(row, rows) = part;
    row += rows;
  }
}

void round_to_half(MatrixRM& x) {
  for (int64_t i = 0; i < x.size(); ++i) x.data()[i] = half_to_float(float_to_half(x.data()[i]));
}

// Bitwise equality, with the first differing element named.
void expect_same(const MatrixRM& a, const MatrixRM& b, const std::string& what) {
  ASSERT_EQ(a.rows(), b.rows()) << what;
  ASSERT_EQ(a.cols(), b.cols()) << what;
  for (int64_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(a.data()[i], b.data()[i]) << what << ": element " << i;
}

TEST(LayerInputs, HeldInFp16AsTheDirectComputationRoundedAtEachLayer) {
  const ModelSpec spec = test::small_model_spec(Architecture::Llama);
  const Transformer model(spec, random_weights(spec, test::test_seed(31), 0.2f));
  const auto windows = some_windows(spec.vocab_size);
  std::vector<int> lengths;
  MatrixRM ref = model.embed(windows, &lengths);
  round_to_half(ref);
  for (int batch : {1, 2, 5}) {
    LayerInputs in(model, windows, batch);
    MatrixRM want = ref;
    expect_same(held(in), want, "embedding");
    for (int l = 0; l < spec.num_layers; ++l) {
      int64_t hooked = 0;
      in.advance(l, [&](int, LinearRole r, const MatrixRM& x) {
        if (r == LinearRole::Q) hooked += x.rows();
      });
      EXPECT_EQ(hooked, in.rows());
      run_layer_in_batches(model, l, want, lengths, batch);
      round_to_half(want);
      expect_same(held(in), want, cat("batch ", batch, " layer ", l));
    }
    EXPECT_FALSE(in.held_in_fp32());
    EXPECT_FALSE(in.widened_at_layer());
    EXPECT_EQ(in.bytes(), size_t(in.rows() * in.cols()) * 2);
  }
}

TEST(LayerInputs, Fp32WhenAsked) {
  const ModelSpec spec = test::small_model_spec(Architecture::Llama);
  const Transformer model(spec, random_weights(spec, test::test_seed(32), 0.2f));
  const auto windows = some_windows(spec.vocab_size);
  std::vector<int> lengths;
  MatrixRM want = model.embed(windows, &lengths);
  LayerInputs in(model, windows, 2, /*fp32=*/true);
  run_layer_in_batches(model, 0, want, lengths, 2);
  in.advance(0);
  expect_same(held(in), want, "fp32 layer 0");
  EXPECT_EQ(in.bytes(), size_t(in.rows() * in.cols()) * 4);
}

// Layer 1's down_proj scaled so that its outputs pass 65504: from there the inputs are fp32,
// and what is held equals the direct computation rounded at the embedding and after layer 0
// only — whatever the batch size (the batches stored before the overflow are recomputed).
TEST(LayerInputs, OutputsBeyondFp16AreHeldInFp32FromThatLayer) {
  ModelSpec spec = test::small_model_spec(Architecture::Llama);
  spec.num_layers = 3;
  ModelWeights w = random_weights(spec, test::test_seed(33), 0.2f);
  w.layers[1].w_down.mutable_matrix() *= 3e5f;
  const Transformer model(spec, std::move(w));
  const auto windows = some_windows(spec.vocab_size);
  std::vector<int> lengths;
  const MatrixRM embedded = model.embed(windows, &lengths);
  for (int batch : {1, 2, 5}) {
    MatrixRM want = embedded;
    round_to_half(want);
    run_layer_in_batches(model, 0, want, lengths, batch);
    round_to_half(want);
    run_layer_in_batches(model, 1, want, lengths, batch);
    ASSERT_GT(want.cwiseAbs().maxCoeff(), 65504.f) << "the scaled layer must leave fp16's range";
    LayerInputs in(model, windows, batch);
    in.advance(0);
    int64_t hooked = 0;
    in.advance(1, [&](int, LinearRole r, const MatrixRM& x) {
      if (r == LinearRole::Down) hooked += x.rows();
    });
    EXPECT_EQ(hooked, in.rows()) << "the hook sees every batch once";
    ASSERT_EQ(in.widened_at_layer(), std::optional<int>(1)) << batch;
    EXPECT_TRUE(in.held_in_fp32());
    expect_same(held(in), want, cat("batch ", batch));
    MatrixRM next = want;
    run_layer_in_batches(model, 2, next, lengths, batch);
    in.advance(2);
    expect_same(held(in), next, cat("batch ", batch, " layer 2"));
  }
}

}  // namespace
}  // namespace qsweep
