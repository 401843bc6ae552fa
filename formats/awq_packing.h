// The AutoAWQ "gemm" checkpoint layout (Hugging Face `quantization_config.quant_method = "awq"`,
// `version = "gemm"`), as written by AutoAWQ WQLinear_GEMM.from_linear and read by AutoAWQ,
// transformers and vLLM: per linear layer
//   qweight  int32 [in, out / 8]          codes packed along the OUTPUT dimension
//   qzeros   int32 [n_groups, out / 8]    zero points (the true zero, no -1), same packing
//   scales   fp16  [n_groups, out]
// and no g_idx (group of input column c is c / group_size). 4-bit only: AutoAWQ's GEMM
// module raises NotImplementedError for any other width.
//
// Packing rule, verified against casper-hansen/AutoAWQ awq/modules/linear/gemm.py
// (WQLinear_GEMM.from_linear) and awq/utils/packing_utils.py (unpack_awq, reverse_awq_order,
// dequantize_gemm):
//  * Word w of a row holds outputs 8w .. 8w+7; nibble k (bits 4k .. 4k+3) holds output
//    8w + kAwqOrder[k] with kAwqOrder = [0, 2, 4, 6, 1, 3, 5, 7] (AWQ_ORDER). Readers undo it
//    with AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]: output 8w + j is nibble reverse[j].
//    E.g. codes 0, 1, ..., 7 for outputs 8w .. 8w+7 pack to 0x75316420.
//  * qweight[i, w] packs codes[8w .. 8w+7, i]; qzeros[g, w] packs zero[g, 8w .. 8w+7].
//  * Dequantization (dequantize_gemm): W[o, i] = scales[g, o] * (code - zero), g = i / group.
// Shapes: out % 8 == 0; group_size -1 means one group of all `in` columns (AutoAWQ stores
// group_size = in_features then); otherwise in % group_size == 0 (AutoAWQ asserts it).
// Scales are rounded to fp16; qsweep's grids already produce fp16-exact scales, so
// pack -> unpack is bit-exact for them.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "quantizers/quantizers.h"

namespace qsweep {

/// AWQ_ORDER: nibble k of a word holds output 8w + kAwqOrder[k].
constexpr std::array<int, 8> kAwqOrder = {0, 2, 4, 6, 1, 3, 5, 7};
/// AWQ_REVERSE_ORDER: output 8w + j is in nibble kAwqReverseOrder[j].
constexpr std::array<int, 8> kAwqReverseOrder = {0, 4, 1, 5, 2, 6, 3, 7};

/// One linear layer in the AutoAWQ GEMM layout (all tensors row-major).
struct AwqPacked {
  int bits = 4;
  int group_size = -1;  ///< as in quantization_config; -1 = one group of all input columns
  int64_t in_features = 0;
  int64_t out_features = 0;
  int64_t n_groups = 0;

  std::vector<int32_t> qweight;      ///< [in_features, packed_cols()]
  std::vector<int32_t> qzeros;       ///< [n_groups, packed_cols()]
  std::vector<uint16_t> scales_f16;  ///< [n_groups, out_features], IEEE binary16 bits

  int64_t packed_cols() const { return out_features * bits / 32; }
};

/// Eight 4-bit values v[j] (for outputs 8w + j) -> one AWQ word.
uint32_t awq_pack_word(const std::array<uint8_t, 8>& v);
/// The inverse of awq_pack_word.
std::array<uint8_t, 8> awq_unpack_word(uint32_t word);

/// QTensor -> AWQ GEMM layout. Throws Error for bits != 4, sym grids (AWQ stores a zero point
/// per group; use the asymmetric grid), an act-order g_idx, out % 8 != 0, a group size that
/// does not divide in, or an invalid QTensor.
AwqPacked awq_pack(const QTensor& q);
/// AWQ GEMM layout -> QTensor (sym = false, g_idx = c / group_size); the exact inverse of
/// awq_pack. Throws Error when sizes are inconsistent.
QTensor awq_unpack(const AwqPacked& p);

/// Exact storage cost per weight of `q` in this layout: the GPTQ layout's codes, fp16 scales
/// and `bits`-bit zeros, but no g_idx:
/// (rows*cols*bits + n_groups*rows*(16 + bits)) / (rows*cols).
double awq_bits_per_weight(const QTensor& q);

}  // namespace qsweep
