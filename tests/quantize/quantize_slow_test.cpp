// The full-protocol comparison (about a minute): labelled slow.
#include <nlohmann/json.hpp>

#include "tests/quantize/tiny_fixture.h"

namespace qsweep {
namespace {

// The protocol: code calibration 128 x 256, 3 bits, g128, asym; held-out code,
// chunks ctx 256, first 65,536 tokens. (Labelled slow: skipped in the sanitizer run.)
//
// The reference perplexities (models/tinycode/reference/perplexity.json) are on the first
// 16,384 tokens, not this protocol's 65,536: the FP16 forward is checked against the
// reference at its own protocol, and the quantized models are compared with the FP16
// baseline computed here under this test's protocol (no pinned number).
TEST(QuantizeSlow, GptqCalibratedOnCodeBeatsRtnOnHeldOutCodeAt3Bits) {
  const auto ref = nlohmann::json::parse(read_text_file(
      test::tinycode_dir() + "/reference/perplexity.json"))["code_heldout_chunks256_first16384"];
  ASSERT_EQ(ref["protocol"], "chunks");
  ASSERT_EQ(ref["ctx"], 256);  // what ppl() runs
  const double ref_ppl = ref["perplexity"].get<double>();
  // 4 significant digits, as the reference README asks; the comparisons below mean nothing
  // if the FP16 forward is off.
  ASSERT_LT(
      std::abs(ppl(tiny().model, tiny().code_tokens, ref["tokens_used"].get<int64_t>()) - ref_ppl) /
          ref_ppl,
      5e-5);

  GptqOptions o;
  o.bits = 3;
  o.group_size = 128;
  const QuantMethodConfig cfg{Method::Gptq, o};
  const CalibrationSet set = calib("code", 128);
  const double fp = ppl(tiny().model, tiny().code_tokens, 65536);
  const QuantMethodConfig rtn{Method::Rtn, RtnOptions{3, 128, false}};
  const double r = ppl(quantize_model(tiny().model, rtn, nullptr).model, tiny().code_tokens, 65536);
  const double g = ppl(quantize_model(tiny().model, cfg, &set).model, tiny().code_tokens, 65536);
  RecordProperty("fp16", std::to_string(fp));
  RecordProperty("rtn3", std::to_string(r));
  RecordProperty("gptq3_code", std::to_string(g));
  EXPECT_LT(g, r) << "fp16 " << fp;
  EXPECT_GT(g, fp);
  EXPECT_GT(r, fp);
}

}  // namespace
}  // namespace qsweep
