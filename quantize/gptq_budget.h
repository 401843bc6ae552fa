// GPTQ with its bit width chosen per linear under a bits-per-weight budget (issue #19's GPTQ
// twin of auto_mix). Each linear's candidates are 2/3/4/8-bit grids at the configured group
// size; the cost of a candidate is the Hessian-weighted error of its RTN rounding,
// tr((W − Q) H (W − Q)ᵀ) with H = (2/n) Σ x xᵀ the calibration Hessian GPTQ builds (the
// summed squared output error of that linear over the calibration tokens, ×2/n). The choice
// minimises Σ cost (additivity of the linears' errors is the approximation) with Σ stored
// bytes (GPTQ layout: codes + fp16 scales + zeros + g_idx) ≤ budget_bpw × Σ weights / 8,
// through solve_mix. GPTQ then runs with each linear's chosen width.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/matrix.h"

namespace qsweep {

/// The widths a budgeted GPTQ chooses from (GPTQModel has kernels for these).
inline constexpr int kGptqBudgetBits[] = {2, 3, 4, 8};

/// One candidate width of one linear.
struct GptqBitsOption {
  int bits = 4;
  int64_t bytes = 0;  ///< gptq_storage_bytes of the linear at this width
  double cost = 0;    ///< hessian_weighted_error of its RTN rounding
};

/// tr(E H Eᵀ), E = W − Q (both [out, in]), H [in, in], in double.
double hessian_weighted_error(const MatrixRM& W, const MatrixRM& Q, const MatrixD& H);

/// Every width of kGptqBudgetBits for W (RTN at `group_size`, `sym`), with its bytes and cost.
std::vector<GptqBitsOption> gptq_bits_options(const MatrixRM& W, const MatrixD& H, int group_size,
                                              bool sym);

struct GptqBitsChoice {
  std::vector<int> bits;     ///< per linear, in the order of the options
  int64_t bytes = 0;         ///< Σ bytes of the chosen widths
  int64_t budget_bytes = 0;  ///< floor(budget_bpw × Σ params / 8)
  double cost = 0;           ///< Σ cost of the chosen widths (the predicted error)
  double min_bpw = 0;        ///< every linear at its smallest width
  bool exact = false;        ///< solve_mix's dynamic programme (else its Lagrangian)
};

/// Chooses a width per linear: least Σ cost with Σ bytes ≤ floor(budget_bpw × Σ params / 8).
/// `params[i]` = weights of linear i. Error naming the least budget_bpw these linears allow
/// (`what` names the setting, e.g. "group_size 128") when budget_bpw is below it.
GptqBitsChoice choose_gptq_bits(const std::vector<std::vector<GptqBitsOption>>& options,
                                const std::vector<int64_t>& params, double budget_bpw,
                                const std::string& what);

/// meta.json's record: the budget, totals and every linear's candidates and choice.
nlohmann::json gptq_bits_meta(const GptqBitsChoice& c, double budget_bpw,
                              const std::vector<std::string>& names,
                              const std::vector<std::vector<GptqBitsOption>>& options);

}  // namespace qsweep
