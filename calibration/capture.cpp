#include "backends/cpu/cpu_gemm.h"
#include "backends/cpu/cpu_quant_ops.h"
#include "calibration/calibration.h"
#include "common/errors.h"

namespace qsweep {

LinearInput linear_input_of(LinearRole role) {
  switch (role) {
    case LinearRole::Q:
    case LinearRole::K:
    case LinearRole::V:
      return LinearInput::Attn;
    case LinearRole::O:
      return LinearInput::AttnOut;
    case LinearRole::Gate:
    case LinearRole::Up:
      return LinearInput::Mlp;
    case LinearRole::Down:
      return LinearInput::MlpOut;
  }
  QS_ASSERT(false, "bad LinearRole");
}

const char* linear_input_name(LinearInput in) {
  switch (in) {
    case LinearInput::Attn:
      return "attn_in";
    case LinearInput::AttnOut:
      return "attn_out";
    case LinearInput::Mlp:
      return "mlp_in";
    case LinearInput::MlpOut:
      return "mlp_out";
  }
  return "?";
}

MatrixD ActivationStats::hessian() const {
  QS_ASSERT(n_tokens > 0 && xtx.size() > 0, "no activations were captured");
  return xtx * (2.0 / double(n_tokens));
}

MatrixD ActivationCapture::take_hessian(int layer, LinearInput in) {
  auto it = stats_.find({layer, in});
  QS_ASSERT(it != stats_.end() && it->second.n_tokens > 0 && it->second.xtx.size() > 0,
            "no activations were captured");
  MatrixD h = std::move(it->second.xtx);
  h *= 2.0 / double(it->second.n_tokens);  // the same product per element as hessian()
  stats_.erase(it);
  return h;
}

Eigen::VectorXd ActivationStats::mean_abs() const {
  return sum_abs / double(std::max<int64_t>(1, n_tokens));
}
Eigen::VectorXd ActivationStats::mean_sq() const {
  return sum_sq / double(std::max<int64_t>(1, n_tokens));
}

void ActivationStats::add(const MatrixRM& x, bool with_xtx) {
  const int64_t d = x.cols();
  if (sum_abs.size() == 0) {
    sum_abs = Eigen::VectorXd::Zero(d);
    sum_sq = Eigen::VectorXd::Zero(d);
    if (with_xtx) xtx = MatrixD::Zero(d, d);
  }
  QS_ASSERT(sum_abs.size() == d, "input width changed between batches");
  // Per-channel sums: columns in parallel, tokens in order (the same sums for any thread
  // count); the backend's column_stats CPU twin.
  cpu_column_stats(x.data(), x.rows(), d, sum_sq.data(), sum_abs.data());
  if (with_xtx) {
    // xᵀx in fp32 GEMMs over slabs of ≤ 512 tokens (fast, error ~1e-7 relative per
    // slab), each tile summed into the double accumulator by the task that computed it, so
    // long runs do not drift.
    constexpr int64_t kSlab = 512;
    MatrixRM xt(d, 0);
    for (int64_t t0 = 0; t0 < x.rows(); t0 += kSlab) {
      const int64_t n = std::min(kSlab, x.rows() - t0);
      xt = x.middleRows(t0, n).transpose();  // [d, n] row-major
      cpu_gemm_nt_accumulate_f64(xt.data(), xt.data(), xtx.data(), d, d, n);
    }
  }
  n_tokens += x.rows();
}

std::function<void(int, LinearRole, const MatrixRM&)> ActivationCapture::hook() {
  return [this](int layer, LinearRole role, const MatrixRM& x) {
    const LinearInput in = linear_input_of(role);
    // q/k/v (and gate/up) share one input: count it once, on its first role.
    if (role == LinearRole::K || role == LinearRole::V || role == LinearRole::Up) return;
    if (!only_.empty() && std::find(only_.begin(), only_.end(), in) == only_.end()) return;
    stats_[{layer, in}].add(x, with_xtx_);
  };
}

const ActivationStats& ActivationCapture::stats(int layer, LinearInput in) const {
  auto it = stats_.find({layer, in});
  QS_ASSERT(it != stats_.end(), "no statistics captured for layer ", layer, " ",
            linear_input_name(in));
  return it->second;
}

std::map<std::pair<int, LinearRole>, std::vector<float>> importance_matrix(
    const Transformer& model, const CalibrationSet& set, int batch_windows) {
  QS_THROW_IF_NOT(!set.windows.empty(), "importance matrix: calibration set '", set.source,
                  "' has no windows");
  QS_THROW_IF_NOT(batch_windows > 0, "importance matrix: batch_windows must be positive");
  const ModelSpec& spec = model.spec();
  ActivationCapture capture(/*with_xtx=*/false);
  const size_t n = set.windows.size();
  for (size_t b = 0; b < n; b += size_t(batch_windows)) {
    const std::vector<std::vector<int>> batch(
        set.windows.begin() + std::ptrdiff_t(b),
        set.windows.begin() + std::ptrdiff_t(std::min(n, b + size_t(batch_windows))));
    std::vector<int> lengths;
    MatrixRM hidden = model.embed(batch, &lengths);
    for (int l = 0; l < spec.num_layers; ++l) model.run_layer(l, hidden, lengths, capture.hook());
  }
  std::map<std::pair<int, LinearRole>, std::vector<float>> out;
  for (int l = 0; l < spec.num_layers; ++l)
    for (LinearRole r : kAllLinearRoles) {
      const Eigen::VectorXd m = capture.stats(l, linear_input_of(r)).mean_sq();
      std::vector<float>& v = out[{l, r}];
      v.resize(size_t(m.size()));
      for (Eigen::Index j = 0; j < m.size(); ++j) v[size_t(j)] = float(m[j]);
    }
  return out;
}

}  // namespace qsweep
