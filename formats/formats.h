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

#include <nlohmann/json.hpp>

#include "model/model_spec.h"
#include "model/weights.h"
#include "quantizers/quantizers.h"

namespace qsweep {

/// One quantized linear to write: which one, and its codes/scales/zeros.
struct LinearQTensor {
  int layer = 0;
  LinearRole role = LinearRole::Q;
  const QTensor* q = nullptr;
};

/// What a quantized safetensors checkpoint holds besides the source's unquantized tensors.
struct QuantizedCheckpoint {
  std::vector<LinearQTensor> linears;
  /// AWQ: the float weights whose per-layer vectors were folded (input_layernorm,
  /// post_attention_layernorm, a v_proj bias); written from here as F32. Unused by GPTQ.
  const ModelWeights* folded = nullptr;
  /// config.json's `quantization_config`; the writer adds its layout's own keys
  /// (quant_method, checkpoint_format / version, meta.zero_point_convention, ...).
  nlohmann::json quantization_config = nlohmann::json::object();
};

/// Writes `ckpt` in the GPTQ layout (gptq_packing.h) to `out_dir`. `source_dir` is the
/// checkpoint that was quantized: its unquantized tensors are copied as they were and its
/// tokenizer files beside them. The directory appears atomically (written to a temporary
/// sibling, then renamed); an existing `out_dir` is replaced.
void export_gptq(const QuantizedCheckpoint& ckpt, const std::string& source_dir,
                 const std::string& out_dir);

/// Writes `ckpt` in the AutoAWQ "gemm" layout (awq_packing.h; config.json quantization_config
/// {quant_method "awq", bits, group_size, zero_point, version "gemm"}) to `out_dir`,
/// atomically like export_gptq. The folded norm weights (and a folded v_proj bias) are written
/// from ckpt.folded as F32; every other unquantized tensor is copied as it was. Throws Error
/// for bits != 4 (AutoAWQ's GEMM layout is 4-bit only), sym grids, or shapes the layout
/// cannot hold.
void export_awq(const QuantizedCheckpoint& ckpt, const std::string& source_dir,
                const std::string& out_dir);

/// A model as loaded from disk, whatever its format.
struct LoadedModel {
  ModelSpec spec;
  ModelWeights weights;            ///< fp32; quantized linears dequantized
  std::string format;              ///< "hf", "gptq", "awq" or "gguf"
  std::string description;         ///< e.g. "gptq 4-bit g128 asym desc_act"
  std::vector<QTensor> quantized;  ///< the stored QTensors, layer-major in role order
};

/// Loads a Hugging Face directory: plain fp32/fp16/bf16 or GPTQ layout (decided
/// by config.json's quantization_config). A path to a file is read as GGUF (load_gguf in
/// formats/gguf.h). Throws Error for an unsupported
/// quant_method or a malformed quantized tensor, naming the file and tensor.
LoadedModel load_model(const std::string& dir);
/// Reads an AutoAWQ "gemm" checkpoint (load_model dispatches here for quant_method "awq").
LoadedModel load_awq_checkpoint(const std::string& dir);

}  // namespace qsweep
