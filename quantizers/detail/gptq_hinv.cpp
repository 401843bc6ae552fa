#include "quantizers/detail/gptq_hinv.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <Eigen/Cholesky>
#include <atomic>
#include <cmath>

namespace qsweep::detail {

bool upper_cholesky_of_inverse(MatrixD& R, MatrixRM* Hinv) {
  const int64_t n = R.rows();
  Eigen::LLT<Eigen::Ref<MatrixD>> llt(R);  // in place: the lower triangle of R becomes L
  if (llt.info() != Eigen::Success) return false;
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
