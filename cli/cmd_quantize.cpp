#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "backends/backend.h"
#include "calibration/calibration.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/data_dir.h"
#include "common/errors.h"
#include "formats/formats.h"
#include "model/memory_estimate.h"
#include "model/tokenizer.h"
#include "quantize/export.h"
#include "quantize/kquant_mix.h"
#include "quantize/quantize.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep::cli {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The method options come from quantize/method.h's table: every option key some method
// accepts (plus GPTQ's block_size) becomes a flag spelt with '-'; a boolean whose default is
// true is turned off by --no-<flag>. Types and defaults are read from the methods' own
// default configurations, so the flags cannot drift from what the methods take.
struct MethodFlag {
  std::string key;   ///< config JSON key: "group_size"
  std::string flag;  ///< "group-size", "no-true-sequential"
  nlohmann::json fallback;
  std::vector<std::string> methods;  ///< methods that take it
};

const std::vector<MethodFlag>& method_flags() {
  static const std::vector<MethodFlag> flags = [] {
    std::vector<MethodFlag> out;
    for (const MethodInfo& m : all_methods()) {
      const nlohmann::json d = QuantMethodConfig::defaults(m.method).to_json();
      for (const auto& [key, value] : d.items()) {
        if (key == "method") continue;
        auto it = std::find_if(out.begin(), out.end(), [&](auto& f) { return f.key == key; });
        if (it == out.end()) {
          std::string flag = flag_name(key);
          if (value.is_boolean() && value.get<bool>()) flag = "no-" + flag;
          out.push_back({key, flag, value, {}});
          it = out.end() - 1;
        }
        it->methods.push_back(m.name);
      }
    }
    // Options written only when set (GPTQ's budget_bpw) are named in the table's keys.
    for (const MethodInfo& m : all_methods())
      for (const std::string& key : m.keys) {
        auto it = std::find_if(out.begin(), out.end(), [&](auto& f) { return f.key == key; });
        if (it != out.end() && std::count(it->methods.begin(), it->methods.end(), m.name) == 0)
          it->methods.push_back(m.name);
      }
    return out;
  }();
  return flags;
}

const std::map<std::string, std::string>& method_flag_help() {
  static const std::map<std::string, std::string> help = {
      {"bits", "width of the integer grid, 2..8"},
      {"group_size", "columns per scale/zero group; -1 = one group per output channel"},
      {"sym", "symmetric grid (no zero point)"},
      {"desc_act", "act-order: quantize columns by descending Hessian diagonal"},
      {"static_groups", "compute every group's grid before GPTQ updates the weights"},
      {"true_sequential", "quantize q/k/v, o, gate/up, down as one group each, not in order"},
      {"damp_percent", "Hessian damping as a fraction of its mean diagonal"},
      {"block_size", "columns per lazy-batch block"},
      {"budget", "auto_mix: at most the size of this llama.cpp mix (q3_k_m, ...)"},
      {"budget_bpw",
       "auto_mix: at most this many bits per weight over the weight tensors; gptq: bits chosen "
       "per linear (2/3/4/8) for at most this many bits per weight over the linears"},
  };
  return help;
}

/// The method and its options from the flags; a flag the method does not take is an Error.
QuantMethodConfig config_from_args(const Args& args) {
  const Method method = parse_method(args.get("method"));
  const MethodInfo& info = method_info(method);
  nlohmann::json j = QuantMethodConfig::defaults(method).to_json();
  for (const MethodFlag& f : method_flags()) {
    if (!args.has(f.flag)) continue;
    const bool takes = j.contains(f.key) || std::count(info.keys.begin(), info.keys.end(), f.key);
    QS_THROW_IF_NOT(takes, "--", f.flag, " does not apply to method ", info.name,
                    info.family == MethodFamily::KQuantMix
                        ? " (a llama.cpp mix: its rules choose every tensor's type)"
                        : cat(" (methods taking it: ", join(f.methods), ")"));
    if (f.fallback.is_boolean())
      j[f.key] = !f.fallback.get<bool>();
    else if (f.fallback.is_number_integer())
      j[f.key] = int(args.get_int(f.flag));
    else if (f.fallback.is_string())
      j[f.key] = args.get(f.flag);
    else
      j[f.key] = args.get_double(f.flag);
  }
  QuantMethodConfig config = QuantMethodConfig::from_json(j);
  config.validate();
  return config;
}

