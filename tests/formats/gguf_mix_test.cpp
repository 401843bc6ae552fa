// llama.cpp mixes written as GGUF, with and without an importance matrix: every tensor gets
// the planned type, the stored weights are exactly dequantize(quantize(W, imatrix)), the
// imatrix reaches the quantizer, and the importance matrix itself is the mean of x².
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "calibration/calibration.h"
#include "common/errors.h"
#include "formats/gguf.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "quantize/kquant_mix.h"
#include "quantizers/kquants/kquants.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace gt = kquants::ggml_type;

struct Tiny {
  std::string dir = test::tinycode_dir();
  LoadedModel hf = load_model(dir);
  Transformer model{hf.spec, hf.weights};
  std::unique_ptr<Tokenizer> tok = load_tokenizer(dir);
  std::string tmp = test::make_temp_dir("gguf-mix");
  CalibrationSet calib = [&] {
    SamplingOptions o;
    o.n_samples = 8;
    o.seqlen = 64;
    return build_calibration_set("code", test::data_dir(), *tok, o);
  }();
};
const Tiny& tiny() {
  static const Tiny t;
  return t;
}

MatrixRM dequantized(const MatrixRM& W, int32_t type, const float* imatrix) {
  const auto q = *kquants::type_from_ggml(type);
  const auto bytes = kquants::quantize_tensor(q, W.data(), W.rows(), W.cols(), imatrix);
  const auto deq = kquants::dequantize_tensor(q, bytes, W.rows(), W.cols());
  return Eigen::Map<const MatrixRM>(deq.data(), W.rows(), W.cols());
}

TEST(GgufMix, ImportanceMatrixIsTheMeanSquareOfEachLinearsInput) {
  // Independent reference for layer 0's attention input: RMSNorm(embedding) · attn_norm,
  // computed here by hand from the weights.
  const auto imat = importance_matrix(tiny().model, tiny().calib, /*batch_windows=*/3);
  const ModelWeights& w = tiny().model.weights();
  const int H = tiny().hf.spec.hidden_size;
  Eigen::VectorXd want = Eigen::VectorXd::Zero(H);
  int64_t n = 0;
  for (const auto& win : tiny().calib.windows)
    for (int t : win) {
      const Eigen::VectorXd e = w.embed.to_matrix().row(t).transpose().cast<double>();
      const double rms = std::sqrt(e.squaredNorm() / H + tiny().hf.spec.rms_norm_eps);
      const Eigen::VectorXd x =
          (e / rms).cwiseProduct(w.layers[0].attn_norm.cast<double>());  // fp32 in the model
      want += x.cwiseAbs2();
      ++n;
    }
  want /= double(n);
  for (LinearRole r : {LinearRole::Q, LinearRole::K, LinearRole::V}) {
    const std::vector<float>& got = imat.at({0, r});
    ASSERT_EQ(int(got.size()), H);
    for (int j = 0; j < H; ++j) EXPECT_NEAR(got[size_t(j)], want[j], 1e-4 * want[j] + 1e-9) << j;
  }
  // Every linear has one value per input column; gate/up share, down has intermediate width.
  EXPECT_EQ(imat.size(), size_t(7 * tiny().hf.spec.num_layers));
  EXPECT_EQ(imat.at({2, LinearRole::Gate}), imat.at({2, LinearRole::Up}));
  EXPECT_EQ(int(imat.at({2, LinearRole::Down}).size()), tiny().hf.spec.intermediate_size);
  // Batching does not change it beyond float summation order.
  const auto again = importance_matrix(tiny().model, tiny().calib, 8);
  for (int j = 0; j < H; ++j)
    EXPECT_NEAR(again.at({5, LinearRole::O})[size_t(j)], imat.at({5, LinearRole::O})[size_t(j)],
                1e-5 * imat.at({5, LinearRole::O})[size_t(j)] + 1e-12);
}

