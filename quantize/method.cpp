#include "quantize/method.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <type_traits>

#include "common/errors.h"

namespace qsweep {
namespace {

using F = MethodFamily;
using C = CalibrationUse;
using L = CheckpointLayout;
using kquants::Mix;

MethodInfo mix_row(Method m, const char* name, const char* display, int nominal_bits, Mix mix) {
  return {m, name, display, F::KQuantMix, C::Optional, {"calibration"}, nominal_bits, L::Gguf, mix};
}

/// THE table: one row per method, in enum order.
const std::vector<MethodInfo>& table() {
  static const std::vector<MethodInfo> t = {
      {Method::Rtn,
       "rtn",
       "RTN",
       F::Rtn,
       C::None,
       {"bits", "group_size", "sym"},
       0,
       L::GptqSafetensors,
       std::nullopt},
      {Method::Gptq,
       "gptq",
       "GPTQ",
       F::Gptq,
       C::Required,
       {"bits", "group_size", "sym", "desc_act", "static_groups", "true_sequential", "damp_percent",
        "budget_bpw", "calibration"},
       0,
       L::GptqSafetensors,
       std::nullopt},
      {Method::Awq,
       "awq",
       "AWQ",
       F::Awq,
       C::Required,
       {"bits", "group_size", "sym", "calibration"},
       0,
       L::AwqGemmSafetensors,
       std::nullopt},
      mix_row(Method::Q2_K, "q2_k", "Q2_K", 2, Mix::Q2_K),
      mix_row(Method::Q3_K_S, "q3_k_s", "Q3_K_S", 3, Mix::Q3_K_S),
      mix_row(Method::Q3_K_M, "q3_k_m", "Q3_K_M", 3, Mix::Q3_K_M),
      mix_row(Method::Q3_K_L, "q3_k_l", "Q3_K_L", 3, Mix::Q3_K_L),
      mix_row(Method::Q4_0, "q4_0", "Q4_0", 4, Mix::Q4_0),
      mix_row(Method::Q4_K_S, "q4_k_s", "Q4_K_S", 4, Mix::Q4_K_S),
      mix_row(Method::Q4_K_M, "q4_k_m", "Q4_K_M", 4, Mix::Q4_K_M),
      mix_row(Method::Q5_K_S, "q5_k_s", "Q5_K_S", 5, Mix::Q5_K_S),
      mix_row(Method::Q5_K_M, "q5_k_m", "Q5_K_M", 5, Mix::Q5_K_M),
      mix_row(Method::Q6_K, "q6_k", "Q6_K", 6, Mix::Q6_K),
      mix_row(Method::Q8_0, "q8_0", "Q8_0", 8, Mix::Q8_0),
      {Method::AutoMix,
       "auto_mix",
       "auto mix",
       F::AutoMix,
       C::Required,
       {"budget", "budget_bpw", "calibration"},
       0,
       L::Gguf,
       std::nullopt},
  };
  return t;
}

/// Shortest round-trip text of a double ("0.05").
std::string number_text(double d) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, r.ptr);
}

template <typename T>
T get_as(const nlohmann::json& j, const char* key, const char* what) {
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(cat("quantization config: '", key, "' must be ", what, ", got ", j.at(key).dump()));
  }
}

void read_int(const nlohmann::json& j, const char* key, int& out) {
  if (!j.contains(key)) return;
  QS_THROW_IF_NOT(j.at(key).is_number_integer(), "quantization config: '", key,
                  "' must be an integer, got ", j.at(key).dump());
  out = get_as<int>(j, key, "an integer");
}
void read_bool(const nlohmann::json& j, const char* key, bool& out) {
  if (!j.contains(key)) return;
  QS_THROW_IF_NOT(j.at(key).is_boolean(), "quantization config: '", key,
                  "' must be true or false, got ", j.at(key).dump());
  out = j.at(key).get<bool>();
}
void read_double(const nlohmann::json& j, const char* key, double& out) {
  if (!j.contains(key)) return;
  QS_THROW_IF_NOT(j.at(key).is_number(), "quantization config: '", key, "' must be a number, got ",
                  j.at(key).dump());
  out = j.at(key).get<double>();
}

}  // namespace

const std::vector<MethodInfo>& all_methods() {
  return table();
}

std::optional<Method> method_from_name(std::string_view name) {
  for (const auto& row : table())
    if (row.name == name) return row.method;
  return std::nullopt;
}

const MethodInfo& method_info(Method m) {
  const MethodInfo& row = table().at(size_t(m));
  QS_ASSERT(row.method == m, "method table out of enum order");
  return row;
}

std::vector<std::string> method_names() {
  std::vector<std::string> out;
  for (const auto& row : table()) out.push_back(row.name);
  return out;
}

std::string method_names_text() {
  return join(method_names());
}

Method parse_method(std::string_view name) {
  const auto m = method_from_name(name);
  QS_THROW_IF_NOT(m.has_value(), "unknown method '", name, "' (methods: ", method_names_text(),
                  ")");
  return *m;
}