/// The short name `qsweep quantize` prints: "gptq-4b-g128-asym-descact".
std::string short_label(const QuantMethodConfig& c) {
  std::string s =
      cat(c.info().name, "-", c.bits(), "b-", c.group_size() > 0 ? cat("g", c.group_size()) : "gch",
          c.sym() ? "-sym" : "-asym");
  if (const GptqOptions* g = c.gptq()) {
    if (g->desc_act) s += "-descact";
    if (g->static_groups) s += "-static";
  }
  return s;
}

/// --method f32|f16|bf16: the unquantized GGUF, llama.cpp's convert_hf_to_gguf.py --outtype
/// step (2-D tensors in that type, norms and rope_freqs F32). Not quantization methods, so not
/// rows of quantize/method.h's table: a sweep has nothing to quantize, calibrate or compare
/// for them (its baseline is the checkpoint itself).
std::optional<int32_t> float_gguf_type(const std::string& method) {
  namespace gt = kquants::ggml_type;
  if (method == "f32") return gt::F32;
  if (method == "f16") return gt::F16;
  if (method == "bf16") return gt::BF16;
  return std::nullopt;
}

int write_float_gguf(const Args& args, int32_t type) {
  const std::string method = args.get("method");
  for (const MethodFlag& f : method_flags())
    QS_THROW_IF_NOT(!args.has(f.flag), "--", f.flag, " does not apply to method ", method,
                    " (an unquantized GGUF)");
  for (const char* flag : {"calib", "calib-domain", "n-samples", "seqlen", "seed", "sampling"})
    QS_THROW_IF_NOT(!args.has(flag), "--", flag, " does not apply to method ", method,
                    " (an unquantized GGUF uses no calibration data)");
  const std::string out = args.require("out");
  QS_THROW_IF_NOT(out.ends_with(".gguf"), "--out ", out, ": method ", method,
                  " writes a GGUF file; name it FILE.gguf");
  const std::string model_dir = resolve_model_dir(args.require("model"), args.get("data-dir"));
  const auto t0 = Clock::now();
  const LoadedModel loaded = load_model(model_dir);
  QS_THROW_IF_NOT(loaded.format == "hf", model_dir, " is already quantized (", loaded.description,
                  "); convert the original checkpoint");
  GgufTypePlan plan;
  plan.weights = type;
  write_gguf(out, loaded.spec, loaded.weights, model_dir, plan);
  const double secs = since(t0);
  const auto bytes = int64_t(std::filesystem::file_size(out));
  if (args.has("json")) {
    nlohmann::json j;
    j["out"] = out;
    j["method"] = method;
    j["file_bytes"] = bytes;
    j["seconds"] = secs;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("wrote %s: unquantized GGUF (%s weights), %.2f MB, %.2fs\n", out.c_str(),
                method.c_str(), double(bytes) / 1e6, secs);
  }
  return 0;
}

}  // namespace

