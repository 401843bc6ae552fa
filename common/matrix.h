// The dense matrix type every stage exchanges: fp32, row-major, so that a
// [tokens, features] activation block and an HF [out, in] weight are stored
// exactly as they are in memory and on disk.
#pragma once

#include <Eigen/Core>

namespace qsweep {

using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using VectorF = Eigen::VectorXf;
using MatrixD = Eigen::MatrixXd;

}  // namespace qsweep
