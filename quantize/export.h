// One export entry point for the stages: a QuantizedModel goes to the checkpoint layout its
// method's table row names (quantize/method.h) — a GPTQ-layout directory, an AutoAWQ gemm
// directory, or a .gguf file — through formats/, which only serializes what it is given.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "quantize/quantize.h"

namespace qsweep {

struct ExportSummary {
  std::string path;  ///< what was written: the checkpoint directory or the .gguf file
  CheckpointLayout layout = CheckpointLayout::GptqSafetensors;
  /// Bytes of the model file: model.safetensors of a directory, or the .gguf file.
  int64_t file_bytes = 0;
  double linear_bits_per_weight = 0;  ///< over the decoder linears, as the layout stores them
  std::optional<double> file_bits_per_weight;  ///< GGUF: file bytes × 8 / parameters
  /// For meta.json: GGUF [{name, type, rule}] per 2-D tensor; else [{name, loss,
  /// damp_percent}] per linear.
  nlohmann::json records = nlohmann::json::array();
  double max_layer_loss = 0;  ///< the largest per-linear loss (0 for GGUF)
  /// GGUF: seconds of quantization done while writing (a mix's tensors are read, encoded and
  /// written in one stream); 0 for the other layouts, whose quantize_model did it all.
  double quantize_seconds = 0;
};

/// Where write_quantized should write a model of `config` kept in `dir`: `dir` itself for the
/// safetensors layouts, `dir`/model.gguf for GGUF.
std::string quantized_model_path(const QuantMethodConfig& config, const std::string& dir);

/// Writes `qm` in its method's layout at `out` (a directory, or a .gguf file), atomically.
/// `source_dir` is the HF checkpoint that was quantized (unquantized tensors, tokenizer).
/// Throws Error for a configuration the layout cannot hold (QuantMethodConfig::validate).
ExportSummary write_quantized(const QuantizedModel& qm, const std::string& source_dir,
                              const std::string& out);

}  // namespace qsweep
