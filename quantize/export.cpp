#include "quantize/export.h"

#include <chrono>
#include <filesystem>

#include "common/errors.h"
#include "formats/formats.h"
#include "formats/gguf.h"
#include "quantize/auto_mix.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kQuantizer = "qsweep 0.1.0";

/// The meta object both safetensors layouts carry: who wrote it, the config, calibration.
json common_meta(const QuantizedModel& qm) {
  json meta = {{"quantizer", kQuantizer},
               {"method", qm.config.info().name},
               {"config", qm.config.to_json()},
               {"linear_bits_per_weight", qm.linear_bits_per_weight()}};
  if (!qm.calibration_source.empty())
    meta["calibration"] = {{"source", qm.calibration_source},
                           {"domain", qm.calibration_domain},
                           {"n_samples", qm.calibration_options.n_samples},
                           {"seqlen", qm.calibration_options.seqlen},
                           {"seed", qm.calibration_options.seed}};
  return meta;
}

/// The GPTQ layout's quantization_config keys (HF readers need all of them); RTN has no GPTQ
/// options, so it writes GPTQ's defaults for those.
json gptq_layout_config(const QuantMethodConfig& c) {
  GptqOptions g;
  if (const auto* o = c.gptq()) g = *o;
  return {{"bits", c.bits()},
          {"group_size", c.group_size()},
          {"desc_act", g.desc_act},
          {"sym", c.sym()},
          {"static_groups", g.static_groups},
          {"true_sequential", g.true_sequential},
          {"damp_percent", g.damp_percent}};
}

QuantizedCheckpoint checkpoint_of(const QuantizedModel& qm) {
  QuantizedCheckpoint ck;
  for (const auto& l : qm.linears) ck.linears.push_back({l.layer, l.role, l.q.get()});
  return ck;
}

}  // namespace

std::string quantized_model_path(const QuantMethodConfig& config, const std::string& dir) {
  return config.info().layout == CheckpointLayout::Gguf ? dir + "/model.gguf" : dir;
}

ExportSummary write_quantized(const QuantizedModel& qm, const std::string& source_dir,
                              const std::string& out) {
  qm.config.validate();
  ExportSummary s;
  s.path = out;
  s.layout = qm.config.info().layout;
  s.linear_bits_per_weight = qm.linear_bits_per_weight();
  switch (s.layout) {
    case CheckpointLayout::Gguf: {
      QS_THROW_IF_NOT(qm.mix != nullptr, "write_quantized: ", qm.config.info().name,
                      " result has no encoded tensors");
      const KQuantMixResult& m = *qm.mix;
      const ModelSpec& spec = qm.model.spec();
      if (fs::path(out).has_parent_path()) fs::create_directories(fs::path(out).parent_path());
      const auto t0 = std::chrono::steady_clock::now();
      write_kquant_mix(out, spec, m, source_dir);
      s.quantize_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      s.file_bytes = int64_t(fs::file_size(out));
      s.file_bits_per_weight = 8.0 * double(s.file_bytes) / double(spec.parameter_count());
      for (const auto& c : m.choices)
        s.records.push_back(
            {{"name", c.name}, {"type", ggml_type_label(c.ggml_type)}, {"rule", c.rule}});
      return s;
    }
    case CheckpointLayout::GptqSafetensors: {
      QuantizedCheckpoint ck = checkpoint_of(qm);
      ck.quantization_config = gptq_layout_config(qm.config);
      ck.quantization_config["meta"] = common_meta(qm);
      export_gptq(ck, source_dir, out);
      break;
    }
    case CheckpointLayout::AwqGemmSafetensors: {
      QuantizedCheckpoint ck = checkpoint_of(qm);
      ck.folded = &qm.model.weights();
      ck.quantization_config = {{"bits", qm.config.bits()},
                                {"group_size", qm.config.group_size()},
                                {"zero_point", !qm.config.sym()}};
      ck.quantization_config["meta"] = common_meta(qm);
      export_awq(ck, source_dir, out);
      break;
    }
  }
  s.file_bytes = int64_t(fs::file_size(fs::path(out) / "model.safetensors"));
  for (const auto& l : qm.linears) {
    s.max_layer_loss = std::max(s.max_layer_loss, l.loss);
    s.records.push_back({{"name", hf_linear_name(l.layer, l.role)},
                         {"loss", l.loss},
                         {"damp_percent", l.damp_percent}});
  }
  return s;
}

}  // namespace qsweep
