// The GPTQ v1 checkpoint bit layout: hand-computed words, the reference's 3-bit procedure,
// and exact round trips.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <numeric>
#include <random>

#include "common/errors.h"
#include "common/half.h"
#include "formats/awq_packing.h"
#include "formats/gptq_packing.h"
#include "quantizers/quantizers.h"
#include "tests/quantizers/quantizer_test_util.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

// A QTensor with every field set explicitly; zeros = 1 and scales = 1 unless changed.
QTensor make_qtensor(int64_t rows, int64_t cols, int bits, int group_size) {
  QTensor q;
  q.rows = rows;
  q.cols = cols;
  q.bits = bits;
  q.group_size = group_size;
  q.codes.assign(size_t(rows * cols), 0);
  q.scales.assign(size_t(q.n_groups() * rows), 1.0f);
  q.zeros.assign(size_t(q.n_groups() * rows), 1.0f);
  q.g_idx.resize(size_t(cols));
  const int64_t gs = group_size == -1 ? cols : group_size;
  for (int64_t c = 0; c < cols; ++c) q.g_idx[size_t(c)] = int32_t(c / gs);
  return q;
}

TEST(GptqPacking, Golden4BitWord) {
  // 8 outputs x 8 inputs, codes[o, i] = i: the 8 nibbles of the one qweight word per output,
  // value i at shift 4i, give 0x76543210.
  QTensor q = make_qtensor(8, 8, 4, -1);
  for (int64_t o = 0; o < 8; ++o)
    for (int64_t i = 0; i < 8; ++i) q.codes[size_t(o * 8 + i)] = uint8_t(i);
  q.zeros = {8, 1, 2, 3, 4, 5, 6, 0};  // stored zero - 1: 7, 0, 1, ..., 5 and (0 - 1) & 15 = 15
  const GptqPacked p = gptq_pack(q);
  ASSERT_EQ(p.qweight.size(), 8u);  // [8 * 4 / 32 = 1, 8]
  for (int32_t w : p.qweight) EXPECT_EQ(uint32_t(w), 0x76543210u);
  ASSERT_EQ(p.qzeros.size(), 1u);  // [1 group, 8 * 4 / 32 = 1]
  EXPECT_EQ(uint32_t(p.qzeros[0]), 0xF5432107u);
  for (uint16_t s : p.scales_f16) EXPECT_EQ(s, 0x3C00);  // 1.0 in binary16
  EXPECT_EQ(gptq_v1_zero_underflows(q), 1);

  // Codes[o, i] = 15 - i for output 3 only: word 0x89ABCDEF in column 3.
  for (int64_t i = 0; i < 8; ++i) q.codes[size_t(3 * 8 + i)] = uint8_t(15 - i);
  EXPECT_EQ(uint32_t(gptq_pack(q).qweight[3]), 0x89ABCDEFu);
}

TEST(GptqPacking, Golden2And8BitWords) {
  QTensor q2 = make_qtensor(16, 16, 2, -1);  // 16 codes 0,1,2,3,0,.. -> 0b11100100 repeated
  for (int64_t o = 0; o < 16; ++o)
    for (int64_t i = 0; i < 16; ++i) q2.codes[size_t(o * 16 + i)] = uint8_t(i % 4);
  for (int32_t w : gptq_pack(q2).qweight) EXPECT_EQ(uint32_t(w), 0xE4E4E4E4u);

  QTensor q8 = make_qtensor(4, 8, 8, -1);  // qweight [2, 4]
  for (int64_t o = 0; o < 4; ++o)
    for (int64_t i = 0; i < 8; ++i) q8.codes[size_t(o * 8 + i)] = uint8_t(i + 1 + 16 * o);
  const GptqPacked p8 = gptq_pack(q8);
  ASSERT_EQ(p8.qweight.size(), 8u);
  EXPECT_EQ(uint32_t(p8.qweight[0 * 4 + 0]), 0x04030201u);  // row 0 = inputs 0..3
  EXPECT_EQ(uint32_t(p8.qweight[1 * 4 + 0]), 0x08070605u);  // row 1 = inputs 4..7
  EXPECT_EQ(uint32_t(p8.qweight[1 * 4 + 2]), 0x28272625u);  // output 2: codes + 32
}

