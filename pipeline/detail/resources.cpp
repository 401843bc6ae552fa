// The sweep file's `resources:` section (Slurm requests per node kind).
#include "pipeline/detail/resources.h"

#include <regex>

namespace qsweep {
namespace sweep_yaml {

std::map<std::string, SlurmResources> read_resources(const Source& src, const Entry& section) {
  std::map<std::string, SlurmResources> out;
  if (section.value.IsNull()) return out;
  const MapView kinds(src, section.value, {"default", "calibrate", "quantize", "eval"},
                      "resources");
  Field mem = string_field("mem", "a memory size such as 64G (digits, then K, M, G or T)");
  mem.parse = [](const std::string& t) -> std::optional<Scalar> {
    static const std::regex re("[0-9]+[KMGT]?");
    if (!std::regex_match(t, re)) return std::nullopt;
    return Scalar(t);
  };
  Field time =
      string_field("time", "a Slurm time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS");
  time.parse = [](const std::string& t) -> std::optional<Scalar> {
    static const std::regex re(
        "[0-9]+|[0-9]+:[0-9]{1,2}|[0-9]+:[0-9]{1,2}:[0-9]{1,2}|[0-9]+-[0-9]{1,2}(:[0-9]{1,2}){0,"
        "2}");
    if (!std::regex_match(t, re)) return std::nullopt;
    return Scalar(t);
  };
  const std::vector<Field> fields = {int_field("gpus", 0, 64, "an integer 0..64"),
                                     int_field("cpus", 1, 4096, "an integer 1..4096"), mem, time};
  for (const auto& kind : kinds.entries()) {
    SlurmResources r;
    const MapView map(src, kind.value, keys_of(fields), "resources." + kind.name);
    for (const auto& e : map.entries()) {
      const Scalar v = read_one(src, field_named(fields, e.name), e).value;
      if (e.name == "gpus") r.gpus = int(std::get<int64_t>(v));
      if (e.name == "cpus") r.cpus = int(std::get<int64_t>(v));
      if (e.name == "mem") r.mem = std::get<std::string>(v);
      if (e.name == "time") r.time = std::get<std::string>(v);
    }
    out[kind.name] = r;
  }
  return out;
}

}  // namespace sweep_yaml

SlurmResources resources_for(const SweepSpec& spec, const std::string& kind) {
  SlurmResources r;
  for (const char* k : {"default", kind.c_str()}) {
    const auto it = spec.resources.find(k);
    if (it == spec.resources.end()) continue;
    const SlurmResources& o = it->second;
    if (o.gpus) r.gpus = o.gpus;
    if (o.cpus) r.cpus = o.cpus;
    if (!o.mem.empty()) r.mem = o.mem;
    if (!o.time.empty()) r.time = o.time;
  }
  return r;
}

}  // namespace qsweep
