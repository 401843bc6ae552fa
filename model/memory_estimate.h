// Peak-memory estimate of one eval or quantize command, checked against --max-memory before
// any work (issue #15).
#pragma once

#include <cstdint>
#include <string>

#include "model/model_spec.h"

namespace qsweep {

struct MemoryEstimateInput {
  int64_t mapped_bytes = 0;  ///< the model's files (mapped; counted whole)
  int64_t tokens = 0;        ///< tokens in one forward batch (ctx × windows per batch)
  int64_t ctx = 0;           ///< the longest window (attention scores are ctx × ctx)
  int64_t calib_tokens = 0;  ///< GPTQ/AWQ: all calibration tokens (0: no calibration)
};

struct MemoryEstimate {
  int64_t model = 0;        ///< mapped_bytes
  int64_t scratch = 0;      ///< the widest weight widened to fp32 (4 × rows × cols)
  int64_t activations = 0;  ///< one batch through one layer, plus the logits
  int64_t calibration =
      0;  ///< layer inputs (fp16, quantize/layer_inputs.h) + one layer's fp64 Hessians
  int64_t total() const { return model + scratch + activations + calibration; }
};

/// The bytes a model's files map: a file (.gguf) whole, or a directory's *.safetensors.
int64_t mapped_model_bytes(const std::string& path);

/// model = mapped_bytes; scratch = 4·max(V·H, I·H, nq·hd·H);
/// activations = 4·T·(6·H + 2·I + V) + 4·heads·ctx²  (T = tokens, hidden states + MLP
/// intermediates + logits + one head group's scores for each head);
/// calibration (calib_tokens C > 0) = 2·C·H + 8·(H² + (nq·hd)² + H² + I²).
MemoryEstimate estimate_peak_memory(const ModelSpec& s, const MemoryEstimateInput& in);

/// Throws Error "<what> needs about X GiB (model A, weight scratch B, activations C,
/// calibration D) but --max-memory is Y GiB: <lower>" when the estimate exceeds the budget.
void check_memory_budget(const MemoryEstimate& e, int64_t max_bytes, const std::string& what,
                         const std::string& lower);

}  // namespace qsweep
