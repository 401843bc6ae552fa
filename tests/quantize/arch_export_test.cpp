// GPTQ and AWQ on today's architectures (../shared/models/{qwen3,llama31}-tiny-random:
// q_norm/k_norm, llama3 rope_scaling, explicit head_dim, tied embeddings, BF16, sharded):
// calibration through the byte-level BPE tokenizer, quantization, the HF export (what it
// must carry and must not), and reading the export back gives the in-memory model's
// logits exactly.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "calibration/calibration.h"
#include "common/errors.h"
#include "common/mapped_file.h"
#include "formats/formats.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "quantize/export.h"
#include "quantize/quantize.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;

struct Case {
  std::string model;
  Method method;
  int group_size;  ///< the largest power of two dividing every linear's in_features
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.model << " " << method_info(c.method).name << " g" << c.group_size;
}

class ArchExport : public ::testing::TestWithParam<Case> {};

TEST_P(ArchExport, QuantizeExportAndReadBack) {
  const Case& c = GetParam();
  const std::string dir = test::shared_dir() + "/models/" + c.model;
  const LoadedModel src = load_model(dir);
  const Transformer model(src.spec, src.weights);
  const auto tok = load_tokenizer(dir);
  SamplingOptions so;
  so.n_samples = 4;
  so.seqlen = 64;
  const CalibrationSet set = build_calibration_set("wikitext2", test::data_dir(), *tok, so);
  ASSERT_EQ(set.windows.size(), 4u);

  QuantMethodConfig cfg = QuantMethodConfig::defaults(c.method);
  if (c.method == Method::Gptq) {
    GptqOptions o;
    o.group_size = c.group_size;
    cfg.options = o;
  } else {
    AwqOptions o;
    o.group_size = c.group_size;
    cfg.options = o;
  }
  const QuantizedModel qm = quantize_model(model, cfg, &set);
  EXPECT_EQ(qm.linears.size(), size_t(7 * src.spec.num_layers));
  const std::string out = test::make_temp_dir("arch-export") + "/q";
  write_quantized(qm, dir, out);

  // The tokenizer files are copied byte for byte; these models have no tokenizer.model.
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    EXPECT_EQ(read_text_file(out + "/" + f), read_text_file(dir + "/" + f)) << f;
  EXPECT_FALSE(fs::exists(out + "/tokenizer.model"));
  // config.json keeps the architecture: model_type, head_dim, tying, rope_scaling.
  const auto want_cfg = nlohmann::json::parse(read_text_file(dir + "/config.json"));
  const auto got_cfg = nlohmann::json::parse(read_text_file(out + "/config.json"));
  for (const char* k : {"model_type", "architectures", "head_dim", "tie_word_embeddings",
                        "rope_scaling", "rope_theta"})
    EXPECT_EQ(got_cfg.at(k), want_cfg.at(k)) << k;
  EXPECT_TRUE(got_cfg.contains("quantization_config"));
  // q_norm/k_norm carried exactly, no lm_head (tied).
  const SafetensorsCheckpoint st(out);
  const SafetensorsCheckpoint orig(dir);
  EXPECT_EQ(st.find("lm_head.weight"), nullptr);
  for (int l = 0; l < src.spec.num_layers; ++l)
    for (const char* n : {"q_norm", "k_norm"}) {
      const std::string name = cat("model.layers.", l, ".self_attn.", n, ".weight");
      if (!src.spec.qk_norm) {
        EXPECT_EQ(st.find(name), nullptr) << name;
        continue;
      }
      ASSERT_NE(st.find(name), nullptr) << name;
      EXPECT_EQ(st.get(name).to_float(), orig.get(name).to_float()) << name;
    }

  // Read back: same spec features and the same logits as the in-memory quantized model.
  const LoadedModel back = load_model(out);
  EXPECT_EQ(back.format, c.method == Method::Gptq ? "gptq" : "awq");
  EXPECT_EQ(back.spec.qk_norm, src.spec.qk_norm);
  EXPECT_EQ(back.spec.rope_scaling.type, src.spec.rope_scaling.type);
  EXPECT_TRUE(back.spec.tie_word_embeddings);
  const Transformer reloaded(back.spec, back.weights);
  const std::vector<int> ids(set.windows[0].begin(), set.windows[0].end());
  const MatrixRM a = qm.model.forward(ids), b = reloaded.forward(ids);
  EXPECT_LT((a - b).cwiseAbs().maxCoeff(), 1e-5);
  // ... and quantization did something.
  EXPECT_GT((a - model.forward(ids)).cwiseAbs().maxCoeff(), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Models, ArchExport,
                         ::testing::Values(Case{"qwen3-tiny-random", Method::Gptq, 64},
                                           Case{"qwen3-tiny-random", Method::Awq, 64},
                                           Case{"llama31-tiny-random", Method::Gptq, 32},
                                           Case{"llama31-tiny-random", Method::Awq, 32}),
                         [](const auto& info) {
                           return std::string(info.param.model[0] == 'q' ? "Qwen3" : "Llama31") +
                                  (info.param.method == Method::Gptq ? "Gptq" : "Awq");
                         });

}  // namespace
}  // namespace qsweep
