// estimate_peak_memory against bytes computed by hand; check_memory_budget's refusal.
#include "model/memory_estimate.h"

#include <gtest/gtest.h>

#include "common/errors.h"

namespace qsweep {
namespace {

TEST(MemoryEstimate, HandComputedBytes) {
  ModelSpec s;
  s.hidden_size = 8;
  s.intermediate_size = 16;
  s.vocab_size = 10;
  s.num_heads = 2;
  s.head_dim = 4;
  const MemoryEstimate e = estimate_peak_memory(s, {1000, 3, 3, 5});
  EXPECT_EQ(e.model, 1000);
  EXPECT_EQ(e.scratch, 4 * 128);                            // I·H is the widest
  EXPECT_EQ(e.activations, 4 * 3 * (48 + 32 + 10) + 72);    // + 4·2 heads·3²
  EXPECT_EQ(e.calibration, 80 + 8 * (64 + 64 + 64 + 256));  // 2·5·8 (fp16) + Hessians
  EXPECT_EQ(e.total(), 6328);
  EXPECT_EQ(estimate_peak_memory(s, {1000, 3, 3, 0}).calibration, 0);
}

TEST(MemoryEstimate, BudgetRefusalNamesTheNumberAndWhatToLower) {
  MemoryEstimate e;
  e.model = int64_t(3) << 30;
  e.activations = int64_t(1) << 29;
  EXPECT_NO_THROW(check_memory_budget(e, e.total(), "eval", "lower --ctx"));
  EXPECT_NO_THROW(check_memory_budget(e, 0, "eval", "lower --ctx"));  // 0 = no budget
  try {
    check_memory_budget(e, e.total() - 1, "eval", "lower --ctx");
    ADD_FAILURE() << "not refused";
  } catch (const Error& err) {
    const std::string m = err.what();
    EXPECT_NE(m.find("eval needs about 3.500 GiB"), std::string::npos) << m;
    EXPECT_NE(m.find("lower --ctx"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace qsweep