// AutoGPTQ's QuantLinear.pack for 3 bits, transcribed step by step (not the bit-stream rule):
// 32 values -> 3 words.
std::array<uint32_t, 3> reference_pack3(const uint32_t* v) {
  std::array<uint32_t, 3> w{0, 0, 0};
  int i = 0;
  for (int j = i; j < i + 10; ++j) w[0] |= v[j] << (3 * (j - i));
  i += 10;
  w[0] |= v[i] << 30;
  w[1] |= (v[i] >> 2) & 1;
  i += 1;
  for (int j = i; j < i + 10; ++j) w[1] |= v[j] << (3 * (j - i) + 1);
  i += 10;
  w[1] |= v[i] << 31;
  w[2] |= (v[i] >> 1) & 0x3;
  i += 1;
  for (int j = i; j < i + 10; ++j) w[2] |= v[j] << (3 * (j - i) + 2);
  return w;
}

TEST(GptqPacking, Golden3BitWords) {
  // All codes 1: the bit stream 001 001 ... gives the three words below.
  QTensor q = make_qtensor(32, 32, 3, -1);
  std::fill(q.codes.begin(), q.codes.end(), 1);
  GptqPacked p = gptq_pack(q);
  ASSERT_EQ(p.qweight.size(), 3u * 32u);
  EXPECT_EQ(uint32_t(p.qweight[0 * 32]), 0x49249249u);
  EXPECT_EQ(uint32_t(p.qweight[1 * 32]), 0x92492492u);
  EXPECT_EQ(uint32_t(p.qweight[2 * 32]), 0x24924924u);
  // zeros all 2 -> stored 1: qzeros use the same three words along the output dimension.
  std::fill(q.zeros.begin(), q.zeros.end(), 2.0f);
  p = gptq_pack(q);
  ASSERT_EQ(p.qzeros.size(), 3u);
  EXPECT_EQ(uint32_t(p.qzeros[0]), 0x49249249u);
  EXPECT_EQ(uint32_t(p.qzeros[1]), 0x92492492u);
  EXPECT_EQ(uint32_t(p.qzeros[2]), 0x24924924u);

  // Random codes against the transcribed reference procedure, every output column.
  std::mt19937_64 rng(test::test_seed(31));
  std::uniform_int_distribution<int> code(0, 7);
  QTensor r = make_qtensor(32, 64, 3, 32);
  for (auto& c : r.codes) c = uint8_t(code(rng));
  for (auto& z : r.zeros) z = float(code(rng));
  p = gptq_pack(r);
  for (int64_t o = 0; o < 32; ++o)
    for (int64_t blk = 0; blk < 2; ++blk) {
      uint32_t v[32];
      for (int k = 0; k < 32; ++k) v[k] = r.code(o, blk * 32 + k);
      const auto w = reference_pack3(v);
      for (int k = 0; k < 3; ++k)
        ASSERT_EQ(uint32_t(p.qweight[size_t((blk * 3 + k) * 32 + o)]), w[size_t(k)]);
    }
  for (int64_t g = 0; g < 2; ++g) {
    uint32_t v[32];
    for (int o = 0; o < 32; ++o) v[o] = (uint32_t(r.zero(g, o)) - 1u) & 7u;
    const auto w = reference_pack3(v);
    for (int k = 0; k < 3; ++k) ASSERT_EQ(uint32_t(p.qzeros[size_t(g * 3 + k)]), w[size_t(k)]);
  }
}

