#include "quantize/auto_mix.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/errors.h"
#include "common/half.h"
#include "formats/gguf.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep {
namespace gt = kquants::ggml_type;

namespace {

std::string role_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return name.substr(0, name.find('.'));
  const size_t a = name.find('.', 4) + 1;
  return name.substr(a, name.rfind('.') - a);
}

LinearRole linear_role_of(const std::string& role) {
  static const std::pair<const char*, LinearRole> kRoles[] = {
      {"attn_q", LinearRole::Q},      {"attn_k", LinearRole::K},      {"attn_v", LinearRole::V},
      {"attn_output", LinearRole::O}, {"ffn_gate", LinearRole::Gate}, {"ffn_up", LinearRole::Up},
      {"ffn_down", LinearRole::Down}};
  for (const auto& [n, r] : kRoles)
    if (role == n) return r;
  QS_ASSERT(false, "not a linear role");
  return LinearRole::Q;
}

}  // namespace

std::string ggml_type_label(int32_t type) {
  if (type == gt::F32) return "F32";
  if (type == gt::F16) return "F16";
  if (type == gt::BF16) return "BF16";
  const auto q = kquants::type_from_ggml(type);
  return q ? std::string(kquants::traits(*q).name) : cat("type ", type);
}

std::vector<TensorGroup> tensor_groups(const ModelSpec& spec) {
  std::vector<TensorGroup> out;
  for (const auto& t : gguf_weight_tensors(spec)) {
    TensorGroup g{t.name, role_of(t.name), -1, t.rows, t.row_length};
    if (t.name.rfind("blk.", 0) == 0) g.layer = std::stoi(t.name.substr(4));
    out.push_back(std::move(g));
  }
  return out;
}

int64_t group_bytes(const TensorGroup& g, int32_t type) {
  if (type == gt::F32) return g.params() * 4;
  if (type == gt::F16 || type == gt::BF16) return g.params() * 2;
  const auto q = kquants::type_from_ggml(type);
  QS_THROW_IF_NOT(q.has_value(), "ggml type ", type, " is not a type qsweep writes");
  return g.rows * int64_t(kquants::row_size(*q, g.row_length));
}

GgufTypePlan group_type_plan(const ModelSpec& spec, const std::map<std::string, int32_t>& types,
                             int32_t file_type) {
  const std::vector<TensorGroup> groups = tensor_groups(spec);
  GgufTypePlan plan;
  for (const auto& [name, t] : types) {
    const bool known = std::any_of(groups.begin(), groups.end(),
                                   [&](const TensorGroup& g) { return g.name == name; });
    QS_THROW_IF_NOT(known, "type plan: '", name, "' is not a weight tensor of this model");
    plan.per_tensor[name] = t;
  }
  plan.file_type = file_type;
  return plan;
}

WeightTensor& group_matrix(ModelWeights& w, const TensorGroup& g) {
  if (g.role == "token_embd") return w.embed;
  if (g.role == "output") return w.lm_head;
  return w.layers.at(size_t(g.layer)).linear(linear_role_of(g.role));
}

void quantize_group_in_place(const ModelSpec& spec, ModelWeights& w, const TensorGroup& g,
                             int32_t type, const float* importance) {
  MatrixRM& m = group_matrix(w, g).mutable_matrix();  // this tensor widened (un-shared)
  QS_ASSERT(m.rows() == g.rows && m.cols() == g.row_length, "group shape mismatch");
  const auto q = kquants::type_from_ggml(type);
  if (!q) {
    QS_THROW_IF_NOT(type == gt::F16 || type == gt::F32, "ggml type ", type, " for ", g.name,
                    " cannot be simulated");
    if (type == gt::F16)
      for (int64_t i = 0; i < m.size(); ++i)
        m.data()[i] = half_to_float(float_to_half(m.data()[i]));
  } else {
    const std::vector<uint8_t> b =
        kquants::quantize_tensor(*q, m.data(), g.rows, g.row_length, importance);
    const std::vector<float> d = kquants::dequantize_tensor(*q, b, g.rows, g.row_length);
    std::copy(d.begin(), d.end(), m.data());
  }
  // Tied embeddings: llama.cpp reads the output projection from token_embd.
  if (g.role == "token_embd" && spec.tie_word_embeddings) w.lm_head = w.embed;
}

// ---- solver ---------------------------------------------------------------------------

