// GPTQ (Frantar et al. 2022), production version: the reference fasterquant's algorithm with
// rows in parallel and the lazy trailing update as one GEMM per row block. Tested against the
// literal port in detail/gptq_reference.cpp.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "backends/backend.h"
#include "backends/cpu/cpu_quant_ops.h"
#include "common/errors.h"
#include "quantizers/detail/checks.h"
#include "quantizers/detail/gptq_hinv.h"
#include "quantizers/quantizers.h"

namespace qsweep {

// Rows per task (kRowsPerTask, and the column loop's own in cpu_gptq_columns): fixed, so that
// the row blocks (and with them the GEMM shapes and their rounding) do not depend on the
// thread count: the result is the same on any machine.
constexpr int64_t kRowsPerTask = 64;

GptqResult gptq_quantize(const MatrixRM& W_in, const MatrixD& H_in, const GptqConfig& cfg,
                         Backend* backend) {
  const auto tick = std::chrono::steady_clock::now();
  const std::string who =
      cat("GPTQ layer '", cfg.layer_name.empty() ? "<unnamed>" : cfg.layer_name, "'");
  detail::check_grid_config(cfg.bits, cfg.group_size, who);
  QS_THROW_IF_NOT(cfg.block_size >= 1, who, ": block_size must be >= 1, got ", cfg.block_size);
  QS_THROW_IF_NOT(std::isfinite(cfg.damp_percent) && cfg.damp_percent > 0 &&
                      cfg.damp_max_percent >= cfg.damp_percent,
                  who, ": need 0 < damp_percent <= damp_max_percent, got ", cfg.damp_percent,
                  " and ", cfg.damp_max_percent);
  const int64_t rows = W_in.rows(), cols = W_in.cols();
  QS_THROW_IF_NOT(rows >= 1 && cols >= 1, who, ": empty weight [", rows, ", ", cols, "]");
  QS_THROW_IF_NOT(H_in.rows() == cols && H_in.cols() == cols, who, ": the Hessian is [",
                  H_in.rows(), ", ", H_in.cols(), "] but the weight has ", cols, " input columns");
  QS_THROW_IF_NOT(W_in.allFinite(), who, ": the weight contains NaN or Inf");
  QS_THROW_IF_NOT(H_in.allFinite(), who,
                  ": the Hessian contains NaN or Inf (overflowing activations in calibration?)");

  const QuantGrid grid{cfg.bits, cfg.sym, true};
  const int64_t gs = cfg.group_size == -1 ? cols : cfg.group_size;
  const bool static_groups = cfg.static_groups && cfg.group_size != -1;
  const bool dynamic_groups = cfg.group_size != -1 && !static_groups;

  GptqResult res;
  QTensor& q = res.q;
  q.rows = rows;
  q.cols = cols;
  q.bits = cfg.bits;
  q.group_size = cfg.group_size;
  q.sym = cfg.sym;
  const int64_t ng = q.n_groups();
  q.codes.resize(size_t(rows * cols));
  q.scales.resize(size_t(ng * rows));
  q.zeros.resize(size_t(ng * rows));
  q.g_idx.resize(size_t(cols));
  auto store = [&](int64_t g, int64_t r, const GroupParams& p) {
    q.scales[size_t(g * rows + r)] = p.scale;
    q.zeros[size_t(g * rows + r)] = p.zero;
  };
  auto for_rows = [&](auto&& body) {
    try {  // a grid's Error (a scale beyond fp16) names the layer
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, kRowsPerTask), body,
                        tbb::simple_partitioner());
    } catch (const Error& e) {
      throw Error(cat(who, ": ", e.what()));
    }
  };

  // Per-channel grid: as the reference, found on W before the dead columns are zeroed.
  if (cfg.group_size == -1)
    for_rows([&](const auto& rr) {
      for (int64_t r = rr.begin(); r < rr.end(); ++r)
        store(0, r, grid.find_params(W_in.data() + r * cols, cols));
    });

  // Dead inputs (never activated): H_ii = 1, W[:, i] = 0.
  std::vector<char> dead(static_cast<size_t>(cols));
  Eigen::VectorXd diag(cols);
  for (int64_t i = 0; i < cols; ++i) {
    dead[size_t(i)] = H_in(i, i) == 0;
    diag(i) = dead[size_t(i)] ? 1.0 : H_in(i, i);
  }

  // Act-order permutation (processing position j -> original column perm[j]).
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  if (cfg.desc_act)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return diag(a) > diag(b); });

  // W in processing order, dead columns zeroed.
  MatrixRM W(rows, cols);
  for_rows([&](const auto& rr) {
    for (int64_t r = rr.begin(); r < rr.end(); ++r)
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t c = perm[size_t(j)];
        W(r, j) = dead[size_t(c)] ? 0.0f : W_in(r, c);
      }
  });

  // Static groups: every group's grid on the dead-zeroed W, original column order.
  if (static_groups)
    for_rows([&](const auto& rr) {
      std::vector<float> row(static_cast<size_t>(cols));
      for (int64_t r = rr.begin(); r < rr.end(); ++r) {
        for (int64_t j = 0; j < cols; ++j) row[size_t(perm[size_t(j)])] = W(r, j);
        for (int64_t g = 0; g < ng; ++g) {
          const int64_t c0 = g * gs, c1 = std::min(c0 + gs, cols);
          store(g, r, grid.find_params(row.data() + c0, c1 - c0));
        }
      }
    });

  // Hinv: upper Cholesky factor of (H + damp I)^-1, in processing order. When the Cholesky
  // fails, the damping grows tenfold up to damp_max_percent (an addition to the reference).
  const double mean_diag = diag.mean();
  std::vector<double> row_loss(size_t(rows), 0.0);
  kernels::GptqColumnsConfig ccfg;
  ccfg.bits = cfg.bits;
  ccfg.sym = cfg.sym;
  ccfg.fp16_scale = grid.fp16_scale;
  ccfg.group_size = gs;
  ccfg.dynamic_groups = dynamic_groups;
  ccfg.static_groups = static_groups;
  ccfg.block_size = cfg.block_size;

  if (backend == nullptr || backend->name() == "cpu") {
    MatrixRM Hinv;
    MatrixD R(cols, cols);  // J H_perm J, lower triangle
    const DampingOutcome damping =
        escalate_damping(cfg.damp_percent, cfg.damp_max_percent, [&](double pct) {
          const double damp = pct * mean_diag;
          tbb::parallel_for(tbb::blocked_range<int64_t>(0, cols, 64), [&](const auto& jr) {
            for (int64_t j = jr.begin(); j < jr.end(); ++j) {  // column j of R, rows i >= j
              const int64_t pj = perm[size_t(cols - 1 - j)];
              for (int64_t i = j + 1; i < cols; ++i) R(i, j) = H_in(perm[size_t(cols - 1 - i)], pj);
              R(j, j) = diag(pj) + damp;
            }
          });
          return detail::upper_cholesky_of_inverse(R, &Hinv);
        });
    QS_THROW_IF_NOT(damping.ok, who, ": the Hessian is not positive definite even with damping ",
                    damping.pct, " * mean(diag H) = ", damping.pct * mean_diag,
                    "; too few calibration samples for this layer? (raise damp_max_percent)");
    res.damp_percent_used = damping.pct;
    res.damp_used = damping.pct * mean_diag;
    // Lazy-batch GPTQ, block by block: the backend op's CPU twin (backends/cpu/cpu_quant_ops.h),
    // rows in parallel, the trailing update W[:, i2:] -= Err1 Hinv[i1:i2, i2:] one GEMM per row
    // block; per-column math in backends/kernels/gptq_math.h, shared with the CUDA twin.
    cpu_gptq_columns(W.data(), Hinv.data(), perm.data(), q.scales.data(), q.zeros.data(),
                     q.codes.data(), row_loss.data(), rows, cols, ccfg);
  } else {
    // On the device: H in processing order (dead inputs' diagonal 1) → Hinv by cuSOLVER with
    // the same damping escalation (damped_upper_cholesky_of_inverse), then the column loop.
    Backend& b = *backend;
    MatrixD Hp(cols, cols);
    tbb::parallel_for(int64_t(0), cols, [&](int64_t j) {
      const int64_t pj = perm[size_t(j)];
      for (int64_t i = 0; i < cols; ++i) Hp(i, j) = i == j ? diag(pj) : H_in(perm[size_t(i)], pj);
    });
    BackendArray<double> h(b, size_t(cols * cols));
    b.to_device(h.get(), Hp.data(), h.size() * sizeof(double));
    BackendArray<float> hinv(b, size_t(cols * cols));
    const double pct = damped_upper_cholesky_of_inverse(
        b, h.get(), hinv.get(), cols, cfg.damp_percent, cfg.damp_max_percent, who);
    res.damp_percent_used = pct;
    res.damp_used = pct * mean_diag;
    BackendArray<float> w(b, size_t(rows * cols));
    BackendArray<float> scales(b, q.scales), zeros(b, q.zeros);
    BackendArray<int64_t> p(b, perm);
    BackendArray<uint8_t> codes(b, q.codes.size());
    BackendArray<double> loss(b, row_loss);
    b.to_device(w.get(), W.data(), w.size() * sizeof(float));
    b.gptq_columns(w.get(), hinv.get(), p.get(), scales.get(), zeros.get(), codes.get(), loss.get(),
                   rows, cols, ccfg);
    q.scales = scales.download();
    q.zeros = zeros.download();
    q.codes = codes.download();
    row_loss = loss.download();
  }
  if (dynamic_groups)
    for (float sc : q.scales)
      QS_THROW_IF_NOT(std::isfinite(sc), who,
                      ": a group's quantization scale overflows fp16 (weights of magnitude above "
                      "~1e6 after the GPTQ updates)");

  for (int64_t j = 0; j < cols; ++j) {
    const int64_t c = perm[size_t(j)];
    q.g_idx[size_t(c)] = int32_t(static_groups ? c / gs : j / gs);
  }
  res.loss = std::accumulate(row_loss.begin(), row_loss.end(), 0.0);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - tick).count();
  return res;
}

}  // namespace qsweep