const CommandSpec& quantize_command() {
  static const CommandSpec cmd = [] {
    CommandSpec c;
    c.name = "quantize";
    c.usage = "qsweep quantize --model MODEL --method METHOD [options] --out DIR|FILE.gguf";
    c.summary =
        "Quantizes an unquantized Hugging Face checkpoint with one method and writes it as the\n"
        "peers do: GPTQ layout (gptq, rtn), AutoAWQ gemm layout (awq), or a GGUF file\n"
        "(llama.cpp mixes, with an importance matrix when --calib is given).";
    c.options = {{"model", "MODEL", "", "the checkpoint to quantize (required)"},
                 {"method", "METHOD", "gptq",
                  "one of " + method_names_text() + "; or f32, f16, bf16: the unquantized GGUF"},
                 {"out", "PATH", "",
                  "output directory, or .gguf file for a mix / f32 / f16 / "
                  "bf16 (required)"}};
    const SamplingOptions so;
    for (const MethodFlag& f : method_flags()) {
      const bool sw = f.fallback.is_boolean();
      const bool text = f.fallback.is_string();
      c.options.push_back({f.flag,
                           sw     ? ""
                           : text ? "MIX"
                                  : (f.fallback.is_number_integer() ? "N" : "F"),
                           sw || text ? "" : f.fallback.dump(),
                           method_flag_help().at(f.key) + " [" + join(f.methods) + "]"});
    }
    c.options.insert(
        c.options.end(),
        {{"calib", "SOURCE", "wikitext2",
          "calibration text: wikitext2, code, docs, a file, FILE.jsonl:FIELD or a glob "
          "(GPTQ/AWQ; a mix's importance matrix)"},
         {"calib-domain", "D", "", "domain label of the calibration source"},
         {"n-samples", "N", std::to_string(so.n_samples), "calibration windows"},
         {"seqlen", "N", std::to_string(so.seqlen), "tokens per calibration window"},
         {"seed", "N", std::to_string(so.seed), "window sampling seed"},
         {"sampling", "random|contiguous", "random", "how windows are drawn"},
         {"data-dir", "DIR", "", "where datasets live (else $QSWEEP_DATA, else ../shared/data)"},
         {"device", "auto|cpu|cuda", "auto",
          "where GPTQ's column loop and AWQ's scale/clip searches run (auto: a usable CUDA "
          "device, else the CPU); the other methods and the calibration passes run on the CPU"},
         threads_option(),
         {"max-memory", "GiB", "", "refuse up front when the estimated peak memory exceeds this"},
         {"json", "", "", "machine-readable summary"},
         {"quiet", "", "", "no progress on stderr"}});
    return c;
  }();
  return cmd;
}

