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
#include "formats/gguf.h"
#include "model/tokenizer.h"
#include "quantize/quantize.h"

namespace qsweep::cli {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
}  // namespace

int cmd_quantize(const std::vector<std::string>& argv) {
  Args args(argv,
            {"model", "method", "bits", "group-size", "calib", "calib-domain", "n-samples",
             "seqlen", "seed", "sampling", "damp-percent", "block-size", "out", "data-dir"},
            {"desc-act", "sym", "static-groups", "no-true-sequential", "json", "quiet"});
  QS_THROW_IF_NOT(args.positional().empty(), "qsweep quantize: unexpected argument '",
                  args.positional()[0], "'");
  const std::string method = args.get("method", "gptq");
  const std::optional<kquants::Mix> mix = kquants::mix_from_name(method);
  ModelQuantConfig cfg;
  cfg.method = mix ? "rtn" : method;  // a mix has its own rules; cfg is then unused
  cfg.bits = int(args.get_int("bits", 4));
  cfg.group_size = int(args.get_int("group-size", 128));
  cfg.sym = args.has("sym");
  cfg.desc_act = args.has("desc-act");
  cfg.static_groups = args.has("static-groups");
  cfg.true_sequential = !args.has("no-true-sequential");
  cfg.damp_percent = std::stod(args.get("damp-percent", "0.01"));
  cfg.block_size = int(args.get_int("block-size", 128));
  if (mix)
    for (const char* k : {"bits", "group-size", "sym", "desc-act", "static-groups",
                          "no-true-sequential", "damp-percent", "block-size"})
      QS_THROW_IF_NOT(!args.has(k), "--", k, " does not apply to llama.cpp mix ", method,
                      " (its rules choose every tensor's type)");
  cfg.validate();
  // GPTQ and AWQ need calibration data; a mix uses it, when given, as its importance matrix.
  const bool calibrated = cfg.method == "gptq" || cfg.method == "awq" || (mix && args.has("calib"));
  QS_THROW_IF_NOT(calibrated || !args.has("calib"),
                  "--calib is for GPTQ, AWQ and the K-quant "
                  "mixes; ",
                  cfg.method, " uses no calibration data");
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

  if (mix) {
    // llama-imatrix + llama-quantize in one step: the output is a GGUF file.
    const auto t2 = Clock::now();
    std::optional<std::map<std::pair<int, LinearRole>, std::vector<float>>> imatrix;
    if (calibrated) imatrix = importance_matrix(model, calib);
    const GgufMixSummary g = write_gguf_mix(out_dir, model.spec(), model.weights(), model_dir, *mix,
                                            imatrix ? &*imatrix : nullptr);
    const double quant_s = since(t2);
    if (args.has("json")) {
      nlohmann::json j;
      j["out"] = out_dir;
      j["mix"] = kquants::mix_name(*mix);
      j["imatrix"] = calibrated ? nlohmann::json(calib.source) : nlohmann::json();
      j["linear_bits_per_weight"] = g.linear_bits_per_weight;
      j["file_bits_per_weight"] = g.file_bits_per_weight;
      j["file_bytes"] = g.file_bytes;
      j["seconds"] = {{"load", load_s}, {"calibration", calib_s}, {"quantize", quant_s}};
      for (const auto& c : g.choices)
        j["tensors"].push_back(
            {{"name", c.name},
             {"type", kquants::traits(*kquants::type_from_ggml(c.ggml_type)).name},
             {"rule", c.rule}});
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf("wrote %s: %s%s, %.3f bits/weight on the linears, %.3f over the file, %.2f MB\n",
                  out_dir.c_str(), kquants::mix_name(*mix),
                  calibrated ? cat(" imatrix(", calib.source, ")").c_str() : "",
                  g.linear_bits_per_weight, g.file_bits_per_weight, double(g.file_bytes) / 1e6);
      std::printf("time: load %.2fs, calibration %.2fs, quantize+write %.2fs\n", load_s, calib_s,
                  quant_s);
    }
    return 0;
  }

  const auto t2 = Clock::now();
  const QuantizedModel qm = quantize_model(
      model, cfg, calibrated ? &calib : nullptr, [&](int done, int total, const std::string& msg) {
        if (!quiet)
          std::fprintf(stderr, "quantize: layer %d/%d done (%s, %.1fs elapsed)\n", done, total,
                       msg.c_str(), since(t2));
      });
  const double quant_s = since(t2);
  const auto t3 = Clock::now();
  if (cfg.method == "awq")
    export_awq(qm, model_dir, out_dir);
  else
    export_gptq(qm, model_dir, out_dir);
  const double export_s = since(t3);

  if (args.has("json")) {
    nlohmann::json j;
    j["out"] = out_dir;
    j["config"] = cfg.label();
    j["linear_bits_per_weight"] = qm.linear_bits_per_weight();
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
                cfg.label().c_str(), qm.linear_bits_per_weight(), double(qm.model_bytes()) / 1e6);
    std::printf("time: load %.2fs, calibration %.2fs, quantize %.2fs, export %.2fs\n", load_s,
                calib_s, quant_s, export_s);
  }
  return 0;
}

}  // namespace qsweep::cli
