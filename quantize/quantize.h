// Model-level quantization: runs a quantizer over every linear layer of a
// Transformer. GPTQ goes layer by layer (the paper's sequential protocol): layer
// i+1 is calibrated on the outputs of the already-quantized layer i, and with
// true_sequential the sub-layers of one layer are quantized in order
// (q/k/v → o → gate/up → down), each seeing inputs produced by the quantized
// ones before it. The result keeps every QTensor (for export and bits/weight)
// and a Transformer whose weights are their dequantized values (for evaluation).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "calibration/calibration.h"
#include "model/transformer.h"
#include "quantizers/quantizers.h"

namespace qsweep {

struct ModelQuantConfig {
  std::string method = "gptq";  ///< "gptq", "rtn" or "awq" (quantize/awq.h)
  int bits = 4;
  int group_size = 128;
  bool sym = false;
  // GPTQ only:
  bool desc_act = false;
  bool static_groups = false;
  bool true_sequential = true;
  double damp_percent = 0.01;
  int block_size = 128;
  /// Calibration windows processed per forward batch (memory bound; not a result knob).
  int batch_windows = 16;

  /// Throws Error for an unknown method, bits outside 2..8, group_size 0 or < -1,
  /// damp_percent outside (0, 1], or GPTQ options given to RTN.
  void validate() const;
  /// "gptq-4b-g128-asym-descact" — a short stable name.
  std::string label() const;
};

/// One quantized linear and what it cost.
struct QuantizedLinear {
  int layer = 0;
  LinearRole role = LinearRole::Q;
  QTensor q;
  double loss = 0;          ///< GPTQ's Σ (w−q)²/d² / 2 (0 for RTN)
  double damp_percent = 0;  ///< damping actually used (GPTQ)
  double seconds = 0;
};

struct QuantizedModel {
  ModelQuantConfig config;
  std::string calibration_source;  ///< empty for RTN
  std::string calibration_domain;
  SamplingOptions calibration_options;
  std::vector<QuantizedLinear> linears;  ///< layer-major, in kAllLinearRoles order
  Transformer model;                     ///< dequantized weights, ready to evaluate
  double seconds = 0;                    ///< wall time of the whole quantization

  /// Bits per weight over all quantized linears (codes + scales + zeros + g_idx).
  double linear_bits_per_weight() const;
  /// Bytes of the model as exported: quantized linears + every other tensor at
  /// `other_bytes_per_param` (2 for fp16 checkpoints).
  int64_t model_bytes(double other_bytes_per_param = 2.0) const;
};

/// Progress callback: (layer done, total layers, message).
using QuantProgress = std::function<void(int, int, const std::string&)>;

/// Quantizes a copy of `model`. GPTQ and AWQ need `calibration` (its windows); RTN ignores it.
QuantizedModel quantize_model(const Transformer& model, const ModelQuantConfig& config,
                              const CalibrationSet* calibration,
                              const QuantProgress& progress = {});

}  // namespace qsweep
