#include "quantize/sensitivity.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>

#include "common/errors.h"
#include "common/json_reader.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep {
namespace gt = kquants::ggml_type;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int layer_to_start(const TensorGroup& g, int n_layers) {
  if (g.role == "token_embd") return -1;
  if (g.role == "output") return n_layers;
  return g.layer;
}

}  // namespace

std::vector<int32_t> default_sensitivity_types() {
  return {gt::Q2_K, gt::Q3_K, gt::Q4_K, gt::Q5_K, gt::Q6_K, gt::Q8_0};
}

std::optional<int32_t> sensitivity_type_from_name(const std::string& name) {
  for (int32_t t : {gt::Q2_K, gt::Q3_K, gt::Q4_K, gt::Q5_K, gt::Q6_K, gt::Q8_0, gt::Q4_0, gt::Q4_1,
                    gt::Q5_0, gt::Q5_1})
    if (sensitivity_type_name(t) == name) return t;
  return std::nullopt;
}

std::vector<std::string> sensitivity_type_names() {
  std::vector<std::string> out;
  for (int32_t t : {gt::Q2_K, gt::Q3_K, gt::Q4_K, gt::Q5_K, gt::Q6_K, gt::Q8_0, gt::Q4_0, gt::Q4_1,
                    gt::Q5_0, gt::Q5_1})
    out.push_back(sensitivity_type_name(t));
  return out;
}

