// AWQ: activation-aware weight quantization (Lin et al. 2023, "AWQ: Activation-aware Weight
// Quantization for LLM Compression and Acceleration"), as a model-level method.
//
// Followed: AutoAWQ (casper-hansen/AutoAWQ awq/quantize/quantizer.py, scale.py, models/llama.py)
// and mit-han-lab/llm-awq (awq/quantize/auto_scale.py, auto_clip.py). Per decoder layer:
//  1. Capture, on the calibration windows, the inputs of the layer's linears (the layer runs
//     with the earlier layers already quantized).
//  2. Scale search, for each group of linears sharing an input (get_layers_for_scaling):
//       (q,k,v)   prev op input_layernorm,           loss on the attention block output
//                                                    (o_proj(attn(...)) with o_proj in fp32)
//       (o)       prev op v_proj (rows),             only when v and o weights have the same
//                                                    shape (no GQA), loss on o's output
//       (gate,up) prev op post_attention_layernorm,  loss on the MLP block output
//       (down)    prev op up_proj (rows),            loss on down's output
//     For α in {0, 1/n_grid, ..., (n_grid-1)/n_grid}:
//       s = x_mean^α                    (llm-awq; AutoAWQ's duo_scaling divides by w_mean^(1-α))
//       s = max(s, 1e-4) / sqrt(max(s) · min(s))
//       W' = Q(W · diag(s)) · diag(s)^-1  for every linear of the group
//     and keep the s with the lowest mean squared error against the fp32 output of the same
//     block on the captured inputs. All four searches use the layer's original weights; then
//     every s is folded: prev op /= s (norm weight, or the prev linear's output rows and bias),
//     W *= s on the group's input columns. The fold is exact in real arithmetic.
//  3. Clip search (auto_clip) on every linear but q and k: per (row, group), max |w| shrunk by
//     (1 - i/n_grid), i < max_shrink·n_grid, weights clamped to ±max, minimising the mean over
//     a subsample of tokens (every max(1, N/512)-th) of the squared partial output error of the
//     group; the best clamp is applied.
//  4. RTN with the min/max grid of quantizers.h (QuantGrid: asymmetric by default, fp16
//     scales) → QTensor; the layer is then re-run with its quantized weights to give the next
//     layer's inputs.
// Departures, on purpose:
//  * The grid is qsweep's QuantGrid (min/max including 0, fp16-rounded scale) rather than
//    AutoAWQ's pseudo_quantize_tensor (min/max without 0, scale clamped at 1e-5), so that the
//    AWQ and RTN/GPTQ rows of a sweep differ by the algorithm only and export is bit-exact.
//  * Next-layer inputs are the outputs of the quantized layer (GPTQ's sequential protocol);
//    AutoAWQ propagates the fp16 layer outputs.
//  * Everything is fp32 (AutoAWQ runs the searches in fp16).
#pragma once

#include "quantize/quantize.h"

namespace qsweep {

/// Knobs of the AWQ searches (defaults: AutoAWQ / llm-awq values).
struct AwqSearchOptions {
  int n_grid = 20;           ///< scale search: α = i / n_grid, i < n_grid
  bool duo_scaling = false;  ///< AutoAWQ's s = x_mean^α / (w_mean^(1-α) + 1e-4)
  bool apply_clip = true;    ///< run the clipping search (AutoAWQ apply_clip)
  int clip_n_grid = 20;      ///< clip search: shrink ratios 1 - i / clip_n_grid
  double clip_max_shrink = 0.5;
  int clip_n_sample_tokens = 512;  ///< token subsample step = max(1, N / this)
};

/// The four scale groups of a decoder layer, named by the linears they scale.
enum class AwqScaleGroup { QKV, O, GateUp, Down };

/// Folds s (size = the group's input features) into layer weights: the linears of `group`
/// get W[:, c] *= s[c]; the previous op is divided by s (attn_norm for QKV, mlp_norm for
/// GateUp, the last s.size() rows and bias of v_proj for O, the rows of up_proj for Down).
/// For O, v and o must have the same shape (QS_THROW_IF_NOT).
void awq_apply_scale(LayerWeights& w, AwqScaleGroup group, const VectorF& s);

/// Whether the O group applies to this model (v_proj and o_proj weights have the same shape).
bool awq_scales_o(const ModelSpec& spec);

/// AWQ over every linear of a copy of `model` (config.method must be Method::Awq). The result's
/// `model` holds the folded norms and the dequantized weights, `linears` the QTensors (loss =
/// the chosen scale group's search MSE, for information). Throws Error for an empty
/// calibration set. The AWQ gemm layout's export restrictions (4-bit, asymmetric) are checked
/// by write_quantized, not here.
QuantizedModel awq_quantize_model(const Transformer& model, const QuantMethodConfig& config,
                                  const CalibrationSet& calibration,
                                  const QuantProgress& progress = {},
                                  const QuantRunOptions& run = {},
                                  const AwqSearchOptions& options = {});

}  // namespace qsweep
