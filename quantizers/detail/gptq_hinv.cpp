#include "quantizers/detail/gptq_hinv.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <Eigen/Cholesky>
#include <algorithm>
#include <atomic>
#include <cmath>

namespace qsweep::detail {

// Every parallel loop here splits its range the same way whatever the thread count
// (simple_partitioner, fixed grain), so the result does not depend on the machine's cores.
bool cholesky_lower_in_place(MatrixD& A, int64_t block) {
  const int64_t n = A.rows();
  constexpr int64_t kRows = 64;  // rows per task in the panel solve
  for (int64_t k0 = 0; k0 < n; k0 += block) {
    const int64_t kb = std::min(block, n - k0), k1 = k0 + kb, m = n - k1;
    Eigen::Ref<MatrixD> A11 = A.block(k0, k0, kb, kb);
    Eigen::LLT<Eigen::Ref<MatrixD>> llt(A11);  // diagonal block, in place
    if (llt.info() != Eigen::Success) return false;
    if (m == 0) break;
    // Panel: A21 <- A21 L11^-T, rows independent.
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, m, kRows),
        [&](const auto& rr) {
          auto panel = A.block(k1 + rr.begin(), k0, rr.size(), kb);
          A11.triangularView<Eigen::Lower>().transpose().solveInPlace<Eigen::OnTheRight>(panel);
        },
        tbb::simple_partitioner());
    // Trailing update of the lower triangle: A22 -= A21 A21^T, by column blocks.
    const auto A21 = A.block(k1, k0, m, kb);
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, m, block),
        [&](const auto& cr) {
          const int64_t c0 = cr.begin(), cw = cr.size();
          A.block(k1 + c0, k1 + c0, m - c0, cw).noalias() -=
              A21.bottomRows(m - c0) * A21.middleRows(c0, cw).transpose();
        },
        tbb::simple_partitioner());
  }
  return true;
}

bool upper_cholesky_of_inverse(MatrixD& R, MatrixRM* Hinv, int64_t block) {
  const int64_t n = R.rows();
  if (!cholesky_lower_in_place(R, block)) return false;  // the lower triangle of R becomes L
  for (int64_t i = 0; i < n; ++i)  // Eigen's pivot test (x <= 0) lets NaN through
    if (!(R(i, i) > 0) || !std::isfinite(R(i, i))) return false;

  Hinv->setZero(n, n);
  constexpr int64_t kBlock = 64;  // columns of L^-1 per task
  const int64_t n_blocks = (n + kBlock - 1) / kBlock;
  std::atomic<bool> finite{true};
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n_blocks, 1), [&](const auto& range) {
    for (int64_t b = range.begin(); b < range.end(); ++b) {
      const int64_t j0 = b * kBlock, bw = std::min(kBlock, n - j0), m = n - j0;
      // Columns j0..j0+bw of L^-1 are zero above row j0 and solve L[j0:, j0:] X = I[:, :bw].
      MatrixD X = MatrixD::Identity(m, bw);
      R.bottomRightCorner(m, m).triangularView<Eigen::Lower>().solveInPlace(X);
      for (int64_t c = 0; c < bw; ++c) {
        const int64_t col = n - 1 - (j0 + c);  // (J L^-1 J)(i, j) = L^-1(n-1-i, n-1-j)
        for (int64_t a = c; a < m; ++a) {
          const double v = X(a, c);
          if (!std::isfinite(v)) finite = false;
          (*Hinv)(n - 1 - (j0 + a), col) = float(v);
        }
      }
    }
  });
  return finite;
}

}  // namespace qsweep::detail
