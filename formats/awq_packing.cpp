#include "formats/awq_packing.h"

#include "common/errors.h"
#include "common/half.h"

namespace qsweep {

double awq_bits_per_weight(const QTensor& q) {
  const double weights = double(q.rows) * double(q.cols);
  const double total = weights * q.bits + double(q.n_groups()) * double(q.rows) * (16.0 + q.bits);
  return total / weights;
}

namespace {

void check_shape(int bits, int group_size, int64_t in, int64_t out) {
  QS_THROW_IF_NOT(bits == 4,
                  "the AWQ GEMM layout holds 4-bit codes only (AutoAWQ WQLinear_GEMM), got ", bits,
                  " bits");
  QS_THROW_IF_NOT(out > 0 && in > 0 && out % 8 == 0, "AWQ packing: out_features ", out,
                  " must be a positive multiple of 8");
  QS_THROW_IF_NOT(group_size == -1 || (group_size >= 1 && in % group_size == 0),
                  "AWQ packing: group_size ", group_size, " does not divide in_features ", in);
}

}  // namespace

uint32_t awq_pack_word(const std::array<uint8_t, 8>& v) {
  uint32_t w = 0;
  for (int k = 0; k < 8; ++k) w |= uint32_t(v[size_t(kAwqOrder[size_t(k)])] & 0xF) << (4 * k);
  return w;
}

std::array<uint8_t, 8> awq_unpack_word(uint32_t word) {
  std::array<uint8_t, 8> v{};
  for (int j = 0; j < 8; ++j)
    v[size_t(j)] = uint8_t((word >> (4 * kAwqReverseOrder[size_t(j)])) & 0xF);
  return v;
}

AwqPacked awq_pack(const QTensor& q) {
  q.validate();
  check_shape(q.bits, q.group_size, q.cols, q.rows);
  QS_THROW_IF_NOT(!q.sym, "AWQ packing: the AWQ layout stores asymmetric (zero-point) grids");
  for (int64_t c = 0; c < q.cols; ++c)
    QS_THROW_IF_NOT(q.g_idx[size_t(c)] == (q.group_size > 0 ? c / q.group_size : 0),
                    "AWQ packing: act-order g_idx cannot be stored in the AWQ layout (column ", c,
                    ")");
  AwqPacked p;
  p.bits = q.bits;
  p.group_size = q.group_size;
  p.in_features = q.cols;
  p.out_features = q.rows;
  p.n_groups = q.n_groups();
  const int64_t in = q.cols, out = q.rows, pc = p.packed_cols();
  p.qweight.assign(size_t(in * pc), 0);
  p.qzeros.assign(size_t(p.n_groups * pc), 0);
  p.scales_f16.resize(size_t(p.n_groups * out));
  std::array<uint8_t, 8> v{};
  for (int64_t i = 0; i < in; ++i)
    for (int64_t w = 0; w < pc; ++w) {
      for (int j = 0; j < 8; ++j) v[size_t(j)] = q.code(8 * w + j, i);
      p.qweight[size_t(i * pc + w)] = int32_t(awq_pack_word(v));
    }
  for (int64_t g = 0; g < p.n_groups; ++g) {
    for (int64_t w = 0; w < pc; ++w) {
      for (int j = 0; j < 8; ++j) v[size_t(j)] = uint8_t(q.zero(g, 8 * w + j));
      p.qzeros[size_t(g * pc + w)] = int32_t(awq_pack_word(v));
    }
    for (int64_t o = 0; o < out; ++o)
      p.scales_f16[size_t(g * out + o)] = float_to_half(q.scale(g, o));
  }
  return p;
}

QTensor awq_unpack(const AwqPacked& p) {
  check_shape(p.bits, p.group_size, p.in_features, p.out_features);
  const int64_t in = p.in_features, out = p.out_features, pc = p.packed_cols();
  const int64_t ng = p.group_size > 0 ? in / p.group_size : 1;
  QS_THROW_IF_NOT(p.n_groups == ng, "AWQ unpacking: ", p.n_groups, " groups, expected ", ng);
  QS_THROW_IF_NOT(p.qweight.size() == size_t(in * pc) && p.qzeros.size() == size_t(ng * pc) &&
                      p.scales_f16.size() == size_t(ng * out),
                  "AWQ unpacking: tensor sizes disagree with [in ", in, ", out ", out, "]");
  QTensor q;
  q.rows = out;
  q.cols = in;
  q.bits = p.bits;
  q.group_size = p.group_size;
  q.sym = false;
  q.codes.resize(size_t(out * in));
  q.scales.resize(size_t(ng * out));
  q.zeros.resize(size_t(ng * out));
  q.g_idx.resize(size_t(in));
  for (int64_t i = 0; i < in; ++i) {
    q.g_idx[size_t(i)] = int32_t(p.group_size > 0 ? i / p.group_size : 0);
    for (int64_t w = 0; w < pc; ++w) {
      const auto v = awq_unpack_word(uint32_t(p.qweight[size_t(i * pc + w)]));
      for (int j = 0; j < 8; ++j) q.codes[size_t((8 * w + j) * in + i)] = v[size_t(j)];
    }
  }
  for (int64_t g = 0; g < ng; ++g) {
    for (int64_t w = 0; w < pc; ++w) {
      const auto v = awq_unpack_word(uint32_t(p.qzeros[size_t(g * pc + w)]));
      for (int j = 0; j < 8; ++j) q.zeros[size_t(g * out + 8 * w + j)] = float(v[size_t(j)]);
    }
    for (int64_t o = 0; o < out; ++o)
      q.scales[size_t(g * out + o)] = half_to_float(p.scales_f16[size_t(g * out + o)]);
  }
  q.validate();
  return q;
}

}  // namespace qsweep
