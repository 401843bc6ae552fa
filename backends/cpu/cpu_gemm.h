// Multi-threaded fp32 GEMM on the CPU: a packed AVX-512 kernel for C = A·Bᵀ (Eigen's kernel for
// A·B, and for A·Bᵀ on builds without AVX-512) on tiles scheduled over oneTBB. Exposed separately
// from the Backend so that hot loops (the forward pass) can call it without a virtual call per
// tile.
#pragma once

#include <cstdint>
#include <functional>

namespace qsweep {

/// C[m, n] = A[m, k] · B[n, k]ᵀ (row-major), overwriting C. `accumulate` adds instead.
/// On AVX-512 builds each C[i, j] is one sequential chain c = fma(A[i, p], B[j, p], c) over
/// p = 0 … k−1 from c = 0 (from the old C[i, j] when accumulating): bit for bit a plain std::fma
/// loop, whatever the tiles or the thread count (GemmShapes.NtIsTheSequentialFmaChain).
void cpu_gemm_nt(const float* A, const float* B, float* C, int64_t m, int64_t n, int64_t k,
                 bool accumulate = false);

/// C[m, n] += A[m, k] · B[n, k]ᵀ with C fp64 and column-major (Eigen's MatrixXd): each tile is
/// computed in fp32 exactly as cpu_gemm_nt computes it (same tiles, same kernel) and added to C in
/// fp64 by the task that computed it, so the result equals C += double(cpu_gemm_nt(A, B)) bit for
/// bit, for any thread count, without a [m, n] fp32 temporary or a serial pass over C.
void cpu_gemm_nt_accumulate_f64(const float* A, const float* B, double* C, int64_t m, int64_t n,
                                int64_t k);

/// Writes rows [r0, r0 + count) of B as fp32 to out[count, k]; called concurrently.
using GemmRowDecoder = std::function<void(int64_t r0, int64_t count, float* out)>;

/// The largest m for which cpu_gemm_nt_rows decodes every row of B exactly once (one row tile).
inline constexpr int64_t kGemmNtRowsMaxM = 128;

/// C[m, n] = A[m, k] · B[n, k]ᵀ with B given by `decode_rows` instead of stored: each task decodes
/// the rows of B of its column tile into a thread-local buffer that stays in cache and multiplies
/// them there, so no fp32 copy of B is written. Same kernel as cpu_gemm_nt, so C equals
/// cpu_gemm_nt(A, B) bit for bit. For m <= kGemmNtRowsMaxM (beyond it, rows are decoded
/// once per row tile: widen B and call cpu_gemm_nt instead).
void cpu_gemm_nt_rows(const float* A, float* C, int64_t m, int64_t n, int64_t k,
                      const GemmRowDecoder& decode_rows);

/// y[n] = W[n, k] · x[k] with W fp16 (or bf16 when `bf16`) bit patterns, row-major, any alignment:
/// the decode (m = 1) product, reading the 2-byte weights directly in SIMD registers (AVX-512 with
/// F16C, else AVX2 with F16C, else scalar; chosen by the build's -march) so the weights stream at
/// memory bandwidth without an fp32 copy. Deterministic: y[j] is summed by one task in an order
/// that depends only on k (16- or 8-lane partial sums, then the k tail), never on n, j or the
/// thread count. Differs from cpu_gemm_nt on the widened weight by fp32 reordering only (not
/// bit for bit): |y − Σ x·w| ≤ (k/32 + 24)·2⁻²⁴·Σ|x·w| (GemvShapes).
/// `row_of` (optional): row j of W is stored row row_of[j] of `W` (a GGUF q/k tensor); y[j] is
/// then bit for bit what it is on a copy of W with the rows in logical order.
void cpu_gemv_w16(const float* x, const uint16_t* W, bool bf16, float* y, int64_t n, int64_t k,
                  const int64_t* row_of = nullptr);

/// The largest m for which the CPU backend multiplies an F16/BF16 weight by cpu_gemv_w16, one row
/// of A at a time (decode, #18; cpu_gemm_nt_w16): faster than widening tiles up to m = 2
/// (docs/performance.md). Those products differ from cpu_gemm_nt's by fp32 reordering only.
inline constexpr int64_t kGemvW16MaxM = 2;

/// C[m, n] = A[m, k] · B[k, n] (row-major), overwriting C.
void cpu_gemm_nn(const float* A, const float* B, float* C, int64_t m, int64_t n, int64_t k);

}  // namespace qsweep
