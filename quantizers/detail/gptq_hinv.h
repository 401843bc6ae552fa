#if !defined(QSWEEP_IN_QUANTIZERS)
#error "quantizers/detail/ is private to qsweep_quantizers; include quantizers/quantizers.h"
#endif
// The inverse-Hessian factor GPTQ needs, computed without forming H^-1 (internal).
#pragma once

#include "common/matrix.h"

namespace qsweep::detail {

/// Given R = J H J (H [n, n] symmetric positive definite, already permuted and damped; J the
/// reversal permutation; only the lower triangle of R is read), writes to *Hinv [n, n] the
/// upper Cholesky factor U of H^-1 (H^-1 = U^T U, diag(U) > 0; strictly lower part zero), in
/// fp32. This is what the reference gets from cholesky -> cholesky_inverse -> cholesky(upper),
/// by a cheaper route (2n^3/3 flops instead of about 5n^3/3):
///   R = L L^T  =>  H = (J L J)(J L J)^T with J L J upper  =>  H^-1 = V^T V, V = (J L J)^-1
///   upper with positive diagonal, so V is the unique upper Cholesky factor of H^-1, and
///   V = J L^-1 J.
/// L is factorised in place in R (R is overwritten) by a right-looking blocked Cholesky
/// (`block` columns per step) whose panel solve and trailing update run in parallel (oneTBB);
/// L^-1 is computed in column blocks in parallel; all in double. Returns false when R is not
/// numerically positive definite (a pivot <= 0, or a non-finite factor); *Hinv is then
/// unspecified.
bool upper_cholesky_of_inverse(MatrixD& R, MatrixRM* Hinv, int64_t block = 256);

/// The blocked in-place Cholesky used above: on success the lower triangle of A is L with
/// A = L L^T (the strict upper triangle is left as garbage). False when a pivot is not > 0.
bool cholesky_lower_in_place(MatrixD& A, int64_t block = 256);

}  // namespace qsweep::detail
