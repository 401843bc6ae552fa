// Multi-threaded fp32 GEMM on the CPU: Eigen's single-threaded kernel on tiles,
// scheduled over oneTBB. Exposed separately from the Backend so that hot loops
// (the forward pass) can call it without a virtual call per tile.
#pragma once

#include <cstdint>

namespace qsweep {

/// C[m, n] = A[m, k] · B[n, k]ᵀ (row-major), overwriting C. `accumulate` adds instead.
void cpu_gemm_nt(const float* A, const float* B, float* C, int64_t m, int64_t n, int64_t k,
                 bool accumulate = false);

/// C[m, n] += A[m, k] · B[n, k]ᵀ with C fp64 and column-major (Eigen's MatrixXd): each tile is
/// computed in fp32 exactly as cpu_gemm_nt computes it (same tiles, same kernel) and added to C in
/// fp64 by the task that computed it, so the result equals C += double(cpu_gemm_nt(A, B)) bit for
/// bit, for any thread count, without a [m, n] fp32 temporary or a serial pass over C.
void cpu_gemm_nt_accumulate_f64(const float* A, const float* B, double* C, int64_t m, int64_t n,
                                int64_t k);

/// C[m, n] = A[m, k] · B[k, n] (row-major), overwriting C.
void cpu_gemm_nn(const float* A, const float* B, float* C, int64_t m, int64_t n, int64_t k);

}  // namespace qsweep