QuantMethodConfig QuantMethodConfig::defaults(Method m) {
  QuantMethodConfig c;
  c.method = m;
  switch (method_info(m).family) {
    case MethodFamily::Rtn:
      c.options = RtnOptions{};
      break;
    case MethodFamily::Gptq:
      c.options = GptqOptions{};
      break;
    case MethodFamily::Awq:
      c.options = AwqOptions{};
      break;
    case MethodFamily::KQuantMix:
      c.options = MixOptions{};
      break;
    case MethodFamily::AutoMix:
      c.options = AutoMixOptions{};
      break;
  }
  return c;
}

int QuantMethodConfig::bits() const {
  return std::visit(
      [&](const auto& o) -> int {
        if constexpr (std::is_same_v<std::decay_t<decltype(o)>, GptqOptions>) {
          // A budgeted GPTQ counts as the width class of its budget (3.5 bpw → 3), like auto_mix.
          if (o.budget_bpw > 0) return std::clamp(int(std::floor(o.budget_bpw)), 2, 8);
          return o.bits;
        } else if constexpr (requires { o.bits; }) {
          return o.bits;
        } else if constexpr (std::is_same_v<std::decay_t<decltype(o)>, AutoMixOptions>) {
          // The width class of its budget, as a hand mix of that size is counted (q3_k_m → 3;
          // 3.9 bits/weight → 3), so the tables group an auto mix beside its hand-made peer.
          if (!o.budget.empty())
            if (const auto m = method_from_name(o.budget)) return method_info(*m).nominal_bits;
          return int(std::floor(o.budget_bpw));
        } else {
          return info().nominal_bits;
        }
      },
      options);
}

int QuantMethodConfig::group_size() const {
  return std::visit(
      [](const auto& o) -> int {
        if constexpr (requires { o.group_size; })
          return o.group_size;
        else
          return 0;
      },
      options);
}

bool QuantMethodConfig::sym() const {
  return std::visit(
      [](const auto& o) -> bool {
        if constexpr (requires { o.sym; })
          return o.sym;
        else
          return false;
      },
      options);
}

nlohmann::json QuantMethodConfig::to_json() const {
  nlohmann::json j = {{"method", info().name}};
  if (const auto* r = rtn()) {
    j.update({{"bits", r->bits}, {"group_size", r->group_size}, {"sym", r->sym}});
  } else if (const auto* g = gptq()) {
    j.update({{"bits", g->bits},
              {"group_size", g->group_size},
              {"sym", g->sym},
              {"desc_act", g->desc_act},
              {"static_groups", g->static_groups},
              {"true_sequential", g->true_sequential},
              {"damp_percent", g->damp_percent},
              {"block_size", g->block_size}});
    // Written only when set, so the keys (and cache keys) of uniform GPTQ stay as they were.
    if (g->budget_bpw != 0) j["budget_bpw"] = g->budget_bpw;
  } else if (const auto* a = awq()) {
    j.update({{"bits", a->bits}, {"group_size", a->group_size}, {"sym", a->sym}});
  } else if (const auto* m = auto_mix()) {
    j.update({{"budget", m->budget}, {"budget_bpw", m->budget_bpw}});
  }
  return j;
}

QuantMethodConfig QuantMethodConfig::from_json(const nlohmann::json& j) {
  QS_THROW_IF_NOT(j.is_object(), "quantization config must be a JSON object, got ", j.dump());
  QS_THROW_IF_NOT(j.contains("method") && j.at("method").is_string(),
                  "quantization config has no \"method\" string: ", j.dump());
  QuantMethodConfig c = defaults(parse_method(j.at("method").get<std::string>()));
  const std::vector<std::string> keys = [&] {
    std::vector<std::string> k{"method"};
    const nlohmann::json defaults = c.to_json();
    for (const auto& [key, v] : defaults.items())
      if (key != "method") k.push_back(key);
    if (c.gptq()) k.push_back("budget_bpw");
    return k;
  }();
  for (const auto& [key, v] : j.items())
    QS_THROW_IF_NOT(std::find(keys.begin(), keys.end(), key) != keys.end(),
                    "quantization config: '", key, "' does not apply to method '", c.info().name,
                    "'");
  std::visit(
      [&](auto& o) {
        if constexpr (requires { o.bits; }) {
          read_int(j, "bits", o.bits);
          read_int(j, "group_size", o.group_size);
          read_bool(j, "sym", o.sym);
        }
        if constexpr (requires { o.budget; }) {
          if (j.contains("budget")) {
            QS_THROW_IF_NOT(j.at("budget").is_string(), "quantization config: 'budget' must be ",
                            "a llama.cpp mix name such as q3_k_m, got ", j.at("budget").dump());
            o.budget = j.at("budget").get<std::string>();
          }
          read_double(j, "budget_bpw", o.budget_bpw);
        }
        if constexpr (requires { o.desc_act; }) {
          read_bool(j, "desc_act", o.desc_act);
          read_bool(j, "static_groups", o.static_groups);
          read_bool(j, "true_sequential", o.true_sequential);
          read_double(j, "damp_percent", o.damp_percent);
          read_int(j, "block_size", o.block_size);
          read_double(j, "budget_bpw", o.budget_bpw);
        }
      },
      c.options);
  return c;
}