std::string sensitivity_type_name(int32_t ggml_type) {
  std::string s = ggml_type_label(ggml_type);
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

nlohmann::json sensitivity_to_json(const SensitivityMeasurement& m) {
  return {{"name", m.group},     {"role", m.role},
          {"layer", m.layer},    {"type", ggml_type_label(m.type)},
          {"kl", m.kl},          {"kl_se", m.kl_se},
          {"bytes", m.bytes},    {"bytes_f16", m.bytes_f16},
          {"seconds", m.seconds}};
}

SensitivityMeasurement sensitivity_from_json(const nlohmann::json& j, const std::string& file) {
  const JsonReader r(j, file);
  SensitivityMeasurement m;
  m.group = r.required<std::string>("name");
  m.role = r.required<std::string>("role");
  m.layer = int(r.required_int("layer", -1, 1 << 20));
  std::string type = r.required<std::string>("type");
  for (char& c : type) c = char(std::tolower(static_cast<unsigned char>(c)));
  const auto t = sensitivity_type_from_name(type);
  r.check(t.has_value() || type == "f16", "type", "a candidate type such as \"Q4_K\"");
  m.type = t ? *t : gt::F16;
  m.kl = r.required<double>("kl");
  r.check(std::isfinite(m.kl) && m.kl >= 0, "kl", "a finite number >= 0");
  m.kl_se = r.required<double>("kl_se");
  m.bytes = r.required_int("bytes", 0, int64_t(1) << 50);
  m.bytes_f16 = r.required_int("bytes_f16", 0, int64_t(1) << 50);
  m.seconds = r.optional<double>("seconds", 0.0);
  return m;
}

SensitivityStudy::SensitivityStudy(const Transformer& base, std::vector<std::vector<int>> windows,
                                   int batch_windows)
    : work_(base.spec(), base.weights()), groups_(tensor_groups(base.spec())) {
  const auto t0 = Clock::now();
  QS_THROW_IF_NOT(!windows.empty(), "sensitivity study: no token windows");
  QS_THROW_IF_NOT(batch_windows >= 1, "sensitivity study: batch_windows must be >= 1");
  const int L = work_.spec().num_layers;
  for (size_t i = 0; i < windows.size(); i += size_t(batch_windows)) {
    Batch b;
    for (size_t j = i; j < std::min(windows.size(), i + size_t(batch_windows)); ++j) {
      QS_THROW_IF_NOT(windows[j].size() >= 2, "sensitivity study: window ", j, " has ",
                      windows[j].size(), " tokens (need at least 2)");
      b.windows.push_back(std::move(windows[j]));
    }
    MatrixRM h = work_.embed(b.windows, &b.lengths);
    for (int l = 0; l < L; ++l) {
      b.entering.push_back(h);
      work_.run_layer(l, h, b.lengths);
    }
    b.entering.push_back(h);
    b.base_logp = work_.head(h);
    log_softmax_rows(b.base_logp);
    tokens_ += b.base_logp.rows();
    batches_.push_back(std::move(b));
  }
  setup_seconds_ = since(t0);
}

void SensitivityStudy::kl_from(int first_layer, SensitivityMeasurement& m) {
  const int L = work_.spec().num_layers;
  double sum = 0, sum2 = 0;
  int64_t n = 0;
  for (Batch& b : batches_) {
    std::vector<int> lengths;
    MatrixRM h =
        first_layer < 0 ? work_.embed(b.windows, &lengths) : b.entering[size_t(first_layer)];
    for (int l = std::max(first_layer, 0); l < L; ++l) work_.run_layer(l, h, b.lengths);
    MatrixRM q = work_.head(h);
    log_softmax_rows(q);
    for (int64_t r = 0; r < q.rows(); ++r) {
      double kl = 0;
      for (int64_t v = 0; v < q.cols(); ++v) {
        const double lp = b.base_logp(r, v);
        kl += std::exp(lp) * (lp - double(q(r, v)));
      }
      QS_THROW_IF_NOT(std::isfinite(kl), "sensitivity study: KL of ", m.group, " is not finite");
      sum += kl;
      sum2 += kl * kl;
      ++n;
    }
  }
  // KL >= 0, but each row's sum is over fp32 log-softmax rows whose probabilities do not sum to
  // exactly 1: a group whose quantization barely changes the logits can come out at -1e-8. That
  // is rounding, not information; report 0 (the JSON reader rejects negative KL as corruption).
  m.kl = std::max(0.0, sum / double(n));
  const double var = n > 1 ? (sum2 - sum * sum / double(n)) / double(n - 1) : 0;
  m.kl_se = std::sqrt(std::max(var, 0.0) / double(n));
}

SensitivityMeasurement SensitivityStudy::measure(const TensorGroup& g, int32_t type,
                                                 bool from_cache) {
  const auto t0 = Clock::now();
  SensitivityMeasurement m{
      g.name, g.role, g.layer, type, 0, 0, group_bytes(g, type), group_bytes(g, gt::F16), 0};
  ModelWeights& w = work_.mutable_weights();
  const WeightTensor saved = group_matrix(w, g);  // shares the storage; edits un-share it
  const WeightTensor saved_head = w.lm_head;
  quantize_group_in_place(work_.spec(), w, g, type);
  try {
    kl_from(from_cache ? layer_to_start(g, work_.spec().num_layers) : -1, m);
  } catch (...) {
    group_matrix(w, g) = saved;
    w.lm_head = saved_head;
    throw;
  }
  group_matrix(w, g) = saved;
  w.lm_head = saved_head;
  m.seconds = since(t0);
  return m;
}

std::vector<SensitivityMeasurement> SensitivityStudy::measure_type(int32_t type) {
  const auto& tr = kquants::traits(*kquants::type_from_ggml(type));
  std::vector<SensitivityMeasurement> out;
  for (const TensorGroup& g : groups_)
    if (g.row_length % tr.block_size == 0) out.push_back(measure(g, type));
  return out;
}

SensitivityMeasurement SensitivityStudy::measure_mix(const std::map<std::string, int32_t>& types) {
  const auto t0 = Clock::now();
  SensitivityMeasurement m{"mix", "mix", -1, -1, 0, 0, 0, 0, 0};
  const ModelWeights saved = work_.weights();
  ModelWeights& w = work_.mutable_weights();
  for (const TensorGroup& g : groups_) {
    auto it = types.find(g.name);
    const int32_t t = it == types.end() ? gt::F16 : it->second;
    m.bytes += group_bytes(g, t);
    m.bytes_f16 += group_bytes(g, gt::F16);
    if (t != gt::F16) quantize_group_in_place(work_.spec(), w, g, t);
  }
  try {
    kl_from(-1, m);
  } catch (...) {
    w = saved;
    throw;
  }
  w = saved;
  m.seconds = since(t0);
  return m;
}

}  // namespace qsweep
