// Checkpoint formats qsweep writes and reads back. What is evaluated is what a
// format stores: a quantized checkpoint is reloaded through these readers.
//
//  * Hugging Face GPTQ layout (AutoGPTQ / GPTQModel / transformers), v1
//    ("checkpoint_format": "gptq"): per quantized linear `<name>.qweight`
//    (int32 [in·bits/32, out], codes packed along the input dimension),
//    `.qzeros` (int32 [groups, out·bits/32], stored zero = true zero − 1),
//    `.scales` (fp16 [groups, out]) and `.g_idx` (int32 [in]); every other
//    tensor byte-for-byte as in the source checkpoint; config.json with a
//    `quantization_config`, and quantize_config.json. See docs/formats.md.
#pragma once

#include <string>
#include <vector>

#include "model/model_spec.h"
#include "model/weights.h"
#include "quantize/quantize.h"

namespace qsweep {

/// Writes `qm` in the GPTQ layout to `out_dir`. `source_dir` is the checkpoint
/// that was quantized: its unquantized tensors are copied as they were and its
/// tokenizer files beside them. The directory appears atomically (written to a
/// temporary sibling, then renamed); an existing `out_dir` is replaced.
void export_gptq(const QuantizedModel& qm, const std::string& source_dir,
                 const std::string& out_dir);

/// A model as loaded from disk, whatever its format.
struct LoadedModel {
  ModelSpec spec;
  ModelWeights weights;            ///< fp32; quantized linears dequantized
  std::string format;              ///< "hf" or "gptq"
  std::string description;         ///< e.g. "gptq 4-bit g128 asym desc_act"
  std::vector<QTensor> quantized;  ///< the stored QTensors, layer-major in role order
};

/// Loads a Hugging Face directory: plain fp32/fp16/bf16 or GPTQ layout (decided
/// by config.json's quantization_config). Throws Error for an unsupported
/// quant_method or a malformed quantized tensor, naming the file and tensor.
LoadedModel load_model(const std::string& dir);

}  // namespace qsweep
