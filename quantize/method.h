// Quantization methods as data: one table row per method (name as written in YAML and on the
// command line, display name, family, calibration use, the variant options it accepts, the
// nominal width of a llama.cpp mix, the checkpoint layout it is written in), and one typed
// configuration per method (QuantMethodConfig). Method names are compared as strings here and
// nowhere else: every other stage switches on the enum or reads the table.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "quantizers/kquants/mixes.h"

namespace qsweep {

class Backend;  // backends/backend.h

enum class Method {
  Rtn,
  Gptq,
  Awq,
  Q2_K,
  Q3_K_S,
  Q3_K_M,
  Q3_K_L,
  Q4_0,
  Q4_K_S,
  Q4_K_M,
  Q5_K_S,
  Q5_K_M,
  Q6_K,
  Q8_0,
  AutoMix,
};
inline constexpr int kMethodCount = 15;

/// How a method quantizes (what quantize_model dispatches on).
/// AutoMix: a GGUF type per tensor group chosen from a measured sensitivity table under a
/// byte budget (quantize/auto_mix.h).
enum class MethodFamily { Rtn, Gptq, Awq, KQuantMix, AutoMix };
/// Whether a method takes a calibration set: never, always, or optionally (a mix's imatrix).
enum class CalibrationUse { None, Required, Optional };
/// The checkpoint layout a method's result is written in (quantize/export.h).
enum class CheckpointLayout { GptqSafetensors, AwqGemmSafetensors, Gguf };

struct MethodInfo {
  Method method;
  std::string name;     ///< as written in YAML / on the command line: "gptq", "q4_k_m"
  std::string display;  ///< as shown in reports: "GPTQ", "Q4_K_M"
  MethodFamily family;
  CalibrationUse calibration;
  /// The variant options it accepts besides `method` (YAML keys; "calibration" included).
  std::vector<std::string> keys;
  int nominal_bits = 0;  ///< a mix's default width (q3_k_m → 3); 0 for the others
  CheckpointLayout layout;
  std::optional<kquants::Mix> mix;  ///< the llama.cpp mix (KQuantMix family only)
};

/// The method named `name` exactly as in the table ("gptq", "q4_k_m"); nullopt when unknown.
std::optional<Method> method_from_name(std::string_view name);
const MethodInfo& method_info(Method m);
/// Every row, in enum order.
const std::vector<MethodInfo>& all_methods();
/// Every method name, in table order (for messages).
std::vector<std::string> method_names();
/// "rtn, gptq, awq, q2_k, ..., q8_0".
std::string method_names_text();
/// method_from_name or Error "unknown method 'f16' (methods: rtn, gptq, ..., q8_0)".
Method parse_method(std::string_view name);

/// Options of each family. Defaults are the sweep file's defaults.
struct RtnOptions {
  int bits = 4;
  int group_size = 128;  ///< -1 = one group per output channel
  bool sym = false;
  bool operator==(const RtnOptions&) const = default;
};
struct GptqOptions {
  int bits = 4;
  int group_size = 128;
  bool sym = false;
  bool desc_act = false;
  bool static_groups = false;
  bool true_sequential = true;
  double damp_percent = 0.01;
  int block_size = 128;
  /// > 0: the width is chosen per linear among 2/3/4/8 bits so that the GPTQ layout's bits
  /// per weight over the linears (scales, zeros, g_idx included) are at most this
  /// (quantize/gptq_budget.h); `bits` is then unused. 0: every linear at `bits`.
  double budget_bpw = 0;
  bool operator==(const GptqOptions&) const = default;
};
struct AwqOptions {
  int bits = 4;
  int group_size = 128;
  bool sym = false;
  bool operator==(const AwqOptions&) const = default;
};
/// A llama.cpp mix has no options: the mix is the Method.
struct MixOptions {
  bool operator==(const MixOptions&) const = default;
};

/// auto_mix: exactly one of `budget` (a llama.cpp mix whose size for this model is the byte
/// budget of the 2-D weight tensors) and `budget_bpw` (bits per weight over those tensors).
struct AutoMixOptions {
  std::string budget;     ///< "q3_k_m"; empty when budget_bpw is given
  double budget_bpw = 0;  ///< 0 when budget is given
  bool operator==(const AutoMixOptions&) const = default;
};

/// A problem with a configuration: the option it concerns ("" = the method) and the message.
struct ConfigProblem {
  std::string key;
  std::string message;
};

/// One variant's quantization: the method and its typed options (results depend on all of it).
struct QuantMethodConfig {
  Method method = Method::Gptq;
  std::variant<RtnOptions, GptqOptions, AwqOptions, MixOptions, AutoMixOptions> options =
      GptqOptions{};

  /// The method with its default options.
  static QuantMethodConfig defaults(Method m);
  const MethodInfo& info() const { return method_info(method); }
  MethodFamily family() const { return info().family; }

  const RtnOptions* rtn() const { return std::get_if<RtnOptions>(&options); }
  const GptqOptions* gptq() const { return std::get_if<GptqOptions>(&options); }
  const AwqOptions* awq() const { return std::get_if<AwqOptions>(&options); }
  const AutoMixOptions* auto_mix() const { return std::get_if<AutoMixOptions>(&options); }
  /// The integer grid's width; a mix's nominal width.
  int bits() const;
  /// Columns per group (-1 per output channel); 0 for a mix (no single group size).
  int group_size() const;
  bool sym() const;  ///< false for a mix

  /// {"method": name, every option of the method}; from_json reads it back (missing options
  /// take their defaults; unknown keys, wrong types and unknown methods throw Error).
  nlohmann::json to_json() const;
  static QuantMethodConfig from_json(const nlohmann::json& j);

  /// The first problem, or nullopt. `for_export` adds the restrictions of the checkpoint
  /// layout (AWQ gemm: 4-bit, asymmetric).
  std::optional<ConfigProblem> problem(bool for_export = true) const;
  /// Throws Error with problem()'s message.
  void validate(bool for_export = true) const;

  /// "GPTQ 4-bit g128 act-order", "RTN 3-bit per-channel sym", "Q4_K_M" (reports show it).
  std::string label() const;
  /// "gptq-b4-g128-act", "rtn-b3-gch-sym", "q4_k_m" (the variant id without calibration).
  std::string id() const;

  bool operator==(const QuantMethodConfig&) const = default;
};

/// Knobs that change memory or speed, never results.
struct QuantRunOptions {
  int batch_windows = 16;  ///< calibration windows per forward batch
  /// Where GPTQ's column loop and AWQ's searches run (Backend::gptq_columns, the AWQ ops);
  /// nullptr: the CPU (AWQ: the source model's backend). Not part of a
  /// method's identity: results agree across backends up to fp32 rounding.
  Backend* backend = nullptr;
  /// GPTQ and AWQ hold the calibration windows' hidden states between layers in fp16
  /// (quantize/layer_inputs.h). true: in fp32 — the one knob here that changes results (at the
  /// fp16 rounding level of those inputs); it exists to measure that (bench/quantize/
  /// measure_layer_inputs), not for sweeps.
  bool fp32_layer_inputs = false;
};

}  // namespace qsweep
