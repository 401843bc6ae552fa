// tinycode's four reference perplexities (reference/perplexity.json) to 4
// significant digits: whole-dataset tokenization plus six 16k-token evaluations,
// so it is labelled slow (the sanitizer run covers the same code in the toy tests).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/mapped_file.h"
#include "eval/datasets.h"
#include "eval/perplexity.h"
#include "model/model_spec.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

// "4 significant digits": relative difference below 5e-5 of the value.
constexpr double kFourSignificantDigits = 5e-5;

TEST(TinycodePerplexity, ReproducesReferenceValues) {
  const std::string dir = test::tinycode_dir();
  const auto ref = nlohmann::json::parse(read_text_file(dir + "/reference/perplexity.json"));
  const ModelSpec spec = load_model_spec(dir);
  const Transformer model(spec, load_weights(dir, spec));
  const auto tok = load_tokenizer(dir);
  int checked = 0;
  for (auto it = ref.begin(); it != ref.end(); ++it) {
    if (!it.value().is_object()) continue;
    const auto& r = it.value();
    const EvalDataset ds{it.key(), test::data_dir() + "/" + r["file"].get<std::string>(), ""};
    const std::vector<int> tokens = tok->encode(read_dataset_text(ds), false);
    EXPECT_EQ(int64_t(tokens.size()), r["tokens_in_text"].get<int64_t>()) << it.key();
    PerplexityOptions opt;
    opt.protocol = parse_protocol(r["protocol"].get<std::string>());
    opt.ctx = r["ctx"].get<int>();
    opt.stride = r["stride"].is_null() ? 0 : r["stride"].get<int>();
    opt.max_tokens = r["tokens_used"].get<int64_t>();
    const PerplexityResult got = evaluate_perplexity(model, tokens, opt);
    const double want = r["perplexity"].get<double>();
    EXPECT_LT(std::abs(got.perplexity - want) / want, kFourSignificantDigits)
        << it.key() << ": got " << got.perplexity << " want " << want;
    EXPECT_EQ(got.scored_tokens, r["scored_tokens"].get<int64_t>()) << it.key();
    EXPECT_NEAR(got.nll_standard_error, r["nll_standard_error"].get<double>(), 1e-5) << it.key();
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

}  // namespace
}  // namespace qsweep
