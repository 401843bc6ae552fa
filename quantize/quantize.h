// Model-level quantization: runs a quantizer over every linear layer of a
// Transformer. GPTQ goes layer by layer (the paper's sequential protocol): layer
// i+1 is calibrated on the outputs of the already-quantized layer i, and with
// true_sequential the sub-layers of one layer are quantized in order
// (q/k/v → o → gate/up → down), each seeing inputs produced by the quantized
// ones before it. The result keeps every QTensor (for export and bits/weight)
// and a Transformer whose weights are their dequantized values (for evaluation).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "calibration/calibration.h"
#include "model/transformer.h"
#include "quantize/kquant_mix.h"
#include "quantize/method.h"
#include "quantizers/quantizers.h"

namespace qsweep {

/// One quantized linear and what it cost.
struct QuantizedLinear {
  int layer = 0;
  LinearRole role = LinearRole::Q;
  /// The codes, shared with the model's weight (`qtensor_weight`): held once.
  std::shared_ptr<const QTensor> q;
  double loss = 0;          ///< GPTQ's Σ (w−q)²/d² / 2 (0 for RTN)
  double damp_percent = 0;  ///< damping actually used (GPTQ)
  double seconds = 0;
};

struct QuantizedModel {
  QuantMethodConfig config;
  std::string calibration_source;  ///< empty without calibration
  std::string calibration_domain;
  SamplingOptions calibration_options;
  std::vector<QuantizedLinear> linears;  ///< RTN/GPTQ/AWQ: layer-major, in kAllLinearRoles order
  /// RTN/GPTQ/AWQ: the dequantized weights, ready to evaluate. A K-quant mix: the source's
  /// spec with empty layers (its result is `mix`; evaluate the written GGUF).
  Transformer model;
  /// A K-quant mix: every tensor's type and rule, and readers of the source's tensors that
  /// write_quantized encodes as it writes (keep the source model alive until then).
  std::shared_ptr<const KQuantMixResult> mix;
  double seconds = 0;  ///< wall time of the whole quantization
  /// auto_mix: the budget, every measurement and choice (meta.json's "auto_mix").
  nlohmann::json method_meta;

  /// Bits per weight over all quantized linears as the method's checkpoint layout stores them
  /// (GPTQ: codes + scales + zeros + g_idx; AWQ gemm: no g_idx; GGUF: the mix's block bpw).
  double linear_bits_per_weight() const;
  /// Bytes of the model as exported: quantized linears (GPTQ layout storage) + every other
  /// tensor at `other_bytes_per_param` (2 for fp16 checkpoints). RTN/GPTQ/AWQ only.
  int64_t model_bytes(double other_bytes_per_param = 2.0) const;
};

/// Progress callback: (layer done, total layers, message).
using QuantProgress = std::function<void(int, int, const std::string&)>;

/// Quantizes a copy of `model` with the method of `config` (dispatched on its family).
/// GPTQ and AWQ need `calibration` (its windows); RTN ignores it; a K-quant mix uses it, when
/// given, as its importance matrix. Throws Error for an invalid config (the layout's export
/// restrictions are left to write_quantized) or a missing calibration set.
QuantizedModel quantize_model(const Transformer& model, const QuantMethodConfig& config,
                              const CalibrationSet* calibration, const QuantProgress& progress = {},
                              const QuantRunOptions& run = {});

}  // namespace qsweep