TEST(GgufMix, TensorsGetThePlannedTypesAndImatrixReachesTheQuantizer) {
  const auto imat = importance_matrix(tiny().model, tiny().calib);
  for (kquants::Mix mix : {kquants::Mix::Q2_K, kquants::Mix::Q4_K_M}) {
    const std::string plain = cat(tiny().tmp, "/", kquants::mix_name(mix), ".gguf");
    const std::string with = cat(tiny().tmp, "/", kquants::mix_name(mix), "-imat.gguf");
    const GgufMixSummary s0 =
        write_gguf_mix(plain, tiny().hf.spec, tiny().hf.weights, tiny().dir, mix);
    const GgufMixSummary s1 =
        write_gguf_mix(with, tiny().hf.spec, tiny().hf.weights, tiny().dir, mix, &imat);
    const GgufFile f(plain);
    EXPECT_EQ(f.get_int("general.file_type"), kquants::mix_llama_ftype(mix));
    for (const auto& c : s0.choices) EXPECT_EQ(f.find_tensor(c.name)->ggml_type, c.ggml_type);
    EXPECT_EQ(s0.file_bytes, int64_t(std::filesystem::file_size(plain)));
    EXPECT_EQ(s0.file_bytes, s1.file_bytes);  // same types, other bytes
    EXPECT_GT(s0.linear_bits_per_weight, kquants::traits(kquants::mix_base_type(mix)).bpw);

    const LoadedModel a = load_model(plain), b = load_model(with);
    int differ = 0;
    for (int l = 0; l < tiny().hf.spec.num_layers; ++l)
      for (LinearRole r : kAllLinearRoles) {
        const MatrixRM& W = tiny().hf.weights.layers[size_t(l)].linear(r).to_matrix();
        const int32_t t = f.find_tensor(gguf_linear_name(l, r))->ggml_type;
        // q/k rows are permuted on disk and back on load; rows quantize independently.
        EXPECT_TRUE(a.weights.layers[size_t(l)].linear(r).to_matrix() == dequantized(W, t, nullptr))
            << gguf_linear_name(l, r);
        const MatrixRM want = dequantized(W, t, imat.at({l, r}).data());
        EXPECT_TRUE(b.weights.layers[size_t(l)].linear(r).to_matrix() == want)
            << gguf_linear_name(l, r);
        differ += !(want == a.weights.layers[size_t(l)].linear(r).to_matrix());
      }
    EXPECT_EQ(differ, 7 * tiny().hf.spec.num_layers) << kquants::mix_name(mix);
  }
}

TEST(GgufMix, ImatrixLowersTheImportanceWeightedError) {
  // What --imatrix optimizes: Σ_j imatrix_j (w_ij − ŵ_ij)². Summed over each linear it must
  // come out lower than plain quantization's for the low-bit types.
  const auto imat = importance_matrix(tiny().model, tiny().calib);
  for (int32_t type : {gt::Q2_K, gt::Q3_K, gt::Q4_K}) {
    int better = 0, total = 0;
    for (int l = 0; l < tiny().hf.spec.num_layers; ++l)
      for (LinearRole r : kAllLinearRoles) {
        const MatrixRM& W = tiny().hf.weights.layers[size_t(l)].linear(r).to_matrix();
        const std::vector<float>& im = imat.at({l, r});
        const Eigen::Map<const Eigen::RowVectorXf> wts(im.data(), Eigen::Index(im.size()));
        auto weighted = [&](const MatrixRM& q) {
          return double(((W - q).array().square().rowwise() * wts.array()).sum());
        };
        better +=
            weighted(dequantized(W, type, im.data())) < weighted(dequantized(W, type, nullptr));
        ++total;
      }
    EXPECT_EQ(better, total) << kquants::traits(*kquants::type_from_ggml(type)).name;
  }
}

TEST(GgufMix, BadImportanceMatricesAreRefused) {
  GgufTypePlan plan = gguf_mix_plan(kquants::Mix::Q4_K_M, tiny().hf.spec, true);
  plan.importance["blk.0.attn_q.weight"] = std::vector<float>(10, 1.0f);
  EXPECT_THROW(write_gguf(tiny().tmp + "/bad.gguf", tiny().hf.spec, tiny().hf.weights, "", plan),
               Error);
  plan.importance["blk.0.attn_q.weight"] = std::vector<float>(256, 1.0f);
  plan.importance["blk.0.attn_q.weight"][7] = NAN;
  try {
    write_gguf(tiny().tmp + "/bad.gguf", tiny().hf.spec, tiny().hf.weights, "", plan);
    ADD_FAILURE() << "NaN importance accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("column 7"), std::string::npos) << e.what();
  }
  plan.importance.clear();
  plan.importance["blk.9.attn_q.weight"] = std::vector<float>(256, 1.0f);
  EXPECT_THROW(write_gguf(tiny().tmp + "/bad.gguf", tiny().hf.spec, tiny().hf.weights, "", plan),
               Error);
  EXPECT_FALSE(std::filesystem::exists(tiny().tmp + "/bad.gguf"));
}

}  // namespace
}  // namespace qsweep
