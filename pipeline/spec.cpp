#include "pipeline/spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "pipeline/detail/matrix.h"
#include "pipeline/detail/resources.h"
#include "pipeline/detail/sensitivity_spec.h"
#include "pipeline/detail/yaml_fields.h"

namespace qsweep {
namespace {

using namespace sweep_yaml;

constexpr int64_t kIntMax = std::numeric_limits<int>::max();

// ---------------------------------------------------------------------------
// What exists: tasks, available or planned (methods: quantize/method.h). Rules are data.

std::vector<std::string> names_of_map(const std::map<std::string, CalibrationSpec>& m) {
  std::vector<std::string> names;
  for (const auto& [name, c] : m) names.push_back(name);
  return names;
}

template <typename Table>
std::vector<std::string> names_of(const Table& table) {
  std::vector<std::string> names;
  for (const auto& row : table) names.push_back(row.name);
  return names;
}

/// The check for a `method:` value: unknown (with a suggestion) or planned.
template <typename Table>
std::function<std::string(const Scalar&)> known_name_check(const Table& table,
                                                           const std::string& what) {
  return [&table, what](const Scalar& v) -> std::string {
    const auto& s = std::get<std::string>(v);
    for (const auto& row : table)
      if (row.name == s)
        return row.planned.empty()
                   ? ""
                   : cat(what, " '", s, "' is not implemented yet (issue ", row.planned, ")");
    return cat("unknown ", what, " '", s, "'", did_you_mean(s, names_of(table)));
  };
}

/// The check for a `task:` value: one of eval's tasks, else unknown (with a suggestion).
std::string check_task_name(const Scalar& v) {
  const auto& s = std::get<std::string>(v);
  if (task_from_name(s)) return "";
  return cat("unknown task '", s, "'", did_you_mean(s, task_names()));
}

/// Letters, digits, '.', '_' and '-', not starting with '.' or '-': safe in a file name.
bool is_safe_name(const std::string& s) {
  if (s.empty() || s[0] == '.' || s[0] == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

/// `s` with every run of unsafe characters replaced by one '_', and no leading '.', '_' or '-'.
std::string safe_fragment(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
    if (ok)
      out += c;
    else if (out.empty() || out.back() != '_')
      out += '_';
  }
  const size_t start = out.find_first_not_of("._-");
  out = start == std::string::npos ? "" : out.substr(start);
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out.empty() ? "x" : out;
}

// ---------------------------------------------------------------------------
// Sections.

std::string read_string(const Source& src, const Entry& e, const std::string& expected) {
  return std::get<std::string>(read_one(src, string_field(e.name, expected), e).value);
}

std::map<std::string, CalibrationSpec> read_calibration(const Source& src, const Entry& section) {
  std::map<std::string, CalibrationSpec> out;
  if (section.value.IsNull()) return out;
  if (!section.value.IsMap())
    src.fail(section.value, cat("'calibration' must be a map of name: {source: ...}, got ",
                                describe(section.value)));
  const std::vector<Field> fields = {
      string_field("source", "a built-in source, a file, file.jsonl:field or a glob"),
      string_field("domain", "a domain label"),
      int_field("n_samples", 1, kIntMax, "a positive integer"),
      int_field("seqlen", 1, kIntMax, "a positive integer"),
      int_field("seed", 0, std::numeric_limits<int64_t>::max(), "a non-negative integer"),
      int_field("seeds", 0, std::numeric_limits<int64_t>::max(),
                "a list of distinct non-negative integers"),
      choice_field("sampling", {"random", "contiguous"}),
  };
  for (const auto& kv : section.value) {  // kv is a value: its nodes outlive the loop body
    const YAML::Node key = kv.first;
    const std::string name = key.IsScalar() ? key.Scalar() : "";
    if (!is_safe_name(name))
      src.fail(key, cat("calibration name ", describe(key),
                        " must use only letters, digits, '.', '_' and '-' (it becomes part of "
                        "variant ids)"));
    if (out.count(name)) src.fail(key, cat("calibration '", name, "' is defined twice"));
    const MapView map(src, kv.second, keys_of(fields), cat("calibration '", name, "'"));
    CalibrationSpec c;
    c.name = name;
    for (const auto& e : map.entries()) {
      if (e.name == "seeds") continue;  // a list: read below
      const Scalar v = read_one(src, field_named(fields, e.name), e).value;
      if (e.name == "source") c.source = std::get<std::string>(v);
      if (e.name == "domain") c.domain = std::get<std::string>(v);
      if (e.name == "n_samples") c.n_samples = static_cast<int>(std::get<int64_t>(v));
      if (e.name == "seqlen") c.seqlen = static_cast<int>(std::get<int64_t>(v));
      if (e.name == "seed") c.seed = static_cast<uint64_t>(std::get<int64_t>(v));
      if (e.name == "sampling") c.sampling = std::get<std::string>(v);
    }
    if (const Entry* seeds = map.find("seeds")) {
      if (const Entry* seed = map.find("seed"))
        src.fail(seed->key, cat("calibration '", name, "' gives both 'seed' and 'seeds' (at ",
                                place_of(seeds->key), "): keep one"));
      c.seeds.clear();
      for (const FieldValue& fv : read_axis(src, field_named(fields, "seeds"), *seeds))
        c.seeds.push_back(static_cast<uint64_t>(std::get<int64_t>(fv.value)));
      c.seed = c.seeds.front();
    } else {
      c.seeds = {c.seed};
    }
    if (!map.find("source")) src.fail(map.node(), cat("calibration '", name, "' has no 'source'"));
    out.emplace(name, std::move(c));
  }
  return out;
}

std::vector<Field> variant_fields(const std::map<std::string, CalibrationSpec>& calibration) {
  const std::vector<std::string> cal_names = names_of_map(calibration);
  Field method = string_field("method", "a method name");
  method.check = [](const Scalar& v) -> std::string {
    const auto& s = std::get<std::string>(v);
    if (method_from_name(s)) return "";
    return cat("unknown method '", s, "'", did_you_mean(s, method_names()),
               " (methods: ", method_names_text(), ")");
  };
  Field group = int_field("group_size", -1, kIntMax,
                          "a positive integer or -1 (one group per output channel)");
  group.parse = [any = group.parse](const std::string& t) -> std::optional<Scalar> {
    auto v = any(t);
    if (!v || std::get<int64_t>(*v) == 0) return std::nullopt;
    return v;
  };
  const Field cal = calibration_name_field(cal_names);
  return {
      method,
      int_field("bits", 2, 8, "an integer 2..8"),
      group,
      bool_field("sym"),
      bool_field("desc_act"),
      bool_field("static_groups"),
      bool_field("true_sequential"),
      number_field(
          "damp_percent", [](double d) { return d > 0 && d <= 1; }, "a number in (0, 1]"),
      cal,
      string_field("budget", "a llama.cpp mix name such as q3_k_m"),
      number_field(
          "budget_bpw", [](double d) { return d >= 2 && d <= 16; }, "a number of bits 2..16"),
      choice_field("device", {"auto", "cpu", "cuda"}),
  };
}

std::vector<VariantSpec> read_variants(const Source& src, const Entry& section,
                                       const std::map<std::string, CalibrationSpec>& calibration,
                                       const std::string& auto_mix_default) {
  if (!section.value.IsSequence() || section.value.size() == 0)
    src.fail(section.value.IsNull() ? section.key : section.value,
             cat("'variants' must be a non-empty list of variants, got ", describe(section.value)));
  const std::vector<Field> fields = variant_fields(calibration);
  std::vector<VariantSpec> out;
  std::map<std::string, YAML::Node> origin_of;  // id -> where it came from
  for (const auto& entry : section.value) {
    for (const Combination& c :
         expand_matrix(src, entry, fields, "variant", {kMaxVariants, out.size(), "variants"})) {
      const FieldValue* m = c.find("method");
      if (!m)
        src.fail(c.origin,
                 "variant has no 'method' (rtn, gptq, awq or a llama.cpp mix such as q4_k_m)");
      VariantSpec v;
      const MethodInfo& info = method_info(*method_from_name(std::get<std::string>(m->value)));
      v.config = QuantMethodConfig::defaults(info.method);
      for (const auto& [key, fv] : c.values) {
        if (key == "method") continue;
        if (key == "device") {  // any method; only GPTQ and AWQ nodes use it
          v.device = std::get<std::string>(fv.value);
          continue;
        }
        if (std::find(info.keys.begin(), info.keys.end(), key) == info.keys.end())
          src.fail(fv.node, cat("'", key, "' does not apply to method '", info.name, "' (it uses ",
                                join_or(info.keys), ")"));
        const Scalar& s = fv.value;
        if (key == "calibration") v.calibration = std::get<std::string>(s);
      }
      // The options, through the config's own JSON reader (keys checked above).
      nlohmann::json options = v.config.to_json();
      for (const auto& [key, fv] : c.values) {
        if (key == "method" || key == "calibration" || key == "device") continue;
        std::visit([&, k = key](const auto& x) { options[k] = x; }, fv.value);
      }
      v.config = QuantMethodConfig::from_json(options);
      if (info.family == MethodFamily::AutoMix && v.calibration.empty())
        v.calibration = auto_mix_default;  // sensitivity.calibration, when given
      if (info.calibration == CalibrationUse::Required && v.calibration.empty()) {
        // The one calibration set is the default; with none or several, the variant must say.
        if (calibration.size() != 1)
          src.fail(
              m->node,
              cat("method '", info.name, "' needs a calibration set: add 'calibration: <name>'",
                  calibration.empty() ? " and a 'calibration:' section"
                                      : cat(" (one of ", join_or(names_of_map(calibration)), ")")));
        v.calibration = calibration.begin()->first;
      }
      // What the config or its checkpoint layout cannot hold (AWQ gemm: 4-bit, zero point).
      if (const auto problem = v.config.problem()) {
        const FieldValue* at = c.find(problem->key);
        src.fail(at ? at->node : m->node, problem->message);
      }
      if (const GptqOptions* g = v.config.gptq(); g && g->static_groups && g->group_size == -1)
        src.fail(c.find("static_groups")->node,
                 "'static_groups' needs groups: it means nothing with group_size -1");
      v.source_line = line_of(c.origin);
      v.id = variant_id(v.config, v.calibration);
      auto [it, fresh] = origin_of.emplace(v.id, c.origin);
      if (!fresh)
        src.fail(c.origin, cat("variant '", v.id, "' is defined twice: by the variant at line ",
                               line_of(it->second), " and the one at line ", line_of(c.origin)));
      out.push_back(std::move(v));
    }
  }
  return out;
}

/// The eval id rule (docs/sweep-format.md, "Eval ids").
std::string eval_id(const EvalConfig& e) {
  const EvalConfig d;
  std::string id = cat(task_info(e.task).id_prefix, "-", safe_fragment(e.dataset));
  if (e.task == Task::Perplexity) id += cat("-", e.protocol);
  if (e.task == Task::Perplexity || e.task == Task::Kld)
    id += cat("-ctx", e.ctx == 0 ? std::string("max") : std::to_string(e.ctx));
  else if (e.task == Task::LineCompletion && e.ctx > 0)
    id += cat("-ctx", e.ctx);
  if (e.protocol == "strided" && e.stride > 0) id += cat("-s", e.stride);
  if (e.max_tokens > 0) id += cat("-n", e.max_tokens);
  if (e.top_k != d.top_k) id += cat("-k", e.top_k);
  if (e.limit > 0) id += cat("-l", e.limit);
  if (!e.subjects.empty()) id += cat("-", safe_fragment(e.subjects));
  if (e.shots >= 0) id += cat("-shot", e.shots);
  if (e.samples != d.samples) id += cat("-x", e.samples);
  if (e.temperature != d.temperature) id += cat("-t", to_text(e.temperature));
  if (e.max_new_tokens > 0) id += cat("-m", e.max_new_tokens);
  if (e.seed != d.seed) id += cat("-seed", e.seed);
  return id;
}

std::vector<EvalConfig> read_evals(const Source& src, const Entry& section) {
  if (!section.value.IsSequence() || section.value.size() == 0)
    src.fail(section.value.IsNull() ? section.key : section.value,
             cat("'eval' must be a non-empty list of evaluations, got ", describe(section.value)));
  Field task = string_field("task", "a task name");
  task.check = check_task_name;
  const std::vector<Field> fields = {
      task,
      string_field("dataset", "a dataset name or a file path"),
      choice_field("protocol", {"chunks", "strided"}),
      int_field("ctx", 2, kIntMax, "an integer >= 2"),
      int_field("stride", 1, kIntMax, "a positive integer"),
      int_field("max_tokens", 0, std::numeric_limits<int64_t>::max(),
                "a non-negative integer (0 = all)"),
      int_field("top_k", 1, kIntMax, "a positive integer"),
      int_field("limit", 0, kIntMax, "a non-negative integer (0 = the task's default)"),
      string_field("subjects", "comma-separated subject names"),
      int_field("shots", 0, 64, "an integer 0..64"),
      int_field("samples", 1, 1000, "an integer 1..1000"),
      number_field(
          "temperature", [](double t) { return t >= 0 && t <= 5; }, "a number in [0, 5]"),
      int_field("max_new_tokens", 1, 1 << 20, "a positive integer"),
      int_field("seed", 0, std::numeric_limits<int64_t>::max(), "a non-negative integer"),
      choice_field("device", {"auto", "cpu", "cuda"}),
  };
  std::vector<EvalConfig> out;
  std::map<std::string, YAML::Node> origin_of;
  for (const auto& entry : section.value) {
    for (const Combination& c :
         expand_matrix(src, entry, fields, "eval entry", {kMaxEvals, out.size(), "evaluations"})) {
      const FieldValue* t = c.find("task");
      if (!t) src.fail(c.origin, cat("eval entry has no 'task' (", join_or(task_names()), ")"));
      const std::string task_name = std::get<std::string>(t->value);
      const TaskInfo& ti = task_info(*task_from_name(task_name));  // checked by check_task_name
      if (!c.find("dataset") && ti.default_dataset.empty())
        src.fail(c.origin, cat("eval entry has no 'dataset' (task '", task_name, "' needs one)"));
      EvalConfig e;
      e.task = ti.task;
      e.dataset = ti.default_dataset;
      for (const auto& [key, fv] : c.values) {
        const Scalar& s = fv.value;
        if (key == "device") {  // any task
          e.device = std::get<std::string>(s);
          continue;
        }
        if (key != "task" && std::find(ti.keys.begin(), ti.keys.end(), key) == ti.keys.end())
          src.fail(fv.node, cat("'", key, "' does not apply to task '", task_name, "' (it uses ",
                                join_or(ti.keys), ")"));
        if (key == "top_k") e.top_k = static_cast<int>(std::get<int64_t>(s));
        if (key == "limit") e.limit = std::get<int64_t>(s);
        if (key == "subjects") e.subjects = std::get<std::string>(s);
        if (key == "shots") e.shots = static_cast<int>(std::get<int64_t>(s));
        if (key == "samples") e.samples = static_cast<int>(std::get<int64_t>(s));
        if (key == "temperature") e.temperature = std::get<double>(s);
        if (key == "max_new_tokens") e.max_new_tokens = static_cast<int>(std::get<int64_t>(s));
        if (key == "seed") e.seed = static_cast<uint64_t>(std::get<int64_t>(s));
        if (key == "dataset") e.dataset = std::get<std::string>(s);
        if (key == "protocol") e.protocol = std::get<std::string>(s);
        if (key == "ctx") e.ctx = static_cast<int>(std::get<int64_t>(s));
        if (key == "stride") e.stride = static_cast<int>(std::get<int64_t>(s));
        if (key == "max_tokens") e.max_tokens = std::get<int64_t>(s);
      }
      if (const FieldValue* s = c.find("stride")) {
        if (e.protocol != "strided")
          src.fail(s->node, "'stride' applies only to protocol: strided");
        if (e.ctx > 0 && e.stride > e.ctx)
          src.fail(s->node, cat("'stride' must be at most ctx (", e.ctx, "), got ", e.stride));
      }
      if (e.samples > 1 && e.temperature == 0)
        src.fail(c.find("samples")->node,
                 "'samples' > 1 needs 'temperature' > 0: greedy decoding repeats one completion");
      // Resolve the default stride where ctx is known, so equal evaluations get equal ids.
      if (e.protocol == "strided" && e.stride == 0 && e.ctx > 0) e.stride = e.ctx / 2;
      e.id = eval_id(e);
      auto [it, fresh] = origin_of.emplace(e.id, c.origin);
      if (!fresh)
        src.fail(c.origin, cat("eval '", e.id, "' is defined twice: by the eval entry at line ",
                               line_of(it->second), " and the one at line ", line_of(c.origin)));
      out.push_back(std::move(e));
    }
  }
  return out;
}

ReportSpec read_report(const Source& src, const Entry& section) {
  ReportSpec r;
  if (section.value.IsNull()) return r;
  const MapView map(src, section.value, {"formats", "acceptable"}, "report");
  if (const Entry* f = map.find("formats")) {
    r.formats.clear();
    for (const auto& v : read_axis(src, choice_field("formats", {"md", "csv", "json", "html"}), *f))
      r.formats.push_back(std::get<std::string>(v.value));
  }
  if (const Entry* a = map.find("acceptable")) {
    const std::vector<std::string> names = {"yes", "usually", "marginal"};
    const MapView bounds(src, a->value, names, "report.acceptable");
    double* slot[] = {&r.yes, &r.usually, &r.marginal};
    const YAML::Node* at[3] = {nullptr, nullptr, nullptr};
    const Field positive = number_field(
        "", [](double d) { return d > 0; }, "a positive number");
    for (const auto& e : bounds.entries()) {
      Field f = positive;
      f.key = e.name;
      const size_t i =
          static_cast<size_t>(std::find(names.begin(), names.end(), e.name) - names.begin());
      *slot[i] = std::get<double>(read_one(src, f, e).value);
      at[i] = &e.value;
    }
    for (size_t i = 1; i < 3; ++i)
      if (!(*slot[i] > *slot[i - 1]))
        src.fail(at[i] ? *at[i] : (at[i - 1] ? *at[i - 1] : a->value),
                 cat("report.acceptable must be ascending (yes < usually < marginal), but ",
                     names[i], " = ", to_text(*slot[i]), " is not above ", names[i - 1], " = ",
                     to_text(*slot[i - 1])));
  }
  return r;
}

/// A parse error's position; tabs in indentation get a message of their own, since
/// yaml-cpp reports them as an unrelated "illegal map value".
[[noreturn]] void fail_syntax(const Source& src, const std::string& yaml,
                              const YAML::ParserException& e) {
  std::istringstream lines(yaml);
  std::string line;
  for (int i = 0; std::getline(lines, line) && i <= e.mark.line; ++i) {
    const size_t indent_end = line.find_first_not_of(" \t");
    const size_t tab = line.find('\t');
    if (tab != std::string::npos && (indent_end == std::string::npos || tab < indent_end))
      throw Error(cat(src.file, ":", i + 1, ":", tab + 1,
                      ": tab in indentation; YAML indents with spaces (parser: ", e.msg, " at ",
                      e.mark.line + 1, ":", e.mark.column + 1, ")"));
  }
  src.fail(e.mark, e.msg);
}

}  // namespace

std::string variant_label(const VariantSpec& v) {
  const std::string s = v.config.label();
  if (v.calibration.empty()) return s;
  return v.config.info().calibration == CalibrationUse::Optional
             ? cat(s, " imatrix (", v.calibration, ")")
             : cat(s, " (", v.calibration, ")");
}

nlohmann::json variant_option_columns(const QuantMethodConfig& c) {
  using nlohmann::json;
  GptqOptions g;
  if (const GptqOptions* o = c.gptq()) g = *o;
  const bool mix = c.family() == MethodFamily::KQuantMix;
  return {{"bits", c.bits()},
          {"group_size", mix ? json() : json(c.group_size())},
          {"sym", c.sym()},
          {"desc_act", g.desc_act},
          {"static_groups", g.static_groups},
          {"true_sequential", g.true_sequential},
          {"damp_percent", g.damp_percent}};
}

std::string variant_id(const QuantMethodConfig& config, const std::string& calibration) {
  if (calibration.empty()) return config.id();
  return config.info().calibration == CalibrationUse::Optional
             ? cat(config.id(), "-imat-", calibration)
             : cat(config.id(), "-", calibration);
}

SweepSpec parse_sweep_text(const std::string& yaml, const std::string& file) {
  const Source src{file};
  YAML::Node root;
  try {
    check_document_shape(src, yaml);  // one document, bounded nesting, before building nodes
    root = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    fail_syntax(src, yaml, e);
  }
  if (!root.IsDefined() || root.IsNull())
    throw Error(cat(file, ": the sweep file is empty (it needs name, model, variants and eval)"));

  SweepSpec spec;
  spec.file = file;
  try {
    const MapView top(src, root,
                      {"name", "model", "baseline", "calibration", "variants", "eval", "report",
                       "resources", "sensitivity", "device"},
                      "the sweep file");
    if (const Entry* name = top.find("name")) {
      spec.name = read_string(src, *name, "a name");
      if (!is_safe_name(spec.name))
        src.fail(name->value, cat("'name' must use only letters, digits, '.', '_' and '-' (it "
                                  "names the sweep's folder), got ",
                                  describe(name->value)));
    }
    if (const Entry* model = top.find("model"))
      spec.model = read_string(src, *model, "a model name or a path");
    if (const Entry* b = top.find("baseline")) {
      Field baseline = string_field("baseline", "fp16");
      baseline.check = [](const Scalar& v) -> std::string {
        const auto& s = std::get<std::string>(v);
        return s == "fp16" ? "" : cat("baseline '", s, "' is not supported; only fp16 for now");
      };
      spec.baseline = std::get<std::string>(read_one(src, baseline, *b).value);
    }
    if (const Entry* d = top.find("device")) {
      const Field device = choice_field("device", {"auto", "cpu", "cuda"});
      spec.device = std::get<std::string>(read_one(src, device, *d).value);
    }
    if (const Entry* c = top.find("calibration")) spec.calibration = read_calibration(src, *c);
    const Entry* sens = top.find("sensitivity");
    if (sens) {
      spec.sensitivity = read_sensitivity(src, *sens, spec.calibration);
      spec.has_sensitivity_section = true;
    }
    if (const Entry* v = top.find("variants"))
      spec.variants = read_variants(src, *v, spec.calibration, spec.sensitivity.calibration);
    if (sens) resolve_sensitivity_calibration(src, *sens, spec);
    if (const Entry* e = top.find("eval")) spec.evals = read_evals(src, *e);
    if (const Entry* r = top.find("report")) spec.report = read_report(src, *r);
    if (const Entry* r = top.find("resources")) spec.resources = read_resources(src, *r);
    if (const Entry* e = top.find("eval");
        e && (spec.variants.size() + 1) * spec.evals.size() > kMaxEvalNodes)
      src.fail(e->key,
               cat("(", spec.variants.size(), " variants + the baseline) x ", spec.evals.size(),
                   " evaluations = ", (spec.variants.size() + 1) * spec.evals.size(),
                   " evaluation runs; a sweep may have at most ", kMaxEvalNodes,
                   ": split it into several sweeps (docs/sweep-format.md, Limits)"));
    // Missing keys last, so that a mistake inside a section present is reported first.
    for (const char* key : {"name", "model", "variants", "eval"})
      if (!top.find(key)) src.fail(root, cat("the sweep file has no '", key, "'"));
  } catch (const YAML::Exception& e) {
    // Not expected (values are read as text), but never let one escape without a position.
    src.fail(e.mark, e.msg);
  }
  return spec;
}

EvalConfig parse_eval_options(const std::vector<std::pair<std::string, std::string>>& options) {
  // Through the sweep file's own reader, so flags and YAML keys cannot drift apart: one flow
  // entry, each value a quoted-if-needed string (the reader converts numbers from text).
  YAML::Emitter out;
  out << YAML::Flow << YAML::BeginSeq << YAML::BeginMap;
  for (const auto& [k, v] : options) out << YAML::Key << k << YAML::Value << v;
  out << YAML::EndMap << YAML::EndSeq;
  const std::string file = "command line";
  const Source src{file};
  try {
    const YAML::Node root = YAML::Load(std::string("eval: ") + out.c_str());
    const MapView top(src, root, {"eval"}, "the options");
    std::vector<EvalConfig> evals = read_evals(src, *top.find("eval"));
    QS_THROW_IF_NOT(evals.size() == 1, "options expand to ", evals.size(),
                    " evaluations; give one value per option");
    return evals[0];
  } catch (const Error& e) {
    // "command line:1:23: 'max_new_tokens' must be a positive integer or a list of them"
    // → "--max-new-tokens must be a positive integer".
    std::string m = e.what();
    if (m.rfind(file + ":", 0) == 0) {
      const size_t colon = m.find(": ", file.size());
      if (colon != std::string::npos) m = m.substr(colon + 2);
    }
    for (const std::string tail : {" or a list of them", " or a list"})
      for (size_t at; (at = m.find(tail)) != std::string::npos;) m.erase(at, tail.size());
    for (const auto& ti : task_table())
      for (const std::string& k : ti.keys) {
        std::string flag = "--" + k;
        std::replace(flag.begin(), flag.end(), '_', '-');
        for (size_t at; (at = m.find("'" + k + "'")) != std::string::npos;)
          m.replace(at, k.size() + 2, flag);
      }
    if (m.rfind("unknown task", 0) == 0) m += cat(" (tasks: ", join_or(task_names()), ")");
    throw Error(m);
  }
}

SweepSpec parse_sweep(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(cat("sweep file '", path, "' does not exist"));
  if (fs::is_directory(path, ec))
    throw Error(cat("sweep file '", path, "' is a directory, not a YAML file"));
  // read_text_file opens regular files only (a FIFO or device is an Error, never a hang).
  return parse_sweep_text(read_text_file(path), path);
}

}  // namespace qsweep
