#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "calibration/calibration.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/data_dir.h"
#include "common/errors.h"
#include "formats/formats.h"
#include "model/tokenizer.h"
#include "quantize/export.h"
#include "quantize/quantize.h"

namespace qsweep::cli {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

/// Command-line flags of the method options (config JSON key → flag).
const std::vector<std::pair<std::string, std::string>>& option_flags() {
  static const std::vector<std::pair<std::string, std::string>> f = {
      {"bits", "bits"},
      {"group_size", "group-size"},
      {"sym", "sym"},
      {"desc_act", "desc-act"},
      {"static_groups", "static-groups"},
      {"true_sequential", "no-true-sequential"},
      {"damp_percent", "damp-percent"},
      {"block_size", "block-size"}};
  return f;
}

/// The method and its options from the flags; a flag the method does not take is an Error.
QuantMethodConfig config_from_args(const Args& args) {
  const Method method = parse_method(args.get("method", "gptq"));
  const MethodInfo& info = method_info(method);
  nlohmann::json j = QuantMethodConfig::defaults(method).to_json();
  for (const auto& [key, flag] : option_flags()) {
    if (!args.has(flag)) continue;
    QS_THROW_IF_NOT(j.contains(key), "--", flag, " does not apply to method ", info.name,
                    info.family == MethodFamily::KQuantMix
                        ? " (a llama.cpp mix: its rules choose every tensor's type)"
                        : "");
    if (key == "bits" || key == "group_size" || key == "block_size")
      j[key] = int(args.get_int(flag, 0));
    else if (key == "damp_percent")
      j[key] = std::stod(args.get(flag));
    else if (key == "true_sequential")
      j[key] = false;
    else
      j[key] = true;
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

}  // namespace

int cmd_quantize(const std::vector<std::string>& argv) {
  Args args(argv,
            {"model", "method", "bits", "group-size", "calib", "calib-domain", "n-samples",
             "seqlen", "seed", "sampling", "damp-percent", "block-size", "out", "data-dir"},
            {"desc-act", "sym", "static-groups", "no-true-sequential", "json", "quiet"});
  QS_THROW_IF_NOT(args.positional().empty(), "qsweep quantize: unexpected argument '",
                  args.positional()[0], "'");
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

  CalibrationSet calib;
  double calib_s = 0;
  if (calibrated) {
    const auto t1 = Clock::now();
    SamplingOptions so;
    so.n_samples = int(args.get_int("n-samples", 128));
    so.seqlen = int(args.get_int("seqlen", 256));
    so.seed = uint64_t(args.get_int("seed", 0));
    const std::string mode = args.get("sampling", "random");
    QS_THROW_IF_NOT(mode == "random" || mode == "contiguous", "--sampling ", mode,
                    ": expected random or contiguous");
    so.mode = mode == "random" ? SamplingMode::Random : SamplingMode::Contiguous;
    if (so.seqlen > loaded.spec.max_position_embeddings)
      std::fprintf(stderr, "warning: --seqlen %d exceeds the model's context %d\n", so.seqlen,
                   loaded.spec.max_position_embeddings);
    const auto tok = load_tokenizer(model_dir);
    calib = build_calibration_set(args.get("calib", "wikitext2"), resolve_data_dir(data_flag), *tok,
                                  so, args.get("calib-domain"));
    calib_s = since(t1);
    if (!quiet)
      std::fprintf(stderr, "calibration: %s (%s), %d x %d tokens, seed %llu, %.2fs\n",
                   calib.source.c_str(), calib.domain.c_str(), so.n_samples, so.seqlen,
                   (unsigned long long)so.seed, calib_s);
  }

  const auto t2 = Clock::now();
  const QuantizedModel qm = quantize_model(
      model, cfg, calibrated ? &calib : nullptr, [&](int done, int total, const std::string& msg) {
        if (!quiet && !is_mix)
          std::fprintf(stderr, "quantize: layer %d/%d done (%s, %.1fs elapsed)\n", done, total,
                       msg.c_str(), since(t2));
      });
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
