// Rotary position embedding frequencies, one place for every forward pass and
// every exporter: unscaled RoPE, Llama-3.1/3.2's "llama3" frequency adjustment
// (transformers' _compute_llama3_parameters) and llama.cpp's per-pair factors
// (the rope_freqs tensor of a GGUF) all reduce to "base frequency / factor".
#pragma once

#include <vector>

#include "model/model_spec.h"

namespace qsweep {

/// The divisor of each rotary pair's base frequency (head_dim / 2 values), exactly
/// what convert_hf_to_gguf.py writes as rope_freqs for rope_type llama3; empty when
/// the spec has no rope scaling.
std::vector<float> rope_freq_factors(const ModelSpec& spec);

/// inv_freq[i] = 1 / theta^(2i / head_dim) / factor[i], i < head_dim / 2, in fp32 as the
/// forward pass uses it (unscaled: the same bits the forward pass has always used).
std::vector<float> rope_inv_freq(const ModelSpec& spec);

}  // namespace qsweep
