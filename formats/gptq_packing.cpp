#include "formats/gptq_packing.h"

#include "common/errors.h"
#include "common/half.h"

namespace qsweep {

double gptq_bits_per_weight(const QTensor& q) {
  const double weights = double(q.rows) * double(q.cols);
  const double total = weights * q.bits + double(q.n_groups()) * double(q.rows) * (16.0 + q.bits) +
                       32.0 * double(q.cols);
  return total / weights;
}

int64_t gptq_storage_bytes(const QTensor& q) {
  const int64_t total_bits =
      q.rows * q.cols * q.bits + q.n_groups() * q.rows * (16 + int64_t(q.bits)) + 32 * q.cols;
  return (total_bits + 7) / 8;
}

namespace {

// Value k of a run goes to bits [bits*k, bits*k + bits) of the little-endian word stream
// words[0], words[stride], ... (the layout comment in gptq_packing.h).
void pack_stream(const uint32_t* values, int64_t n, int bits, uint32_t* words, int64_t stride) {
  for (int64_t k = 0; k < n; ++k) {
    const int64_t pos = k * bits, w = pos / 32;
    const int b = int(pos % 32);
    words[w * stride] |= values[k] << b;
    if (b + bits > 32) words[(w + 1) * stride] |= values[k] >> (32 - b);
  }
}

void unpack_stream(const uint32_t* words, int64_t stride, int64_t n, int bits, uint32_t* values) {
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t pos = k * bits, w = pos / 32;
    const int b = int(pos % 32);
    uint32_t v = words[w * stride] >> b;
    if (b + bits > 32) v |= words[(w + 1) * stride] << (32 - b);
    values[k] = v & mask;
  }
}

void check_packable(int bits, int64_t in, int64_t out) {
  QS_THROW_IF_NOT(bits == 2 || bits == 3 || bits == 4 || bits == 8,
                  "GPTQ packing supports 2, 3, 4 and 8 bits, got ", bits);
  QS_THROW_IF_NOT((in * bits) % 32 == 0 && (out * bits) % 32 == 0, "GPTQ packing: shape [out ", out,
                  ", in ", in, "] at ", bits,
                  " bits does not fill whole int32 words (multiples of 32 always do)");
}

}  // namespace

GptqPacked gptq_pack(const QTensor& q) {
  q.validate();
  check_packable(q.bits, q.cols, q.rows);
  GptqPacked p;
  p.bits = q.bits;
  p.group_size = q.group_size;
  p.sym = q.sym;
  p.in_features = q.cols;
  p.out_features = q.rows;
  p.n_groups = q.n_groups();
  const int64_t in = q.cols, out = q.rows, ng = p.n_groups;

  // qweight: for output o, the stream of codes along the input dimension, one word per row.
  std::vector<uint32_t> qweight(size_t(p.qweight_rows() * out), 0u);
  std::vector<uint32_t> vals(static_cast<size_t>(std::max(in, out)));
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) vals[size_t(i)] = q.code(o, i);
    pack_stream(vals.data(), in, p.bits, qweight.data() + o, out);
  }
  p.qweight.assign(qweight.begin(), qweight.end());  // same bits, int32 as stored

  const uint32_t mask = uint32_t(q.maxq());
  std::vector<uint32_t> qzeros(size_t(ng * p.qzeros_cols()), 0u);
  p.scales_f16.resize(size_t(ng * out));
  for (int64_t g = 0; g < ng; ++g) {
    for (int64_t o = 0; o < out; ++o) {
      vals[size_t(o)] = (uint32_t(q.zero(g, o)) - 1u) & mask;  // v1: zero - 1, wrapped in field
      p.scales_f16[size_t(g * out + o)] = float_to_half(q.scale(g, o));
    }
    pack_stream(vals.data(), out, p.bits, qzeros.data() + g * p.qzeros_cols(), 1);
  }
  p.qzeros.assign(qzeros.begin(), qzeros.end());
  p.g_idx = q.g_idx;
  return p;
}

QTensor gptq_unpack(const GptqPacked& p) {
  check_packable(p.bits, p.in_features, p.out_features);
  QTensor q;
  q.rows = p.out_features;
  q.cols = p.in_features;
  q.bits = p.bits;
  q.group_size = p.group_size;
  q.sym = p.sym;
  QS_THROW_IF_NOT(q.rows >= 1 && q.cols >= 1 && (p.group_size == -1 || p.group_size >= 1),
                  "GPTQ unpack: bad shape [", q.rows, ", ", q.cols, "] or group_size ",
                  p.group_size);
  const int64_t in = q.cols, out = q.rows, ng = q.n_groups();
  QS_THROW_IF_NOT(p.n_groups == ng, "GPTQ unpack: ", p.n_groups, " groups stored, but ", in,
                  " input columns with group_size ", p.group_size, " make ", ng);
  QS_THROW_IF_NOT(int64_t(p.qweight.size()) == p.qweight_rows() * out &&
                      int64_t(p.qzeros.size()) == ng * p.qzeros_cols() &&
                      int64_t(p.scales_f16.size()) == ng * out && int64_t(p.g_idx.size()) == in,
                  "GPTQ unpack: tensor sizes do not match [out ", out, ", in ", in, "], ", ng,
                  " groups, ", p.bits, " bits");

  const std::vector<uint32_t> qweight(p.qweight.begin(), p.qweight.end());
  const std::vector<uint32_t> qzeros(p.qzeros.begin(), p.qzeros.end());
  std::vector<uint32_t> vals(static_cast<size_t>(std::max(in, out)));
  q.codes.resize(size_t(out * in));
  for (int64_t o = 0; o < out; ++o) {
    unpack_stream(qweight.data() + o, out, in, p.bits, vals.data());
    for (int64_t i = 0; i < in; ++i) q.codes[size_t(o * in + i)] = uint8_t(vals[size_t(i)]);
  }
  const uint32_t mask = uint32_t(q.maxq());
  q.zeros.resize(size_t(ng * out));
  q.scales.resize(size_t(ng * out));
  for (int64_t g = 0; g < ng; ++g) {
    unpack_stream(qzeros.data() + g * p.qzeros_cols(), 1, out, p.bits, vals.data());
    for (int64_t o = 0; o < out; ++o) {
      q.zeros[size_t(g * out + o)] = float((vals[size_t(o)] + 1u) & mask);
      q.scales[size_t(g * out + o)] = half_to_float(p.scales_f16[size_t(g * out + o)]);
    }
  }
  q.g_idx = p.g_idx;
  q.validate();
  return q;
}

int64_t gptq_v1_zero_underflows(const QTensor& q) {
  int64_t n = 0;
  for (float z : q.zeros) n += z == 0.0f;
  return n;
}

}  // namespace qsweep