namespace {

void check_options(const std::vector<std::vector<MixOption>>& options, int64_t budget) {
  int64_t least = 0;
  for (size_t g = 0; g < options.size(); ++g) {
    QS_THROW_IF_NOT(!options[g].empty(), "mix solver: group ", g, " has no candidate type");
    int64_t m = std::numeric_limits<int64_t>::max();
    for (const auto& o : options[g]) m = std::min(m, o.bytes);
    least += m;
  }
  QS_THROW_IF_NOT(least <= budget, "mix budget of ", budget,
                  " bytes is below the smallest mix the candidate types allow (", least,
                  " bytes): raise the budget or add smaller types");
}

MixSolution totals(const std::vector<std::vector<MixOption>>& options, std::vector<int> choice,
                   bool exact) {
  MixSolution s;
  s.choice = std::move(choice);
  s.exact = exact;
  for (size_t g = 0; g < options.size(); ++g) {
    s.bytes += options[g][size_t(s.choice[g])].bytes;
    s.cost += options[g][size_t(s.choice[g])].cost;
  }
  return s;
}

}  // namespace

MixSolution solve_mix_lagrangian(const std::vector<std::vector<MixOption>>& options,
                                 int64_t budget) {
  check_options(options, budget);
  // For λ, each group independently minimises cost + λ·bytes (ties: fewer bytes). Bytes used
  // fall as λ grows; bisect for the smallest λ whose choice fits.
  auto pick = [&](double lambda) {
    std::vector<int> c(options.size());
    for (size_t g = 0; g < options.size(); ++g) {
      double best = std::numeric_limits<double>::infinity();
      for (size_t i = 0; i < options[g].size(); ++i) {
        const auto& o = options[g][i];
        const double v = o.cost + lambda * double(o.bytes);
        if (v < best || (v == best && o.bytes < options[g][size_t(c[g])].bytes)) {
          best = v;
          c[g] = int(i);
        }
      }
    }
    return c;
  };
  auto fits = [&](const std::vector<int>& c) { return totals(options, c, false).bytes <= budget; };
  if (fits(pick(0))) return totals(options, pick(0), false);
  double lo = 0, hi = 1e-12;
  while (!fits(pick(hi))) {
    lo = hi;
    hi *= 2;
    if (hi > 1e30) break;
  }
  for (int it = 0; it < 200 && hi > lo * (1 + 1e-15); ++it) {
    const double mid = 0.5 * (lo + hi);
    (fits(pick(mid)) ? hi : lo) = mid;
  }
  return totals(options, pick(hi), false);
}

MixSolution solve_mix(const std::vector<std::vector<MixOption>>& options, int64_t budget,
                      int64_t max_dp_cells) {
  check_options(options, budget);
  int64_t unit = 0;
  for (const auto& g : options)
    for (const auto& o : g) unit = std::gcd(unit, o.bytes);
  unit = std::max<int64_t>(unit, 1);
  const int64_t states = budget / unit + 1;
  const int64_t n = int64_t(options.size());
  if (n == 0) return totals(options, {}, true);
  if (states > max_dp_cells / n) return solve_mix_lagrangian(options, budget);
  // best[s] = least cost of the groups so far using exactly s units; from[g][s] = option.
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> best(static_cast<size_t>(states), inf);
  std::vector<double> next(static_cast<size_t>(states));
  std::vector<std::vector<int8_t>> from(size_t(n), std::vector<int8_t>(size_t(states), -1));
  best[0] = 0;
  for (int64_t g = 0; g < n; ++g) {
    QS_THROW_IF_NOT(options[size_t(g)].size() <= 127, "mix solver: at most 127 types per group");
    std::fill(next.begin(), next.end(), inf);
    for (size_t i = 0; i < options[size_t(g)].size(); ++i) {
      const auto& o = options[size_t(g)][i];
      const int64_t u = o.bytes / unit;
      for (int64_t s = 0; s + u < states; ++s) {
        if (best[size_t(s)] == inf) continue;
        const double v = best[size_t(s)] + o.cost;
        if (v < next[size_t(s + u)]) {
          next[size_t(s + u)] = v;
          from[size_t(g)][size_t(s + u)] = int8_t(i);
        }
      }
    }
    best.swap(next);
  }
  int64_t s = int64_t(std::min_element(best.begin(), best.end()) - best.begin());
  std::vector<int> choice(static_cast<size_t>(n));
  for (int64_t g = n - 1; g >= 0; --g) {
    const int i = from[size_t(g)][size_t(s)];
    QS_ASSERT(i >= 0, "mix solver: broken back-pointer");
    choice[size_t(g)] = i;
    s -= options[size_t(g)][size_t(i)].bytes / unit;
  }
  return totals(options, std::move(choice), true);
}

}  // namespace qsweep
