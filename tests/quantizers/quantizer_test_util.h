// Random inputs shared by the quantizer tests.
#pragma once

#include <random>

#include "common/matrix.h"

namespace qsweep::test {

/// W[rows, cols] with N(0, 1) entries times a per-column scale in [0.5, 2) (like real weights,
/// whose input columns differ in magnitude).
inline MatrixRM random_weight(int64_t rows, int64_t cols, std::mt19937_64& rng) {
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::uniform_real_distribution<float> colscale(0.5f, 2.0f);
  MatrixRM W(rows, cols);
  for (int64_t c = 0; c < cols; ++c) {
    const float s = colscale(rng);
    for (int64_t r = 0; r < rows; ++r) W(r, c) = s * n01(rng);
  }
  return W;
}

/// Correlated activations X[n, cols]: Z A with Z ~ N(0, 1) and a random mixing A whose
/// columns have different magnitudes (so diag(H) varies and act-order matters).
inline MatrixRM random_activations(int64_t n, int64_t cols, std::mt19937_64& rng) {
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::uniform_real_distribution<float> mag(0.2f, 3.0f);
  MatrixRM Z(n, cols), A(cols, cols);
  for (int64_t i = 0; i < n * cols; ++i) Z.data()[i] = n01(rng);
  for (int64_t i = 0; i < cols * cols; ++i) A.data()[i] = n01(rng) / std::sqrt(float(cols));
  A.diagonal().array() += 1.0f;
  for (int64_t c = 0; c < cols; ++c) A.col(c) *= mag(rng);
  return Z * A;
}

/// H = 2 X^T X / n, the GPTQ reference's Hessian, in double.
inline MatrixD hessian_of(const MatrixRM& X) {
  const MatrixD Xd = X.cast<double>();
  return 2.0 * (Xd.transpose() * Xd) / double(X.rows());
}

}  // namespace qsweep::test