TEST(GptqPacking, RoundTripIsBitExact) {
  std::mt19937_64 rng(test::test_seed(32));
  struct Shape {
    int64_t out, in;
    int group_size;
  };
  for (int bits : {2, 3, 4, 8})
    for (const Shape s : {Shape{32, 32, -1}, Shape{64, 384, 128}, Shape{96, 320, 128},
                          Shape{32, 256, 32}, Shape{160, 96, 64}}) {
      SCOPED_TRACE(testing::Message()
                   << "bits " << bits << " [" << s.out << ", " << s.in << "] gs " << s.group_size);
      QTensor q = make_qtensor(s.out, s.in, bits, s.group_size);
      std::uniform_int_distribution<int> code(0, q.maxq());
      std::uniform_real_distribution<float> scale(1e-4f, 0.5f);
      for (auto& c : q.codes) c = uint8_t(code(rng));
      for (auto& z : q.zeros) z = float(code(rng));
      q.zeros[0] = 0.0f;             // the v1 underflow case
      q.zeros[1] = float(q.maxq());  // and the top
      for (auto& sc : q.scales) sc = half_to_float(float_to_half(scale(rng)));
      q.codes[0] = 0;
      q.codes[1] = uint8_t(q.maxq());
      // Act-order style g_idx: a shuffled assignment with the same group sizes.
      std::shuffle(q.g_idx.begin(), q.g_idx.end(), rng);
      const GptqPacked p = gptq_pack(q);
      EXPECT_EQ(p.n_groups, q.n_groups());
      EXPECT_EQ(int64_t(p.qweight.size()), s.in * bits / 32 * s.out);
      EXPECT_EQ(int64_t(p.qzeros.size()), q.n_groups() * s.out * bits / 32);
      const QTensor u = gptq_unpack(p);
      ASSERT_EQ(u.codes, q.codes);
      ASSERT_EQ(u.zeros, q.zeros);
      ASSERT_EQ(u.scales, q.scales);
      ASSERT_EQ(u.g_idx, q.g_idx);
      EXPECT_EQ(u.bits, q.bits);
      EXPECT_EQ(u.group_size, q.group_size);
      EXPECT_EQ(u.dequantize(), q.dequantize());
    }
}

TEST(GptqPacking, QuantizerOutputReloadsBitExact) {
  std::mt19937_64 rng(test::test_seed(33));
  const MatrixRM W = test::random_weight(64, 256, rng);
  const MatrixD H = test::hessian_of(test::random_activations(300, 256, rng));
  for (int bits : {2, 3, 4, 8}) {
    GptqConfig cfg;
    cfg.bits = bits;
    cfg.group_size = 128;
    cfg.desc_act = true;
    const QTensor g = gptq_quantize(W, H, cfg).q;
    EXPECT_EQ(gptq_unpack(gptq_pack(g)).dequantize(), g.dequantize()) << "GPTQ bits " << bits;
    const QTensor r = quantize_rtn(W, RtnConfig{bits, 64, bits % 2 == 0});
    EXPECT_EQ(gptq_unpack(gptq_pack(r)).dequantize(), r.dequantize()) << "RTN bits " << bits;
  }
}

TEST(GptqPacking, RejectsWhatTheLayoutCannotHold) {
  EXPECT_THROW(gptq_pack(make_qtensor(32, 32, 5, -1)), Error);  // no 5-bit packing
  EXPECT_THROW(gptq_pack(make_qtensor(32, 16, 3, -1)), Error);  // 16 * 3 bits: not whole words
  EXPECT_THROW(gptq_pack(make_qtensor(12, 32, 4, -1)), Error);  // qzeros: 12 * 4 bits
  QTensor bad = make_qtensor(32, 32, 4, -1);
  bad.zeros[0] = 16.0f;  // out of range
  EXPECT_THROW(gptq_pack(bad), Error);
  GptqPacked p = gptq_pack(make_qtensor(32, 64, 4, 32));
  p.g_idx[5] = 2;  // only groups 0, 1
  EXPECT_THROW(gptq_unpack(p), Error);
  p = gptq_pack(make_qtensor(32, 64, 4, 32));
  p.qweight.pop_back();
  EXPECT_THROW(gptq_unpack(p), Error);
}

