#include "quantize/auto_mix_model.h"

#include <chrono>
#include <cmath>
#include <set>

#include "common/errors.h"
#include "quantize/auto_mix.h"
#include "quantize/sensitivity.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep {
namespace gt = kquants::ggml_type;
using nlohmann::json;

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
}  // namespace

int64_t mix_weight_bytes(const ModelSpec& spec, kquants::Mix mix) {
  std::vector<kquants::MixChoice> choices;
  gguf_mix_plan(mix, spec, false, &choices);
  const std::vector<TensorGroup> groups = tensor_groups(spec);
  QS_ASSERT(choices.size() == groups.size(), "mix plan and groups differ");
  int64_t bytes = 0;
  for (size_t i = 0; i < groups.size(); ++i) bytes += group_bytes(groups[i], choices[i].ggml_type);
  return bytes;
}

QuantizedModel quantize_auto_mix_model(const Transformer& source, const QuantMethodConfig& config,
                                       const CalibrationSet& calib, const QuantProgress& progress,
                                       const QuantRunOptions& run) {
  // The study on the calibration windows: every group at every candidate type.
  const auto t0 = Clock::now();
  SensitivityStudy study(source, calib.windows, run.batch_windows);
  std::vector<SensitivityMeasurement> table;
  const std::vector<int32_t> types = default_sensitivity_types();
  for (size_t ti = 0; ti < types.size(); ++ti) {
    for (auto& m : study.measure_type(types[ti])) table.push_back(std::move(m));
    if (progress)
      progress(int(ti + 1), int(types.size()),
               cat("sensitivity ", ggml_type_label(types[ti]), " ", since(t0), "s"));
  }
  QuantizedModel out = quantize_auto_mix_from_table(source, config, table, calib, run);
  out.method_meta["study_setup_seconds"] = study.setup_seconds();
  out.method_meta["study_seconds"] = since(t0);
  out.seconds = since(t0);
  return out;
}

QuantizedModel quantize_auto_mix_from_table(const Transformer& source,
                                            const QuantMethodConfig& config,
                                            const std::vector<SensitivityMeasurement>& table,
                                            const CalibrationSet& calib,
                                            const QuantRunOptions& run) {
  const auto t0 = Clock::now();
  config.validate(/*for_export=*/false);
  const AutoMixOptions* opt = config.auto_mix();
  QS_ASSERT(opt != nullptr, "quantize_auto_mix_from_table: not an auto_mix config");
  const ModelSpec& spec = source.spec();
  const std::vector<TensorGroup> groups = tensor_groups(spec);
  int64_t params = 0;
  for (const auto& g : groups) params += g.params();
  const int64_t budget = opt->budget.empty()
                             ? int64_t(std::floor(opt->budget_bpw * double(params) / 8.0))
                             : mix_weight_bytes(spec, *kquants::mix_from_name(opt->budget));

  // Each group's options: F16 at cost 0, then every measured type.
  std::map<std::string, size_t> index;
  for (size_t gi = 0; gi < groups.size(); ++gi) index[groups[gi].name] = gi;
  std::vector<std::vector<MixOption>> options(groups.size());
  std::vector<std::vector<SensitivityMeasurement>> measured(groups.size());
  std::set<int32_t> type_set;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const TensorGroup& g = groups[gi];
    const int64_t f16 = group_bytes(g, gt::F16);
    options[gi].push_back({f16, 0.0});
    measured[gi].push_back({g.name, g.role, g.layer, gt::F16, 0, 0, f16, f16, 0});
  }
  for (const SensitivityMeasurement& m : table) {
    const auto it = index.find(m.group);
    QS_THROW_IF_NOT(it != index.end(), "auto_mix: the sensitivity table measures '", m.group,
                    "', which is no tensor group of this model; the table is from another model");
    if (m.type == gt::F16) continue;
    QS_THROW_IF_NOT(m.bytes == group_bytes(groups[it->second], m.type), "auto_mix: '", m.group,
                    "' at ", ggml_type_label(m.type), " is stored in ",
                    group_bytes(groups[it->second], m.type), " bytes, the table says ", m.bytes,
                    "; the table is from another model");
    type_set.insert(m.type);
    measured[it->second].push_back(m);
    options[it->second].push_back({m.bytes, m.kl});
  }
  std::vector<int32_t> types(type_set.begin(), type_set.end());
  SensitivityStudy study(source, calib.windows, run.batch_windows);
  const MixSolution sol = solve_mix(options, budget);

  std::map<std::string, int32_t> chosen;
  json rows = json::array(), all = json::array();
  KQuantMixResult r;
  r.imatrix = false;
  double linear_bits = 0, linear_params = 0;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const SensitivityMeasurement& m = measured[gi][size_t(sol.choice[gi])];
    chosen[m.group] = m.type;
    r.choices.push_back({m.group, m.type,
                         cat("auto_mix: KL ", m.kl, " saves ", m.bytes_f16 - m.bytes, " bytes"),
                         false});
    rows.push_back({{"name", m.group},
                    {"type", ggml_type_label(m.type)},
                    {"kl", m.kl},
                    {"kl_se", m.kl_se},
                    {"bytes", m.bytes}});
    for (const auto& x : measured[gi])
      all.push_back({{"name", x.group},
                     {"role", x.role},
                     {"layer", x.layer},
                     {"type", ggml_type_label(x.type)},
                     {"kl", x.kl},
                     {"kl_se", x.kl_se},
                     {"bytes", x.bytes},
                     {"bytes_saved", x.bytes_f16 - x.bytes},
                     {"seconds", x.seconds}});
    if (groups[gi].layer >= 0) {
      linear_bits += 8.0 * double(m.bytes);
      linear_params += double(groups[gi].params());
    }
  }
  const SensitivityMeasurement whole = study.measure_mix(chosen);
  const GgufTypePlan plan = group_type_plan(spec, chosen);
  r.source = gguf_source_tensors(spec, source.weights());
  gguf_tensor_specs("auto_mix", r.source, plan);  // refuse a bad plan now
  r.write_options = plan.write_options();
  r.plan = plan;
  r.linear_bits_per_weight = linear_params > 0 ? linear_bits / linear_params : 0;

  ModelWeights none;
  none.layers.resize(size_t(spec.num_layers));
  QuantizedModel out{config,
                     calib.source,
                     calib.domain,
                     calib.options,
                     {},
                     Transformer(spec, std::move(none)),
                     {},
                     0,
                     {}};
  out.mix = std::make_shared<const KQuantMixResult>(std::move(r));
  out.method_meta = {{"budget", opt->budget.empty() ? json() : json(opt->budget)},
                     {"budget_bpw", opt->budget.empty() ? json(opt->budget_bpw) : json()},
                     {"budget_bytes", budget},
                     {"weight_bytes", sol.bytes},
                     {"weight_bits_per_weight", 8.0 * double(sol.bytes) / double(params)},
                     {"solver", sol.exact ? "dynamic programming (exact)" : "Lagrangian"},
                     {"predicted_kl", sol.cost},
                     {"measured_kl", whole.kl},
                     {"measured_kl_se", whole.kl_se},
                     {"study_tokens", study.tokens()},
                     {"study_windows", calib.windows.size()},
                     {"study_offsets", calib.offsets},
                     {"candidate_types",
                      [&] {
                        json a = json::array({"F16"});
                        for (int32_t t : types) a.push_back(ggml_type_label(t));
                        return a;
                      }()},
                     {"choices", rows},
                     {"measurements", all}};
  out.seconds = since(t0);
  return out;
}

}  // namespace qsweep
