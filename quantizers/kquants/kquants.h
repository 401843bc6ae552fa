// llama.cpp / ggml block quantization (legacy Q4_0 ... Q8_0 and the K-quants Q2_K ... Q6_K),
// bit-exact with ggml's reference quantizers in ggml/src/ggml-quants.c.
//
// Three entry points per format, all on row-major float data:
//  * quantize_row_<t>_ref(x, blocks, n)        : ggml's quantize_row_<t>_ref. n may span
//    several rows (every block is independent).
//  * quantize_row_<t>(x, blocks, n, imatrix)   : what `llama-quantize --imatrix` runs for one
//    row of length n (ggml's quantize_<t> with nrow = 1). imatrix has n entries (the
//    per-column importance of this tensor) or is nullptr; with nullptr every type falls back
//    to the _ref path, exactly as ggml does. Q8_0 and Q8_K ignore the imatrix.
//    Some types (Q4_0, Q4_1, Q5_0, Q5_1) use statistics of the whole row, so n must be the
//    real row length here.
//  * dequantize_row_<t>(blocks, y, n)          : ggml's dequantize_row_<t>.
// n must be a non-negative multiple of the type's block size (32 or 256); otherwise
// qsweep::Error is thrown. `blocks` holds n / block_size structs from blocks.h
// (row_size(type, n) bytes).
//
// The bytes match ggml only when the arithmetic is not contracted into FMAs; this library
// is built with -ffp-contract=off for that reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "quantizers/kquants/blocks.h"

