// tinycode against the independent numpy/PyTorch reference in
// ../shared/models/tinycode/reference: exact token ids and fp32 logits.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/mapped_file.h"
#include "model/model_spec.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

constexpr double kLogitsMaxRelErr = 1e-4;  // the bound; we see ~1e-6

struct Prompt {
  std::string name, text;
  std::vector<int> ids;
};

std::vector<Prompt> reference_prompts() {
  const auto j =
      nlohmann::json::parse(read_text_file(test::tinycode_dir() + "/reference/prompts.json"));
  std::vector<Prompt> out;
  for (const auto& p : j["prompts"])
    out.push_back({p["name"].get<std::string>(), p["text"].get<std::string>(),
                   p["token_ids"].get<std::vector<int>>()});
  return out;
}

TEST(TinycodeReference, TokenizationMatchesExactly) {
  const auto tok = load_tokenizer(test::tinycode_dir());
  ASSERT_TRUE(tok->add_bos_token());
  const auto prompts = reference_prompts();
  ASSERT_EQ(prompts.size(), 5u);
  for (const auto& p : prompts) {
    EXPECT_EQ(tok->encode(p.text, tok->add_bos_token()), p.ids) << p.name;
    // BOS is a control token; decoding the rest gives the text back.
    std::vector<int> body(p.ids.begin() + 1, p.ids.end());
    EXPECT_EQ(tok->decode(body), p.text) << p.name;
  }
}

TEST(TinycodeReference, LogitsMatchReference) {
  const std::string dir = test::tinycode_dir();
  const ModelSpec spec = load_model_spec(dir);
  const Transformer model(spec, load_weights(dir, spec));
  SafetensorsFile ref(dir + "/reference/logits.safetensors");
  const auto prompts = reference_prompts();
  // All prompts in one packed batch: also checks that sequences do not leak into
  // each other.
  std::vector<std::vector<int>> seqs;
  for (const auto& p : prompts) seqs.push_back(p.ids);
  const MatrixRM logits = model.forward(seqs);
  int64_t row = 0;
  for (const auto& p : prompts) {
    const TensorView* t = ref.find(p.name);
    ASSERT_NE(t, nullptr) << p.name;
    ASSERT_EQ(t->shape, (std::vector<int64_t>{int64_t(p.ids.size()), spec.vocab_size}));
    const std::vector<float> want = t->to_float();
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < p.ids.size(); ++i)
      for (int v = 0; v < spec.vocab_size; ++v) {
        const double w = want[i * size_t(spec.vocab_size) + size_t(v)];
        max_diff = std::max(max_diff, std::abs(double(logits(row + int64_t(i), v)) - w));
        max_ref = std::max(max_ref, std::abs(w));
      }
    row += int64_t(p.ids.size());
    EXPECT_LT(max_diff / max_ref, kLogitsMaxRelErr) << p.name << ": max |diff| " << max_diff;
    RecordProperty(p.name + "_max_rel_err", std::to_string(max_diff / max_ref));
  }
}

}  // namespace
}  // namespace qsweep
