// The row decoders (dequantize_row_<t>, one super-block at a time) against the per-weight
// decoder the CUDA kernel runs (backends/kernels/ggml_decode.h), bit for bit, on blocks of random
// bytes: every scale, min and high-bit pattern, not only those a quantizer writes. Compiled with
// -ffp-contract=off (tests/kquants/CMakeLists.txt) like the library, so the reference is not
// contracted into FMAs either.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backends/kernels/ggml_decode.h"
#include "common/half.h"
#include "quantizers/kquants/kquants.h"
#include "tests/support/test_support.h"

namespace qsweep::kquants {
namespace {

// The byte offsets of the fp16 scales (d, dmin) of each block type.
std::vector<int> half_offsets(int ggml_type) {
  switch (ggml_type) {
    case ggml::kQ4_0:
    case ggml::kQ5_0:
    case ggml::kQ8_0:
      return {0};
    case ggml::kQ4_1:
    case ggml::kQ5_1:
    case ggml::kQ4_K:
    case ggml::kQ5_K:
      return {0, 2};
    case ggml::kQ2_K:
      return {80, 82};
    case ggml::kQ3_K:
      return {108};
    case ggml::kQ6_K:
      return {208};
    default:
      return {};
  }
}

TEST(KQuantRowDecoder, EqualsThePerWeightDecoderOnRandomBlocks) {
  std::mt19937 rng(uint32_t(test::test_seed(31)));
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> scale(0.0f, 0.05f);
  int types = 0;
  for (const TypeTraits& t : kTypeTraits) {
    if (ggml::block_weights(t.ggml_type) == 0) continue;  // Q8_K: an activation format
    ++types;
    const int nb = 37;
    std::vector<uint8_t> q(size_t(nb * t.type_size));
    for (auto& c : q) c = uint8_t(byte(rng));
    for (int b = 0; b < nb; ++b)  // finite fp16 scales (the loader refuses inf/NaN)
      for (int off : half_offsets(t.ggml_type)) {
        const uint16_t h = float_to_half(scale(rng));
        std::memcpy(q.data() + b * t.type_size + off, &h, 2);
      }
    std::vector<float> got(size_t(nb * t.block_size)), want(got.size());
    dequantize_row(t.type, q.data(), got.data(), int64_t(got.size()));
    for (int b = 0; b < nb; ++b)
      for (int e = 0; e < t.block_size; ++e)
        want[size_t(b * t.block_size + e)] =
            ggml::decode(t.ggml_type, q.data() + b * t.type_size, e);
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(std::memcmp(&got[i], &want[i], 4), 0)
          << t.name << " weight " << i << ": " << got[i] << " vs " << want[i];
  }
  EXPECT_EQ(types, 10);
}

}  // namespace
}  // namespace qsweep::kquants