namespace qsweep::kquants {

/// ggml's enum ggml_type values (ggml/include/ggml.h); GGUF stores these numbers.
namespace ggml_type {
inline constexpr int32_t F32 = 0;
inline constexpr int32_t F16 = 1;
inline constexpr int32_t Q4_0 = 2;
inline constexpr int32_t Q4_1 = 3;
// 4 and 5 were Q4_2 / Q4_3, removed.
inline constexpr int32_t Q5_0 = 6;
inline constexpr int32_t Q5_1 = 7;
inline constexpr int32_t Q8_0 = 8;
inline constexpr int32_t Q8_1 = 9;
inline constexpr int32_t Q2_K = 10;
inline constexpr int32_t Q3_K = 11;
inline constexpr int32_t Q4_K = 12;
inline constexpr int32_t Q5_K = 13;
inline constexpr int32_t Q6_K = 14;
inline constexpr int32_t Q8_K = 15;
inline constexpr int32_t BF16 = 30;
}  // namespace ggml_type

/// The block formats implemented here (our own dense enum; see TypeTraits::ggml_type).
enum class QuantType : uint8_t { Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K };
inline constexpr int kQuantTypeCount = 11;

// ---- per-type functions ---------------------------------------------------------------
// x: n floats; blocks: row_size(type, n) bytes; imatrix: n floats or nullptr.
#define QSWEEP_KQUANTS_DECLARE(t)                                                       \
  void quantize_row_##t##_ref(const float* x, void* blocks, int64_t n);                 \
  void quantize_row_##t(const float* x, void* blocks, int64_t n, const float* imatrix); \
  void dequantize_row_##t(const void* blocks, float* y, int64_t n);
QSWEEP_KQUANTS_DECLARE(q4_0)
QSWEEP_KQUANTS_DECLARE(q4_1)
QSWEEP_KQUANTS_DECLARE(q5_0)
QSWEEP_KQUANTS_DECLARE(q5_1)
QSWEEP_KQUANTS_DECLARE(q8_0)
QSWEEP_KQUANTS_DECLARE(q2_K)
QSWEEP_KQUANTS_DECLARE(q3_K)
QSWEEP_KQUANTS_DECLARE(q4_K)
QSWEEP_KQUANTS_DECLARE(q5_K)
QSWEEP_KQUANTS_DECLARE(q6_K)
QSWEEP_KQUANTS_DECLARE(q8_K)
#undef QSWEEP_KQUANTS_DECLARE

using QuantizeRefFn = void (*)(const float* x, void* blocks, int64_t n);
using QuantizeFn = void (*)(const float* x, void* blocks, int64_t n, const float* imatrix);
using DequantizeFn = void (*)(const void* blocks, float* y, int64_t n);

/// Device-independent facts about one format (ggml's type_traits row).
struct TypeTraits {
  QuantType type;
  const char* name;   ///< "Q4_K", as llama.cpp spells it
  int32_t ggml_type;  ///< ggml_type::* value stored in GGUF
  int block_size;     ///< weights per block: 32 or 256
  int type_size;      ///< bytes per block
  double bpw;         ///< 8 * type_size / block_size
  bool k_quant;       ///< a 256-weight super-block format
  QuantizeRefFn quantize_ref;
  QuantizeFn quantize;
  DequantizeFn dequantize;
};

/// The one table, indexed by QuantType.
inline constexpr TypeTraits kTypeTraits[kQuantTypeCount] = {
    {QuantType::Q4_0, "Q4_0", ggml_type::Q4_0, kQK, sizeof(block_q4_0),
     8.0 * sizeof(block_q4_0) / kQK, false, quantize_row_q4_0_ref, quantize_row_q4_0,
     dequantize_row_q4_0},
    {QuantType::Q4_1, "Q4_1", ggml_type::Q4_1, kQK, sizeof(block_q4_1),
     8.0 * sizeof(block_q4_1) / kQK, false, quantize_row_q4_1_ref, quantize_row_q4_1,
     dequantize_row_q4_1},
    {QuantType::Q5_0, "Q5_0", ggml_type::Q5_0, kQK, sizeof(block_q5_0),
     8.0 * sizeof(block_q5_0) / kQK, false, quantize_row_q5_0_ref, quantize_row_q5_0,
     dequantize_row_q5_0},
    {QuantType::Q5_1, "Q5_1", ggml_type::Q5_1, kQK, sizeof(block_q5_1),
     8.0 * sizeof(block_q5_1) / kQK, false, quantize_row_q5_1_ref, quantize_row_q5_1,
     dequantize_row_q5_1},
    {QuantType::Q8_0, "Q8_0", ggml_type::Q8_0, kQK, sizeof(block_q8_0),
     8.0 * sizeof(block_q8_0) / kQK, false, quantize_row_q8_0_ref, quantize_row_q8_0,
     dequantize_row_q8_0},
    {QuantType::Q2_K, "Q2_K", ggml_type::Q2_K, kQK_K, sizeof(block_q2_K),
     8.0 * sizeof(block_q2_K) / kQK_K, true, quantize_row_q2_K_ref, quantize_row_q2_K,
     dequantize_row_q2_K},
    {QuantType::Q3_K, "Q3_K", ggml_type::Q3_K, kQK_K, sizeof(block_q3_K),
     8.0 * sizeof(block_q3_K) / kQK_K, true, quantize_row_q3_K_ref, quantize_row_q3_K,
     dequantize_row_q3_K},
    {QuantType::Q4_K, "Q4_K", ggml_type::Q4_K, kQK_K, sizeof(block_q4_K),
     8.0 * sizeof(block_q4_K) / kQK_K, true, quantize_row_q4_K_ref, quantize_row_q4_K,
     dequantize_row_q4_K},
    {QuantType::Q5_K, "Q5_K", ggml_type::Q5_K, kQK_K, sizeof(block_q5_K),
     8.0 * sizeof(block_q5_K) / kQK_K, true, quantize_row_q5_K_ref, quantize_row_q5_K,
     dequantize_row_q5_K},
    {QuantType::Q6_K, "Q6_K", ggml_type::Q6_K, kQK_K, sizeof(block_q6_K),
     8.0 * sizeof(block_q6_K) / kQK_K, true, quantize_row_q6_K_ref, quantize_row_q6_K,
     dequantize_row_q6_K},
    {QuantType::Q8_K, "Q8_K", ggml_type::Q8_K, kQK_K, sizeof(block_q8_K),
     8.0 * sizeof(block_q8_K) / kQK_K, true, quantize_row_q8_K_ref, quantize_row_q8_K,
     dequantize_row_q8_K},
};

constexpr const TypeTraits& traits(QuantType t) {
  return kTypeTraits[static_cast<int>(t)];
}

// The table is in enum order and carries the bpw figures quoted in ggml-common.h.
static_assert(traits(QuantType::Q4_0).bpw == 4.5 && traits(QuantType::Q4_1).bpw == 5.0);
static_assert(traits(QuantType::Q5_0).bpw == 5.5 && traits(QuantType::Q5_1).bpw == 6.0);
static_assert(traits(QuantType::Q8_0).bpw == 8.5 && traits(QuantType::Q2_K).bpw == 2.625);
static_assert(traits(QuantType::Q3_K).bpw == 3.4375 && traits(QuantType::Q4_K).bpw == 4.5);
static_assert(traits(QuantType::Q5_K).bpw == 5.5 && traits(QuantType::Q6_K).bpw == 6.5625);
static_assert(traits(QuantType::Q8_K).type == QuantType::Q8_K);

/// "Q4_K" -> QuantType::Q4_K (case-sensitive, llama.cpp spelling); nullopt if unknown.
std::optional<QuantType> type_from_name(std::string_view name);
/// QuantType for a ggml_type::* number; nullopt for types not implemented here.
std::optional<QuantType> type_from_ggml(int32_t ggml_type);

/// Bytes taken by n weights of type t; throws Error unless n is a multiple of the block size.
size_t row_size(QuantType t, int64_t n);

// ---- dispatch by type -----------------------------------------------------------------
void quantize_row_ref(QuantType t, const float* x, void* blocks, int64_t n);
void quantize_row(QuantType t, const float* x, void* blocks, int64_t n, const float* imatrix);
void dequantize_row(QuantType t, const void* blocks, float* y, int64_t n);

/// Quantizes a row-major [rows, cols] matrix W row by row, in parallel (oneTBB), as
/// llama-quantize does: imatrix (cols entries, or nullptr) weights the columns of every row.
/// Returns rows * row_size(t, cols) bytes, rows back to back.
std::vector<uint8_t> quantize_tensor(QuantType t, const float* W, int64_t rows, int64_t cols,
                                     const float* imatrix = nullptr);
/// Inverse of quantize_tensor: data has rows * row_size(t, cols) bytes; returns rows * cols
/// floats, row-major.
std::vector<float> dequantize_tensor(QuantType t, std::span<const uint8_t> data, int64_t rows,
                                     int64_t cols);

}  // namespace qsweep::kquants
