// Shared fixture for the quantize tests: tinycode loaded once, its held-out
// token streams, calibration sets and a perplexity shortcut.
#pragma once
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "calibration/calibration.h"
#include "common/errors.h"
#include "common/mapped_file.h"
#include "eval/perplexity.h"
#include "formats/formats.h"
#include "model/tokenizer.h"
#include "quantize/export.h"
#include "quantize/quantize.h"
#include "tests/support/test_support.h"

namespace qsweep {
struct Tiny {
  std::string dir = test::tinycode_dir();
  LoadedModel loaded = load_model(dir);
  Transformer model{loaded.spec, loaded.weights};
  std::unique_ptr<Tokenizer> tok = load_tokenizer(dir);
  std::vector<int> code_tokens =
      tok->encode(read_text_file(test::data_dir() + "/code/heldout.txt"), false);
};
inline const Tiny& tiny() {
  static const Tiny t;
  return t;
}

inline CalibrationSet calib(const std::string& source, int n, int seqlen = 256) {
  SamplingOptions o;
  o.n_samples = n;
  o.seqlen = seqlen;
  return build_calibration_set(source, test::data_dir(), *tiny().tok, o);
}

inline double ppl(const Transformer& m, const std::vector<int>& tokens, int64_t max_tokens) {
  PerplexityOptions o;
  o.ctx = 256;
  o.max_tokens = max_tokens;
  return evaluate_perplexity(m, tokens, o).perplexity;
}

}  // namespace qsweep