TEST(GptqLayout, BitsPerWeightAndStorage) {
  QTensor q;
  q.rows = 4096;
  q.cols = 4096;
  q.bits = 4;
  q.group_size = 128;
  // 4 + 32 groups * (16 + 4) / 4096 + 32 / 4096 = 4 + 0.15625 + 0.0078125
  EXPECT_DOUBLE_EQ(gptq_bits_per_weight(q), 4.1640625);
  // qweight 512*4096*4 + qzeros 32*512*4 + scales 32*4096*2 + g_idx 4096*4
  EXPECT_EQ(gptq_storage_bytes(q), 512 * 4096 * 4 + 32 * 512 * 4 + 32 * 4096 * 2 + 4096 * 4);
  q.group_size = -1;
  q.bits = 3;
  EXPECT_DOUBLE_EQ(gptq_bits_per_weight(q), 3.0 + 19.0 / 4096 + 32.0 / 4096);
  q.cols = 100;
  q.group_size = 32;  // 4 groups, the last one short
  EXPECT_EQ(q.n_groups(), 4);
}

TEST(AwqLayout, BitsPerWeightHasNoGIdx) {
  QTensor q;
  q.rows = 4096;
  q.cols = 4096;
  q.bits = 4;
  q.group_size = 128;
  // 4 + 32 groups * (16 + 4) / 4096, no g_idx
  EXPECT_DOUBLE_EQ(awq_bits_per_weight(q), 4.15625);
  EXPECT_DOUBLE_EQ(gptq_bits_per_weight(q) - awq_bits_per_weight(q), 32.0 / 4096);
}

// (c) Packing: a hand-computed word, and the round trip.
TEST(AwqPacking, GoldenWordAndRoundTrip) {
  // Outputs 0..7 with codes 0..7: nibble k holds output AWQ_ORDER[k] = 0,2,4,6,1,3,5,7.
  EXPECT_EQ(awq_pack_word({0, 1, 2, 3, 4, 5, 6, 7}), 0x75316420u);
  EXPECT_EQ(awq_pack_word({15, 0, 0, 0, 0, 0, 0, 0}), 0x0000000Fu);
  EXPECT_EQ(awq_pack_word({0, 9, 0, 0, 0, 0, 0, 0}), 0x00090000u);  // output 1 -> nibble 4
  EXPECT_EQ(awq_pack_word({0, 0, 0, 0, 0, 0, 0, 0xA}), 0xA0000000u);
  EXPECT_EQ(awq_unpack_word(0x75316420u), (std::array<uint8_t, 8>{0, 1, 2, 3, 4, 5, 6, 7}));

  std::mt19937_64 rng(test::test_seed(11));
  std::normal_distribution<float> nd(0.0f, 0.02f);
  MatrixRM W(48, 256);
  for (int64_t i = 0; i < W.size(); ++i) W.data()[i] = nd(rng);
  for (int gs : {128, -1}) {
    const QTensor q = quantize_rtn(W, {4, gs, false});
    const AwqPacked p = awq_pack(q);
    EXPECT_EQ(p.qweight.size(), size_t(256 * 6));
    EXPECT_EQ(p.qzeros.size(), size_t(q.n_groups() * 6));
    // The first word of row i = 0 packs the codes of outputs 0..7 at input 0.
    std::array<uint8_t, 8> v{};
    for (int j = 0; j < 8; ++j) v[size_t(j)] = q.code(j, 0);
    EXPECT_EQ(uint32_t(p.qweight[0]), awq_pack_word(v));
    const QTensor u = awq_unpack(p);
    EXPECT_EQ(u.codes, q.codes);
    EXPECT_EQ(u.scales, q.scales);
    EXPECT_EQ(u.zeros, q.zeros);
    EXPECT_EQ(u.g_idx, q.g_idx);
    EXPECT_TRUE(u.dequantize() == q.dequantize());
  }
  EXPECT_THROW(awq_pack(quantize_rtn(W, {3, 128, false})), Error);
  EXPECT_THROW(awq_pack(quantize_rtn(W, {4, 128, true})), Error);
  EXPECT_THROW(awq_pack(quantize_rtn(W, {4, 100, false})), Error);
}

}  // namespace
}  // namespace qsweep
