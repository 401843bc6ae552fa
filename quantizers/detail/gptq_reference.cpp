#include "quantizers/detail/gptq_reference.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <chrono>
#include <numeric>

#include "common/errors.h"
#include "quantizers/detail/checks.h"

namespace qsweep::detail {

namespace {
// The reference's Quantizer after find_params(W_part, weight=True): one grid per row.
std::vector<GroupParams> find_params_rows(const QuantGrid& grid, const MatrixRM& W, int64_t c0,
                                          int64_t c1) {
  std::vector<GroupParams> p(static_cast<size_t>(W.rows()));
  for (int64_t r = 0; r < W.rows(); ++r) p[size_t(r)] = grid.find_params(&W(r, c0), c1 - c0);
  return p;
}
}  // namespace

GptqResult gptq_quantize_reference(const MatrixRM& W_in, const MatrixD& H_in,
                                   const GptqConfig& cfg) {
  const auto tick = std::chrono::steady_clock::now();
  check_grid_config(cfg.bits, cfg.group_size, "GPTQ reference");
  const int64_t rows = W_in.rows(), columns = W_in.cols();
  QS_THROW_IF_NOT(H_in.rows() == columns && H_in.cols() == columns, "GPTQ reference: H shape");
  const int64_t groupsize = cfg.group_size;
  const bool static_groups = cfg.static_groups && groupsize != -1;
  const QuantGrid grid{cfg.bits, cfg.sym, true};

  MatrixRM W = W_in;
  MatrixD H = H_in;
  std::vector<GroupParams> quantizer = find_params_rows(grid, W, 0, columns);  // not ready()

  for (int64_t i = 0; i < columns; ++i) {  // dead = diag(H) == 0
    if (H(i, i) == 0) {
      H(i, i) = 1;
      W.col(i).setZero();
    }
  }

  std::vector<std::vector<GroupParams>> groups;
  if (static_groups) {
    for (int64_t i = 0; i < columns; i += groupsize)
      groups.push_back(find_params_rows(grid, W, i, std::min(i + groupsize, columns)));
  }

  std::vector<int64_t> perm(static_cast<size_t>(columns));
  std::iota(perm.begin(), perm.end(), 0);
  if (cfg.desc_act) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return H(a, a) > H(b, b); });
    MatrixRM Wp(rows, columns);
    MatrixD Hp(columns, columns);
    for (int64_t j = 0; j < columns; ++j) {
      Wp.col(j) = W.col(perm[size_t(j)]);
      for (int64_t i = 0; i < columns; ++i) Hp(i, j) = H(perm[size_t(i)], perm[size_t(j)]);
    }
    W = Wp;
    H = Hp;
  }

  MatrixRM Losses = MatrixRM::Zero(rows, columns);
  MatrixRM Q = MatrixRM::Zero(rows, columns);
  std::vector<uint8_t> Qcodes(static_cast<size_t>(rows * columns));

  const double damp = cfg.damp_percent * H.diagonal().mean();
  H.diagonal().array() += damp;
  Eigen::LLT<MatrixD> chol(H);
  QS_THROW_IF_NOT(chol.info() == Eigen::Success, "GPTQ reference, layer '", cfg.layer_name,
                  "': Cholesky failed");
  const MatrixD Hinv_full = chol.solve(MatrixD::Identity(columns, columns));  // cholesky_inverse
  Eigen::LLT<MatrixD> chol2(Hinv_full);
  QS_THROW_IF_NOT(chol2.info() == Eigen::Success, "GPTQ reference: Cholesky of H^-1 failed");
  const MatrixRM Hinv = MatrixD(chol2.matrixU()).cast<float>();

  // Per-(group, row) parameters in processing order, for the QTensor.
  const int64_t gs_eff = groupsize == -1 ? columns : groupsize;
  const int64_t n_groups = (columns + gs_eff - 1) / gs_eff;
  std::vector<float> scales(static_cast<size_t>(n_groups * rows)), zeros(size_t(n_groups * rows));
  auto record = [&](int64_t g, const std::vector<GroupParams>& p) {
    for (int64_t r = 0; r < rows; ++r) {
      scales[size_t(g * rows + r)] = p[size_t(r)].scale;
      zeros[size_t(g * rows + r)] = p[size_t(r)].zero;
    }
  };
  if (groupsize == -1) record(0, quantizer);
  if (static_groups)
    for (int64_t g = 0; g < n_groups; ++g) record(g, groups[size_t(g)]);

  const int64_t blocksize = cfg.block_size;
  for (int64_t i1 = 0; i1 < columns; i1 += blocksize) {
    const int64_t i2 = std::min(i1 + blocksize, columns);
    const int64_t count = i2 - i1;

    MatrixRM W1 = W.middleCols(i1, count);
    MatrixRM Q1 = MatrixRM::Zero(rows, count);
    MatrixRM Err1 = MatrixRM::Zero(rows, count);
    MatrixRM Losses1 = MatrixRM::Zero(rows, count);
    const MatrixRM Hinv1 = Hinv.block(i1, i1, count, count);

    for (int64_t i = 0; i < count; ++i) {
      const Eigen::VectorXf w = W1.col(i);
      const float d = Hinv1(i, i);

      if (groupsize != -1) {
        if (!static_groups) {
          if ((i1 + i) % groupsize == 0) {
            // Reads W (lazily updated), not W1: the reference's behaviour, kept.
            quantizer = find_params_rows(grid, W, i1 + i, std::min(i1 + i + groupsize, columns));
            record((i1 + i) / groupsize, quantizer);
          }
        } else {
          int64_t idx = i1 + i;
          if (cfg.desc_act) idx = perm[size_t(idx)];
          quantizer = groups[size_t(idx / groupsize)];
        }
      }

      Eigen::VectorXf q(rows);
      for (int64_t r = 0; r < rows; ++r) {
        const GroupParams& p = quantizer[size_t(r)];
        const uint8_t code = grid.quantize(w(r), p);
        Qcodes[size_t(r * columns + i1 + i)] = code;
        q(r) = p.scale * (float(code) - p.zero);
      }
      Q1.col(i) = q;
      Losses1.col(i) = ((w - q).array().square() / (d * d)).matrix();

      const Eigen::VectorXf err1 = (w - q) / d;
      W1.rightCols(count - i).noalias() -= err1 * Hinv1.row(i).tail(count - i);
      Err1.col(i) = err1;
    }

    Q.middleCols(i1, count) = Q1;
    Losses.middleCols(i1, count) = Losses1 / 2;

    W.rightCols(columns - i2).noalias() -= Err1 * Hinv.block(i1, i2, count, columns - i2);
  }

  GptqResult res;
  res.loss = Losses.cast<double>().sum();
  res.damp_percent_used = cfg.damp_percent;
  res.damp_used = damp;

  QTensor& qt = res.q;
  qt.rows = rows;
  qt.cols = columns;
  qt.bits = cfg.bits;
  qt.group_size = cfg.group_size;
  qt.sym = cfg.sym;
  qt.codes.resize(size_t(rows * columns));
  qt.g_idx.resize(size_t(columns));
  for (int64_t j = 0; j < columns; ++j) {  // Q = Q[:, invperm]
    const int64_t c = perm[size_t(j)];
    for (int64_t r = 0; r < rows; ++r)
      qt.codes[size_t(r * columns + c)] = Qcodes[size_t(r * columns + j)];
    qt.g_idx[size_t(c)] = int32_t(static_groups ? c / gs_eff : j / gs_eff);
  }
  qt.scales = std::move(scales);
  qt.zeros = std::move(zeros);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - tick).count();
  return res;
}

}  // namespace qsweep::detail
