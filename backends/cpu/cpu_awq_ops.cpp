#include "backends/cpu/cpu_awq_ops.h"

#include <tbb/parallel_for.h>

#include <Eigen/Core>
#include <cmath>

#include "common/errors.h"

namespace qsweep {

namespace {
using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using VecF = Eigen::VectorXf;

void check_scale(float scale, int64_t r, int64_t g) {
  QS_THROW_IF_NOT(std::isfinite(scale), "AWQ: the quantization scale of row ", r, " group ", g,
                  " overflows fp16 (weights too large for the grid)");
}
}  // namespace

void cpu_awq_fake_quant_scaled(const float* W, const float* s, float* Q, int64_t rows, int64_t cols,
                               const kernels::AwqGridConfig& cfg) {
  QS_THROW_IF_NOT(cfg.group_size > 0, "AWQ fake quantization: group size ", cfg.group_size,
                  " must be > 0");
  const int64_t gs = cfg.group_size;
  tbb::parallel_for(int64_t(0), rows, [&](int64_t r) {
    const float* w = W + r * cols;
    for (int64_t c = 0; c < cols; ++c)
      QS_THROW_IF_NOT(std::isfinite(w[c] * s[c]),
                      "AWQ: the scaled weight contains NaN or Inf (row ", r, ", column ", c, ")");
    for (int64_t c0 = 0; c0 < cols; c0 += gs) {
      const int64_t n = std::min(gs, cols - c0);
      check_scale(kernels::awq_fake_quant_group(w + c0, s + c0, n, cfg, Q + r * cols + c0), r,
                  c0 / gs);
    }
  });
}

double cpu_mean_squared_error(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - double(b[i]);
    s += d * d;
  }
  return n > 0 ? s / double(n) : 0;
}

void cpu_awq_clip_search(const float* W_, const float* Xs_, int64_t T, int64_t out, int64_t in,
                         const kernels::AwqGridConfig& cfg, int n_grid, int n_shrink,
                         float* best_max_out) {
  QS_THROW_IF_NOT(cfg.group_size > 0 && T >= 1 && n_grid >= 1,
                  "AWQ clip search: group size, tokens and grid must be >= 1");
  const Eigen::Map<const MatF> W(W_, out, in), Xs(Xs_, T, in);
  const int64_t gs = cfg.group_size;
  const int64_t n_groups = (in + gs - 1) / gs;
  tbb::parallel_for(int64_t(0), n_groups, [&](int64_t g) {
    const int64_t c0 = g * gs, n = std::min(gs, in - c0);
    const MatF Xg = Xs.middleCols(c0, n);
    const MatF Wg = W.middleCols(c0, n);
    const MatF org = Xg * Wg.transpose();  // [T, out]
    const VecF org_max = Wg.cwiseAbs().rowwise().maxCoeff();
    VecF best_max = org_max;
    Eigen::VectorXd min_err = Eigen::VectorXd::Constant(out, 1e9);
    MatF Qg(out, n);
    for (int i_s = 0; i_s < n_shrink; ++i_s) {
      const VecF max_val = org_max * (1.0f - float(i_s) / float(n_grid));
      for (int64_t r = 0; r < out; ++r)
        check_scale(kernels::awq_clip_group(Wg.row(r).data(), n, max_val[r], cfg, Qg.row(r).data()),
                    r, g);
      const MatF cur = Xg * Qg.transpose();
      for (int64_t r = 0; r < out; ++r) {
        const double err = double((cur.col(r) - org.col(r)).squaredNorm()) / double(T);
        if (err < min_err[r]) {
          min_err[r] = err;
          best_max[r] = max_val[r];
        }
      }
    }
    for (int64_t r = 0; r < out; ++r) best_max_out[g * out + r] = best_max[r];
  });
}

}  // namespace qsweep
