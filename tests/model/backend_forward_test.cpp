// The forward pass on a chosen backend (Transformer with that Backend) against the default one:
// bit for bit on the CPU backend (it runs the same CPU ops), within fp32 GEMM rounding on CUDA
// (skipped, saying why, without a GPU). Llama, Qwen2 (q/k/v biases), Mistral (sliding window)
// with random weights, packed sequences, and tinycode itself.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "model/model_spec.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "tests/support/small_model.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

class Resident : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cuda" && !cuda_available())
      GTEST_SKIP() << "no CUDA: " << cuda_unavailable_reason();
    backend_ = make_backend(GetParam());
  }
  // CPU: the same ops in the same order, so exactly equal. CUDA: cuBLAS sums in another order.
  double bound() const { return GetParam() == "cpu" ? 0.0 : 1e-4; }
  std::unique_ptr<Backend> backend_;
};

ModelSpec small_spec(Architecture arch) {
  return test::small_model_spec(arch);
}

double max_rel(const MatrixRM& got, const MatrixRM& ref) {
  EXPECT_EQ(got.rows(), ref.rows());
  EXPECT_EQ(got.cols(), ref.cols());
  if (got.rows() != ref.rows() || got.cols() != ref.cols()) return INFINITY;
  return (got - ref).cwiseAbs().maxCoeff() / std::max(1.0f, ref.cwiseAbs().maxCoeff());
}

TEST_P(Resident, RandomModelsMatchTheCpuForward) {
  for (Architecture arch : {Architecture::Llama, Architecture::Qwen2, Architecture::Mistral}) {
    const ModelSpec spec = small_spec(arch);
    const Transformer model(spec, random_weights(spec, test::test_seed(21), 0.2f));
    const Transformer resident(model.spec(), model.weights(), *backend_);
    std::vector<std::vector<int>> seqs = {{1, 5, 9, 2, 36, 0, 7, 7, 3}, {4}, {8, 2, 11}, {}};
    // Beyond max_position_embeddings (64), as Transformer::forward allows (extrapolation).
    for (int i = 0; i < 70; ++i) seqs[3].push_back((i * 13 + 5) % spec.vocab_size);
    const MatrixRM ref = model.forward(seqs);
    EXPECT_LE(max_rel(resident.forward(seqs), ref), bound()) << spec.arch_name;
  }
}

TEST_P(Resident, TinycodeLogitsAndNextTokenNll) {
  const std::string dir = test::tinycode_dir();
  const ModelSpec spec = load_model_spec(dir);
  const Transformer model(spec, load_weights(dir, spec));
  const Transformer resident(model.spec(), model.weights(), *backend_);
  std::vector<std::vector<int>> seqs = {{}, {}};
  for (int i = 0; i < 200; ++i) seqs[0].push_back((i * 37 + 11) % model.spec().vocab_size);
  for (int i = 0; i < 57; ++i) seqs[1].push_back((i * 101 + 3) % model.spec().vocab_size);
  MatrixRM ref = model.forward(seqs);
  EXPECT_LE(max_rel(resident.forward(seqs), ref), bound());

  log_softmax_rows(ref);
  const std::vector<float> nll = resident.next_token_nll(seqs);
  ASSERT_EQ(nll.size(), 199u + 56u);
  size_t i = 0;
  int64_t row = 0;
  double worst = 0;
  for (const auto& s : seqs) {
    for (size_t p = 0; p + 1 < s.size(); ++p, ++i)
      worst = std::max(worst, std::abs(double(nll[i]) + ref(row + int64_t(p), s[p + 1])));
    row += int64_t(s.size());
  }
  EXPECT_LT(worst, GetParam() == "cpu" ? 1e-5 : 1e-3);  // nats
}

INSTANTIATE_TEST_SUITE_P(Twins, Resident, ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace qsweep
