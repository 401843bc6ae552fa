// The GPTQ checkpoint layout (Hugging Face `quantization_config.quant_method = "gptq"`,
// `checkpoint_format = "gptq"`, i.e. v1), as written by AutoGPTQ / GPTQModel and read by them
// and by transformers/optimum: per linear layer the tensors
//   qweight  int32 [in * bits / 32, out]     codes packed along the INPUT dimension
//   qzeros   int32 [n_groups, out * bits / 32]  (zero - 1) packed along the OUTPUT dimension
//   scales   fp16  [n_groups, out]
//   g_idx    int32 [in]                        group of each input column (original order)
// The safetensors reading and writing belongs to formats/; this is only the bit layout.
//
// Packing rule, verified against the `pack` methods of
//   AutoGPTQ/AutoGPTQ  auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py (QuantLinear.pack)
//   ModelCloud/GPTQModel gptqmodel/nn_modules/qlinear/qlinear_cuda.py (CudaQuantLinear.pack)
//   IST-DASLab/gptq quant.py (Quant3Linear.pack, 3-bit only)
// and against the unpacking tables of the same AutoGPTQ/GPTQModel files (`wf`, the torch
// fallback in forward):
//  * Along the packed dimension, each run of 32 consecutive values v0..v31 becomes `bits`
//    consecutive int32 words, and value k occupies bits [bits*k, bits*k + bits) of the
//    little-endian bit stream formed by those words (bit b of word w is stream bit 32w + b).
//  * For bits = 2, 4, 8 no value crosses a word: word w holds values 32w/bits .. with value k
//    at shift bits*(k mod (32/bits)). E.g. 4-bit codes 0,1,..,7 pack to 0x76543210.
//  * For bits = 3 the 32 values take 3 words and two values cross a word boundary: the
//    reference writes v0..v9 at shifts 0,3,..,27 of word 0 and the low 2 bits of v10 at
//    shift 30; word 1 gets bit 2 of v10 at bit 0, v11..v20 at shifts 1,4,..,28, the low bit of
//    v21 at bit 31; word 2 gets bits 1..2 of v21 at bits 0..1 and v22..v31 at shifts
//    2,5,..,29. That is exactly the bit-stream rule above (v10 = stream bits 30..32, v21 =
//    stream bits 63..65), which is how this file implements all four widths.
//  * qweight[w, o] packs codes[o, 32*(w/bits)...] along the input index i (i.e. the column of
//    the HF weight), in ORIGINAL column order; g_idx is what maps a column to its group, so
//    act-order checkpoints need no reordering of qweight.
//  * qzeros[g, w] packs along the output index o the values (zero[g, o] - 1): the v1
//    convention (readers add 1 back). scales[g, o] is the scale as fp16.
//
// The v1 zero underflow: a zero point of 0 has no v1 encoding. The reference packers differ in
// what they write: AutoGPTQ casts -1.0 to uint32 (0xFFFFFFFF) and ORs it in, filling every
// higher field of the word with ones; GPTQModel's v2 -> v1 conversion subtracts 1 from the
// packed word, borrowing from the next field. Here (zero - 1) is wrapped within its own field,
// (zero - 1) mod 2^bits, which is what both write into that field and touches no neighbour;
// gptq_unpack inverts it ((stored + 1) mod 2^bits), so pack -> unpack is exact for every zero.
// Readers that decode v1 (AutoGPTQ/transformers kernels, GPTQModel's v1 -> v2 conversion) add 1
// without wrapping and therefore see 2^bits where the QTensor had 0: such a checkpoint does
// not load as what was quantized. gptq_v1_zero_underflows() counts those entries so that the
// writer can refuse or record it. Symmetric grids never produce zero 0 (zero = 2^(bits-1)).
//
// Shapes: the packed dimensions must fill whole words ((in * bits) % 32 == 0 and
// (out * bits) % 32 == 0, i.e. multiples of 32 for 3 bits); the readers' buffer shapes
// (in // 32 * bits) additionally need in and out to be multiples of 32.
//
// Scales: packing rounds each float scale to fp16 (round to nearest even). GPTQ and RTN here
// already produce fp16-exact scales (QuantGrid::fp16_scale), so for them pack -> unpack
// reproduces the QTensor bit for bit, and dequantize() of the reloaded tensor is identical.
#pragma once

#include <cstdint>
#include <vector>

#include "quantizers/quantizers.h"

namespace qsweep {

/// One linear layer in the GPTQ v1 checkpoint layout (all tensors row-major).
struct GptqPacked {
  int bits = 4;
  int group_size = -1;  ///< as in quantize_config.json; -1 = one group of all input columns
  bool sym = true;      ///< quantize_config.json `sym` (not stored in the tensors)
  int64_t in_features = 0;
  int64_t out_features = 0;
  int64_t n_groups = 0;

  std::vector<int32_t> qweight;      ///< [qweight_rows(), out_features]
  std::vector<int32_t> qzeros;       ///< [n_groups, qzeros_cols()]
  std::vector<uint16_t> scales_f16;  ///< [n_groups, out_features], IEEE binary16 bits
  std::vector<int32_t> g_idx;        ///< [in_features]

  int64_t qweight_rows() const { return in_features * bits / 32; }
  int64_t qzeros_cols() const { return out_features * bits / 32; }
};

/// QTensor -> GPTQ v1 layout. Throws Error for bits outside {2, 3, 4, 8}, shapes that do not
/// fill whole int32 words (see above), or an invalid QTensor.
GptqPacked gptq_pack(const QTensor& q);

/// GPTQ v1 layout -> QTensor; the exact inverse of gptq_pack (zero = (stored + 1) mod 2^bits).
/// Throws Error when sizes are inconsistent or a g_idx value is out of range.
QTensor gptq_unpack(const GptqPacked& p);

/// Number of (group, row) zero points equal to 0: the entries a v1 reader would decode as
/// 2^bits instead (see above).
int64_t gptq_v1_zero_underflows(const QTensor& q);

/// Exact storage cost per weight of `q` in this layout:
///   bits                                  code bits (qweight)
/// + n_groups * (16 + bits) / cols         per group and row: fp16 scale + `bits`-bit zero
/// + 32 / rows                             int32 g_idx per input column, amortised over rows
/// = (rows*cols*bits + n_groups*rows*(16 + bits) + 32*cols) / (rows*cols).
/// Bias and the config file are not counted.
double gptq_bits_per_weight(const QTensor& q);
/// ceil(gptq_bits_per_weight(q) * rows * cols / 8): the bytes of qweight + qzeros + scales +
/// g_idx exactly, whenever rows and cols are multiples of 32 (which the GPTQ readers require).
int64_t gptq_storage_bytes(const QTensor& q);

}  // namespace qsweep
