// The full-protocol comparison (about a minute): labelled slow.
#include "tests/quantize/tiny_fixture.h"

namespace qsweep {
namespace {

// The protocol: code calibration 128 x 256, 3 bits, g128, asym; held-out code,
// chunks ctx 256, first 65,536 tokens. (Labelled slow: skipped in the sanitizer run.)
TEST(QuantizeSlow, GptqCalibratedOnCodeBeatsRtnOnHeldOutCodeAt3Bits) {
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
  std::printf("held-out code ppl: fp16 %.3f  rtn-3 %.3f  gptq-3(code) %.3f\n", fp, r, g);
  EXPECT_NEAR(fp, 13.95, 0.01);  // the reference implementation's value
  EXPECT_LT(g, r);
  EXPECT_GT(g, fp);
}

}  // namespace
}  // namespace qsweep