int cmd_quantize(const std::vector<std::string>& argv) {
  const Args args(argv, quantize_command());
  apply_threads(args);
  QS_THROW_IF_NOT(args.positional().empty(), "qsweep quantize: unexpected argument '",
                  args.positional()[0], "'");
  if (const auto type = float_gguf_type(args.get("method"))) return write_float_gguf(args, *type);
  const QuantMethodConfig cfg = config_from_args(args);
  const MethodInfo& info = cfg.info();
  const bool is_mix = info.family == MethodFamily::KQuantMix;
  // GPTQ and AWQ need calibration data; a mix uses it, when given, as its importance matrix.
  const bool calibrated = info.calibration == CalibrationUse::Required ||
                          (info.calibration == CalibrationUse::Optional && args.has("calib"));
  QS_THROW_IF_NOT(calibrated || !args.has("calib"),
                  "--calib is for GPTQ, AWQ and the K-quant "
                  "mixes; ",
                  info.name, " uses no calibration data");
  // Resolved before any loading, so that --device cuda without a usable GPU fails at once.
  const std::string device = args.get("device");
  std::unique_ptr<Backend> backend = make_backend(device);
  if (backend->name() != "cpu" && info.family != MethodFamily::Gptq &&
      info.family != MethodFamily::Awq) {
    QS_THROW_IF_NOT(device == "auto", "--device cuda: --method ", info.name,
                    " runs on the CPU only so far (GPTQ and AWQ run on CUDA); use --device cpu "
                    "or auto");
    backend = make_backend("cpu");
  }
  QuantRunOptions run;
  run.backend = backend.get();
  const std::string out_dir = args.require("out");
  const std::string data_flag = args.get("data-dir");
  const std::string model_dir = resolve_model_dir(args.require("model"), data_flag);
  const bool quiet = args.has("quiet");

  const auto t0 = Clock::now();
  LoadedModel loaded = load_model(model_dir);
  QS_THROW_IF_NOT(loaded.format == "hf", model_dir, " is already quantized (", loaded.description,
                  "); quantize the original checkpoint");
  const Transformer model(loaded.spec, std::move(loaded.weights));
  const double load_s = since(t0);
  if (const int64_t budget = max_memory_bytes(args)) {
    const int64_t seqlen = calibrated ? args.get_int("seqlen") : 0;
    const int64_t samples = calibrated ? args.get_int("n-samples") : 0;
    const int64_t batch = std::min<int64_t>(samples, run.batch_windows) * seqlen;
    check_memory_budget(estimate_peak_memory(model.spec(), {mapped_model_bytes(model_dir), batch,
                                                            seqlen, samples * seqlen}),
                        budget, cat("qsweep quantize ", model_dir),
                        "lower --n-samples or --seqlen, or use a smaller model");
  }

  CalibrationSet calib;
  double calib_s = 0;
  if (calibrated) {
    const auto t1 = Clock::now();
    SamplingOptions so;
    so.n_samples = int(args.get_int("n-samples"));
    so.seqlen = int(args.get_int("seqlen"));
    so.seed = uint64_t(args.get_int("seed"));
    const std::string mode = args.get("sampling");
    QS_THROW_IF_NOT(mode == "random" || mode == "contiguous", "--sampling ", mode,
                    ": expected random or contiguous");
    so.mode = mode == "random" ? SamplingMode::Random : SamplingMode::Contiguous;
    if (so.seqlen > loaded.spec.max_position_embeddings)
      std::fprintf(stderr, "warning: --seqlen %d exceeds the model's context %d\n", so.seqlen,
                   loaded.spec.max_position_embeddings);
    const auto tok = load_tokenizer(model_dir);
    calib = build_calibration_set(args.get("calib"), resolve_data_dir(data_flag), *tok, so,
                                  args.get("calib-domain"));
    calib_s = since(t1);
    if (!quiet)
      std::fprintf(stderr, "calibration: %s (%s), %d x %d tokens, seed %llu, %.2fs\n",
                   calib.source.c_str(), calib.domain.c_str(), so.n_samples, so.seqlen,
                   (unsigned long long)so.seed, calib_s);
  }

  const auto t2 = Clock::now();
  const QuantizedModel qm = quantize_model(
      model, cfg, calibrated ? &calib : nullptr,
      [&](int done, int total, const std::string& msg) {
        if (!quiet && !is_mix)
          std::fprintf(stderr, "quantize: layer %d/%d done (%s, %.1fs elapsed)\n", done, total,
                       msg.c_str(), since(t2));
      },
      run);
  const double quant_s = since(t2);
  const auto t3 = Clock::now();
  const ExportSummary ex = write_quantized(qm, model_dir, out_dir);
  const double export_s = since(t3);

  if (is_mix) {
    // llama-imatrix + llama-quantize in one step: the output is a GGUF file.
    if (args.has("json")) {
      nlohmann::json j;
      j["out"] = out_dir;
      j["mix"] = info.display;
      j["imatrix"] = calibrated ? nlohmann::json(calib.source) : nlohmann::json();
      j["linear_bits_per_weight"] = ex.linear_bits_per_weight;
      j["file_bits_per_weight"] = *ex.file_bits_per_weight;
      j["file_bytes"] = ex.file_bytes;
      j["seconds"] = {{"load", load_s}, {"calibration", calib_s}, {"quantize", quant_s + export_s}};
      j["tensors"] = ex.records;
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf("wrote %s: %s%s, %.3f bits/weight on the linears, %.3f over the file, %.2f MB\n",
                  out_dir.c_str(), info.display.c_str(),
                  calibrated ? cat(" imatrix(", calib.source, ")").c_str() : "",
                  ex.linear_bits_per_weight, *ex.file_bits_per_weight, double(ex.file_bytes) / 1e6);
      std::printf("time: load %.2fs, calibration %.2fs, quantize+write %.2fs\n", load_s, calib_s,
                  quant_s + export_s);
    }
    return 0;
  }

  if (args.has("json")) {
    nlohmann::json j;
    j["out"] = out_dir;
    j["config"] = short_label(cfg);
    j["device"] = backend->name();
    j["linear_bits_per_weight"] = ex.linear_bits_per_weight;
    j["model_bytes"] = qm.model_bytes();
    j["seconds"] = {
        {"load", load_s}, {"calibration", calib_s}, {"quantize", quant_s}, {"export", export_s}};
    for (const auto& l : qm.linears)
      j["linears"].push_back({{"name", hf_linear_name(l.layer, l.role)},
                              {"loss", l.loss},
                              {"damp_percent", l.damp_percent},
                              {"seconds", l.seconds}});
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("wrote %s: %s, %.3f bits/weight on the linears, %.2f MB\n", out_dir.c_str(),
                short_label(cfg).c_str(), ex.linear_bits_per_weight,
                double(qm.model_bytes()) / 1e6);
    std::printf("time: load %.2fs, calibration %.2fs, quantize %.2fs, export %.2fs\n", load_s,
                calib_s, quant_s, export_s);
  }
  return 0;
}

}  // namespace qsweep::cli
