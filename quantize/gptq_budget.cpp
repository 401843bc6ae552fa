#include "quantize/gptq_budget.h"

#include <cmath>
#include <limits>

#include "common/errors.h"
#include "formats/gptq_packing.h"
#include "quantize/auto_mix.h"
#include "quantizers/quantizers.h"

namespace qsweep {

double hessian_weighted_error(const MatrixRM& W, const MatrixRM& Q, const MatrixD& H) {
  QS_ASSERT(
      W.rows() == Q.rows() && W.cols() == Q.cols() && H.rows() == W.cols() && H.cols() == W.cols(),
      "hessian_weighted_error: shapes differ");
  const MatrixD E = (W - Q).cast<double>();
  return (E * H).cwiseProduct(E).sum();
}

std::vector<GptqBitsOption> gptq_bits_options(const MatrixRM& W, const MatrixD& H, int group_size,
                                              bool sym) {
  std::vector<GptqBitsOption> out;
  for (int bits : kGptqBudgetBits) {
    const QTensor q = quantize_rtn(W, {bits, group_size, sym});
    out.push_back({bits, gptq_storage_bytes(q), hessian_weighted_error(W, q.dequantize(), H)});
  }
  return out;
}

GptqBitsChoice choose_gptq_bits(const std::vector<std::vector<GptqBitsOption>>& options,
                                const std::vector<int64_t>& params, double budget_bpw,
                                const std::string& what) {
  QS_ASSERT(options.size() == params.size(), "choose_gptq_bits: sizes differ");
  GptqBitsChoice c;
  int64_t total = 0, least = 0;
  std::vector<std::vector<MixOption>> mix(options.size());
  for (size_t i = 0; i < options.size(); ++i) {
    QS_ASSERT(!options[i].empty(), "choose_gptq_bits: a linear without candidates");
    total += params[i];
    int64_t m = std::numeric_limits<int64_t>::max();
    for (const auto& o : options[i]) {
      mix[i].push_back({o.bytes, o.cost});
      m = std::min(m, o.bytes);
    }
    least += m;
  }
  QS_THROW_IF_NOT(total > 0, "GPTQ budget_bpw: the model has no linear weights");
  c.budget_bytes = int64_t(std::floor(budget_bpw * double(total) / 8.0));
  c.min_bpw = 8.0 * double(least) / double(total);
  // The least budget that fits, rounded up to 3 decimals so the number named works.
  const double need = std::ceil(c.min_bpw * 1000.0) / 1000.0;
  QS_THROW_IF_NOT(least <= c.budget_bytes, "GPTQ budget_bpw ", budget_bpw,
                  " is below the least this model allows at ", what, ": ", need,
                  " bits/weight (every linear at ", kGptqBudgetBits[0],
                  " bits with its scales, zeros and g_idx); use budget_bpw >= ", need);
  const MixSolution s = solve_mix(mix, c.budget_bytes);
  c.exact = s.exact;
  c.bytes = s.bytes;
  c.cost = s.cost;
  for (size_t i = 0; i < options.size(); ++i)
    c.bits.push_back(options[i][size_t(s.choice[i])].bits);
  return c;
}

nlohmann::json gptq_bits_meta(const GptqBitsChoice& c, double budget_bpw,
                              const std::vector<std::string>& names,
                              const std::vector<std::vector<GptqBitsOption>>& options) {
  nlohmann::json linears = nlohmann::json::array();
  for (size_t i = 0; i < options.size(); ++i) {
    nlohmann::json cand = nlohmann::json::array();
    for (const auto& o : options[i])
      cand.push_back({{"bits", o.bits}, {"bytes", o.bytes}, {"cost", o.cost}});
    linears.push_back({{"name", names.at(i)}, {"bits", c.bits.at(i)}, {"candidates", cand}});
  }
  return {{"budget_bpw", budget_bpw},
          {"budget_bytes", c.budget_bytes},
          {"bytes", c.bytes},
          {"min_bpw", c.min_bpw},
          {"predicted_cost", c.cost},
          {"cost", "tr((W-Q_rtn) H (W-Q_rtn)^T), H = 2/n sum x x^T of the unquantized model"},
          {"exact", c.exact},
          {"linears", linears}};
}

}  // namespace qsweep
