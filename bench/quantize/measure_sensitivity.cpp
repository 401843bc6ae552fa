// The sensitivity study's cost on tinycode (issue #19), with and without the cached FP16
// activations: every tensor group at Q4_K measured from its layer onward (cache) and by a
// whole forward pass (no cache), on the auto-mix study's windows (16 × 256 tokens of code
// calibration). A measurement program, not part of the suite:
//   build/bench/quantize/measure_sensitivity
// (tests/quantize/auto_mix_test.cpp asserts both give the same KL.)
#include <chrono>
#include <cstdio>

#include "quantize/sensitivity.h"
#include "quantizers/kquants/kquants.h"
#include "tests/quantize/tiny_fixture.h"

namespace qsweep {
namespace {

TEST(Sensitivity, StudyCostWithAndWithoutTheCache) {
  const CalibrationSet c = calib("code", 16, 256);
  SensitivityStudy study(tiny().model, c.windows, 16);
  std::printf("FP16 pass + cache: %.2f s for %lld tokens\n", study.setup_seconds(),
              static_cast<long long>(study.tokens()));
  double cached = 0, full = 0, max_diff = 0;
  for (const TensorGroup& g : study.groups()) {
    const SensitivityMeasurement a = study.measure(g, kquants::ggml_type::Q4_K, true);
    const SensitivityMeasurement b = study.measure(g, kquants::ggml_type::Q4_K, false);
    cached += a.seconds;
    full += b.seconds;
    max_diff = std::max(max_diff, std::abs(a.kl - b.kl) / std::max(b.kl, 1e-30));
  }
  const double n = double(study.groups().size());
  std::printf(
      "%zu groups at Q4_K: cached %.2f s (%.3f s each), whole forward %.2f s (%.3f s "
      "each): saving %.0f%%; max relative KL difference %.2g\n",
      study.groups().size(), cached, cached / n, full, full / n, 100.0 * (1 - cached / full),
      max_diff);
  EXPECT_LT(cached, full);
}

}  // namespace
}  // namespace qsweep
