// The twin-backend test setup shared by ops_test, quant_ops_test and awq_ops_test: one test body
// per op, run on each backend, "cpu" always and "cuda" when a device is usable (skipped, saying
// why, when not). A fixture derives from test::Twins with its own seed salt and is instantiated
// with QSWEEP_INSTANTIATE_TWINS(Fixture), which names the runs Twins/Fixture.Test/cpu|cuda.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "tests/support/test_support.h"

namespace qsweep::test {

class Twins : public ::testing::TestWithParam<std::string> {
 protected:
  /// seed_salt: the fixture's fallback seed for test_seed (QSWEEP_TEST_SEED overrides it).
  explicit Twins(uint64_t seed_salt) : seed_salt_(seed_salt) {}
  void SetUp() override {
    if (GetParam() == "cuda" && !cuda_available())
      GTEST_SKIP() << "no CUDA: " << cuda_unavailable_reason();
    backend_ = make_backend(GetParam());
    rng_.seed(uint32_t(test_seed(seed_salt_)));
  }
  std::vector<float> randn(size_t n, float sd = 1.0f) {
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng_);
    return v;
  }
  bool cuda() const { return GetParam() == "cuda"; }
  Backend& b() { return *backend_; }
  std::unique_ptr<Backend> backend_;
  std::mt19937 rng_;

 private:
  uint64_t seed_salt_;
};

}  // namespace qsweep::test

#define QSWEEP_INSTANTIATE_TWINS(Fixture)                                    \
  INSTANTIATE_TEST_SUITE_P(Twins, Fixture, ::testing::Values("cpu", "cuda"), \
                           [](const auto& info) { return info.param; })
