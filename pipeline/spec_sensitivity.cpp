// The `sensitivity:` section of a sweep file (issue #19).
#include <algorithm>
#include <limits>
#include <set>

#include "common/errors.h"
#include "pipeline/detail/sensitivity_spec.h"
#include "quantize/sensitivity.h"

namespace qsweep::sweep_yaml {

SensitivitySpec read_sensitivity(const Source& src, const Entry& section,
                                 const std::map<std::string, CalibrationSpec>& calibration) {
  SensitivitySpec out;
  if (section.value.IsNull()) return out;
  std::vector<std::string> cal_names;
  for (const auto& [name, c] : calibration) cal_names.push_back(name);
  Field types = string_field("types", "a list of candidate types such as q4_k");
  types.check = [](const Scalar& v) -> std::string {
    const auto& s = std::get<std::string>(v);
    if (sensitivity_type_from_name(s)) return "";
    return cat("unknown candidate type '", s, "'", did_you_mean(s, sensitivity_type_names()),
               " (types: ", join_or(sensitivity_type_names()), ")");
  };
  const Field cal = calibration_name_field(cal_names);
  const int64_t int_max = std::numeric_limits<int>::max();
  const std::vector<Field> fields = {
      types,
      cal,
      int_field("n_samples", 1, int_max, "a positive integer"),
      int_field("seqlen", 2, int_max, "an integer >= 2"),
  };
  const MapView map(src, section.value, keys_of(fields), "sensitivity");
  for (const Entry& e : map.entries()) {
    if (e.name == "types") {
      out.types.clear();
      // read_axis: a scalar or a non-empty list of distinct values, each checked.
      for (const FieldValue& fv : read_axis(src, types, e))
        out.types.push_back(std::get<std::string>(fv.value));
      continue;
    }
    const Scalar v = read_one(src, field_named(fields, e.name), e).value;
    if (e.name == "calibration") out.calibration = std::get<std::string>(v);
    if (e.name == "n_samples") out.n_samples = int(std::get<int64_t>(v));
    if (e.name == "seqlen") out.seqlen = int(std::get<int64_t>(v));
  }
  return out;
}

void resolve_sensitivity_calibration(const Source& src, const Entry& section, SweepSpec& spec) {
  if (!spec.sensitivity.calibration.empty()) return;
  const bool any_auto_mix =
      std::any_of(spec.variants.begin(), spec.variants.end(),
                  [](const VariantSpec& v) { return v.config.family() == MethodFamily::AutoMix; });
  if (any_auto_mix) return;
  if (spec.calibration.size() == 1) {
    spec.sensitivity.calibration = spec.calibration.begin()->first;
    return;
  }
  src.fail(section.key, spec.calibration.empty()
                            ? "'sensitivity' needs a calibration set: add a 'calibration:' "
                              "section and 'calibration: <name>' here"
                            : "'sensitivity' needs 'calibration: <name>' (the sweep defines "
                              "several sets and no auto_mix variant names one)");
}

}  // namespace qsweep::sweep_yaml
