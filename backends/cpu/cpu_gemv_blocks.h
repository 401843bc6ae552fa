// Decode-sized products (m small) on quantized GGUF weights kept as ggml blocks (issue #18): each
// task walks the blocks of its rows once, widens one block at a time into a 1 KiB buffer that
// stays in L1 and multiplies it there with every row of A, so the weight is never widened to an
// fp32 copy in memory.
#pragma once

#include <cstdint>

namespace qsweep {

/// The largest m for which CpuBackend::gemm_nt_weight takes cpu_gemm_nt_ggml (beyond it the
/// widened weight and the tiled GEMM are faster).
inline constexpr int64_t kGemmNtGgmlMaxM = 8;

/// Whether cpu_gemm_nt_ggml handles ggml type `ggml_type` (ggml::GgmlType ids: Q4_0, Q4_1, Q5_0,
/// Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) with rows of k weights (a multiple of its block).
bool cpu_gemm_nt_ggml_supports(int ggml_type, int64_t k);

/// C[m, n] = A[m, k] · W[n, k]ᵀ with W the ggml blocks at `blocks` (row j = blocks
/// [j·k/QK, (j + 1)·k/QK), any alignment; cpu_gemm_nt_ggml_supports(ggml_type, k) must hold). Every
/// weight is the value ggml::decode(type, block, e) gives, bit for bit (same fp32 operations in the
/// same order, no contraction); only the order of the fp32 sum differs from a GEMM on the decoded
/// weight: C[i, j] is summed by one task in 4 vector accumulators (AVX-512: 16 lanes, AVX2: 8,
/// chosen by the build's -march; scalar: one fma chain), in an order that depends only on k, never
/// on m, n, i, j or the thread count.
/// `row_of` (optional): row j of W is stored row row_of[j] of `blocks` (a GGUF q/k tensor).
void cpu_gemm_nt_ggml(const float* A, int ggml_type, const void* blocks, float* C, int64_t m,
                      int64_t n, int64_t k, const int64_t* row_of = nullptr);

}  // namespace qsweep