std::optional<ConfigProblem> QuantMethodConfig::problem(bool for_export) const {
  if (family() == MethodFamily::KQuantMix) return std::nullopt;
  if (const auto* m = auto_mix()) {
    if (m->budget.empty() == (m->budget_bpw == 0))
      return ConfigProblem{"",
                           "auto_mix needs exactly one of 'budget: <llama.cpp mix such as "
                           "q3_k_m>' and 'budget_bpw: <bits per weight>'"};
    if (!m->budget.empty() && !kquants::mix_from_name(m->budget))
      return ConfigProblem{"budget", cat("budget '", m->budget,
                                         "' is not a llama.cpp mix (use q2_k, q3_k_s, q3_k_m, "
                                         "q3_k_l, q4_0, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, "
                                         "q8_0)")};
    if (m->budget.empty() && !(m->budget_bpw >= 2 && m->budget_bpw <= 16))
      return ConfigProblem{"budget_bpw", cat("budget_bpw ", m->budget_bpw,
                                             " is out of range: use 2 to 16 bits per weight")};
    return std::nullopt;
  }
  const int b = bits(), gs = group_size();
  if (b < 2 || b > 8) return ConfigProblem{"bits", cat("bits ", b, " is out of range: use 2 to 8")};
  if (!(gs == -1 || gs >= 1))
    return ConfigProblem{
        "group_size", cat("group_size ", gs,
                          " is invalid: use -1 (per output channel) or a positive column count")};
  if (const auto* g = gptq()) {
    if (!(g->damp_percent > 0 && g->damp_percent <= 1))
      return ConfigProblem{"damp_percent",
                           cat("damp_percent ", g->damp_percent, " must be in (0, 1]")};
    if (g->block_size < 1) return ConfigProblem{"block_size", "block_size must be >= 1"};
    if (g->budget_bpw != 0 && !(g->budget_bpw >= 2 && g->budget_bpw <= 16))
      return ConfigProblem{"budget_bpw",
                           cat("budget_bpw ", g->budget_bpw,
                               " is out of range: use 2 to 16 bits per weight (0: every linear "
                               "at 'bits')")};
  }
  if (for_export && info().layout == CheckpointLayout::AwqGemmSafetensors) {
    if (b != 4)
      return ConfigProblem{
          "bits", cat("method '", info().name,
                      "' writes AutoAWQ gemm checkpoints, which hold 4-bit codes only (got bits ",
                      b, "); use gptq or rtn for other widths")};
    if (sym())
      return ConfigProblem{"sym", cat("method '", info().name,
                                      "' writes AutoAWQ gemm checkpoints, which store a zero "
                                      "point: use sym: false")};
  }
  return std::nullopt;
}

void QuantMethodConfig::validate(bool for_export) const {
  QS_THROW_IF_NOT(method_info(method).family != MethodFamily::KQuantMix ||
                      std::holds_alternative<MixOptions>(options),
                  "quantization config: method '", info().name, "' takes no options");
  if (auto p = problem(for_export)) throw Error(p->message);
}

std::string QuantMethodConfig::label() const {
  if (family() == MethodFamily::KQuantMix) return info().display;
  if (const auto* m = auto_mix())
    return m->budget.empty() ? cat("auto mix ", number_text(m->budget_bpw), " bpw")
                             : cat("auto mix @", m->budget);
  const int gs = group_size();
  const GptqOptions* budgeted = gptq() && gptq()->budget_bpw > 0 ? gptq() : nullptr;
  std::string s =
      cat(info().display, " ",
          budgeted ? cat("mixed ", number_text(budgeted->budget_bpw), " bpw") : cat(bits(), "-bit"),
          " ", gs > 0 ? cat("g", gs) : "per-channel");
  if (sym()) s += " sym";
  if (const auto* g = gptq()) {
    if (g->desc_act) s += " act-order";
    if (g->static_groups) s += " static";
    if (!g->true_sequential) s += " non-seq";
  }
  return s;
}

std::string QuantMethodConfig::id() const {
  if (family() == MethodFamily::KQuantMix) return info().name;
  if (const auto* m = auto_mix())
    return m->budget.empty() ? cat("auto_mix-bpw", number_text(m->budget_bpw))
                             : cat("auto_mix-", m->budget);
  const int gs = group_size();
  const GptqOptions* budgeted = gptq() && gptq()->budget_bpw > 0 ? gptq() : nullptr;
  std::string id = cat(
      info().name, budgeted ? cat("-bpw", number_text(budgeted->budget_bpw)) : cat("-b", bits()),
      "-g", gs == -1 ? std::string("ch") : std::to_string(gs));
  if (sym()) id += "-sym";
  if (const auto* g = gptq()) {
    if (g->desc_act) id += "-act";
    if (g->static_groups) id += "-static";
    if (!g->true_sequential) id += "-nts";
    if (g->damp_percent != GptqOptions{}.damp_percent) id += "-damp" + number_text(g->damp_percent);
  }
  return id;
}

}  // namespace qsweep
