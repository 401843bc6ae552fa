// Backend-independent helpers of the quantization ops (backend.h): GPTQ's damping escalation.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/backend.h"
#include "common/errors.h"

namespace qsweep {

DampingOutcome escalate_damping(double start, double max_pct,
                                const std::function<bool(double pct)>& attempt) {
  double pct = start;
  for (;;) {
    if (attempt(pct)) return {true, pct};
    if (!(pct < max_pct)) return {false, pct};
    pct = std::min(pct * 10.0, max_pct);
  }
}

double damped_upper_cholesky_of_inverse(Backend& b, const double* H, float* Hinv, int64_t d,
                                        double pct, double max_pct, const std::string& who) {
  QS_THROW_IF_NOT(d >= 1, who, ": empty Hessian");
  QS_THROW_IF_NOT(std::isfinite(pct) && pct > 0 && max_pct >= pct, who,
                  ": need 0 < damp_percent <= damp_max_percent, got ", pct, " and ", max_pct);
  double mean_diag = 0;
  for (int64_t i = 0; i < d; ++i) {
    double h = 0;
    b.to_host(&h, H + i * d + i, sizeof(double));
    mean_diag += h;
  }
  mean_diag /= double(d);
  BackendArray<double> work(b, size_t(d * d));
  const DampingOutcome out = escalate_damping(pct, max_pct, [&](double p) {
    b.copy(work.get(), H, size_t(d * d) * sizeof(double));
    b.add_diagonal(work.get(), d, p * mean_diag);
    return b.upper_cholesky_of_inverse(work.get(), Hinv, d);
  });
  QS_THROW_IF_NOT(out.ok, who, ": the Hessian is not positive definite even with damping ", out.pct,
                  " * mean(diag H) = ", out.pct * mean_diag,
                  "; too few calibration samples for this layer? (raise damp_max_percent)");
  return out.pct;
}

}  // namespace qsweep
