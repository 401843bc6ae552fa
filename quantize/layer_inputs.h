// The calibration windows' hidden states between decoder layers, while GPTQ and AWQ quantize a
// model one layer at a time (issue #15). They are held as fp16 — half the bytes of fp32, and
// what GPTQModel and AutoAWQ hold, since they run the model in fp16 — and widened one batch of
// windows at a time for the layer's fp32 forward. On Llama-2-7B width with GPTQModel's
// 128 × 2048 calibration tokens that is 2 GiB instead of 4 GiB, and the per-pass scratch copy
// of the whole matrix that the layer loops used to make is gone as well.
//
// A hidden state beyond fp16's range (|x| > 65504) would turn into inf. When a layer's
// outputs reach that, the inputs of that layer are recomputed from the embedding (every
// earlier boundary rounded to fp16 exactly as before, the quantized layers as they are) and
// held in fp32 from then on: no value at or after that layer is rounded to fp16, whichever
// batch overflowed first, and no quantized layer is redone.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "common/matrix.h"
#include "model/transformer.h"

namespace qsweep {

class LayerInputs {
 public:
  /// The calibration windows embedded by `model` (batch by batch: the fp32 embedding of all of
  /// them is never held at once). `model` and `windows` must outlive this object: the overflow
  /// path recomputes from them. `fp32`: hold fp32 throughout (for measuring what fp16 costs).
  LayerInputs(const Transformer& model, const std::vector<std::vector<int>>& windows,
              int batch_windows, bool fp32 = false);

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  bool held_in_fp32() const { return fp32_; }
  /// Bytes held (for memory accounting and its test).
  size_t bytes() const { return f16_.size() * sizeof(uint16_t) + f32_.size() * sizeof(float); }
  /// The layer whose outputs first went beyond fp16's range (held in fp32 from there; −1: the
  /// embedding itself), if any.
  std::optional<int> widened_at_layer() const { return widened_at_; }

  using BatchFn = std::function<void(int64_t row0, MatrixRM& x, const std::vector<int>& lengths)>;
  /// Calls fn once per batch of windows, in window order: x holds rows [row0, row0 + x.rows())
  /// widened to fp32 (a copy: fn may run a layer on it in place), `lengths` the batch's
  /// window lengths. What fn does to x is not kept.
  void for_each_batch(const BatchFn& fn) const;
  /// Runs decoder layer `l` (as the model's weights are now) over every window and holds its
  /// outputs as the inputs of layer l + 1; `hook` sees every linear's input once per batch.
  void advance(int l, const LinearInputHook& hook = {});

 private:
  void embed_all();

  const Transformer* model_;
  const std::vector<std::vector<int>>* windows_;
  int batch_windows_;
  bool fp32_;
  std::vector<int> lengths_;
  int64_t rows_ = 0, cols_ = 0;
  std::vector<uint16_t> f16_;  ///< [rows, cols] row-major, while held as fp16
  std::vector<float> f32_;     ///< [rows, cols] row-major, while held as fp32
  std::optional<int> widened_at_;
};

}  // namespace qsweep
