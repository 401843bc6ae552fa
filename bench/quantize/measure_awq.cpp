// The protocol for AWQ against RTN and GPTQ (about 6 minutes on 2 cores): a
// measurement program, not part of the suite. Run it by hand:
//   build/bench/quantize/measure_awq
// What it supports is asserted in tests/quantize/awq_slow_test.cpp (AWQ-3 < RTN-3).
#include "tests/quantize/tiny_fixture.h"

namespace qsweep {
namespace {

// Code calibration 128 x 256 (seed 0), asym, g128; held-out code, chunks ctx 256, first 65,536
// tokens. Printed; the sanity checks below only catch a broken build.
TEST(AwqSlow, HeldOutCodePerplexityAwqVsRtnVsGptq) {
  const CalibrationSet set = calib("code", 128);
  const double fp = ppl(tiny().model, tiny().code_tokens, 65536);
  RecordProperty("fp16", std::to_string(fp));
  std::printf("held-out code ppl: fp16 %.3f\n", fp);
  for (int bits : {4, 3}) {
    for (const char* method : {"rtn", "gptq", "awq"}) {
      const QuantMethodConfig cfg =
          QuantMethodConfig::from_json({{"method", method}, {"bits", bits}, {"group_size", 128}});
      const QuantizedModel q = quantize_model(tiny().model, cfg, &set);
      const double p = ppl(q.model, tiny().code_tokens, 65536);
      const std::string key = cat(method, bits);
      RecordProperty(key, std::to_string(p));
      std::printf("  %s-%d g128 %s: ppl %.3f  (%.1f s)\n", method, bits,
                  std::string(method) == "rtn" ? "" : "(code)", p, q.seconds);
      EXPECT_TRUE(std::isfinite(p));
      EXPECT_GT(p, fp * 0.99);
    }
  }
}

}  // namespace
}  // namespace qsweep
