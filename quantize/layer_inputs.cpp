#include "quantize/layer_inputs.h"

#include <algorithm>
#include <cstring>

#include "common/errors.h"
#include "common/half_convert.h"

namespace qsweep {

LayerInputs::LayerInputs(const Transformer& model, const std::vector<std::vector<int>>& windows,
                         int batch_windows, bool fp32)
    : model_(&model),
      windows_(&windows),
      batch_windows_(std::max(1, batch_windows)),
      fp32_(fp32),
      cols_(model.spec().hidden_size) {
  for (const auto& w : windows) {
    lengths_.push_back(int(w.size()));
    rows_ += int64_t(w.size());
  }
  embed_all();
}

void LayerInputs::embed_all() {
  const size_t n = size_t(rows_ * cols_);
  if (fp32_) {
    f16_.clear();
    f16_.shrink_to_fit();
    f32_.resize(n);
  } else {
    f16_.resize(n);
  }
  int64_t row = 0;
  for (size_t w0 = 0; w0 < windows_->size(); w0 += size_t(batch_windows_)) {
    const size_t w1 = std::min(windows_->size(), w0 + size_t(batch_windows_));
    const std::vector<std::vector<int>> batch(windows_->begin() + long(w0),
                                              windows_->begin() + long(w1));
    std::vector<int> lens;
    const MatrixRM x = model_->embed(batch, &lens);
    // The embedding rows are the stored table's: fp16 for fp16 checkpoints, so exact there.
    const size_t at = size_t(row * cols_), count = size_t(x.size());
    if (fp32_) {
      std::memcpy(f32_.data() + at, x.data(), count * sizeof(float));
    } else if (!floats_to_halves(x.data(), f16_.data() + at, count)) {
      // A bf16/fp32 table with values beyond fp16's range: hold fp32 from the start.
      widened_at_ = -1;
      fp32_ = true;
      embed_all();
      return;
    }
    row += x.rows();
  }
}

void LayerInputs::for_each_batch(const BatchFn& fn) const {
  int64_t row = 0;
  for (size_t w0 = 0; w0 < lengths_.size(); w0 += size_t(batch_windows_)) {
    const size_t w1 = std::min(lengths_.size(), w0 + size_t(batch_windows_));
    const std::vector<int> lens(lengths_.begin() + long(w0), lengths_.begin() + long(w1));
    int64_t rows = 0;
    for (int n : lens) rows += n;
    MatrixRM x(rows, cols_);
    const size_t at = size_t(row * cols_), count = size_t(x.size());
    if (fp32_)
      std::memcpy(x.data(), f32_.data() + at, count * sizeof(float));
    else
      halves_to_floats(f16_.data() + at, x.data(), count);
    fn(row, x, lens);
    row += rows;
  }
}

void LayerInputs::advance(int l, const LinearInputHook& hook) {
  // Batches are written back in place: each reads only its own rows, so a later batch never
  // sees an earlier batch's outputs.
  bool overflow = false;
  for_each_batch([&](int64_t row0, MatrixRM& x, const std::vector<int>& lens) {
    model_->run_layer(l, x, lens, hook);  // after an overflow still, so the hook sees them all
    if (overflow) return;
    const size_t at = size_t(row0 * cols_), count = size_t(x.size());
    if (fp32_)
      std::memcpy(f32_.data() + at, x.data(), count * sizeof(float));
    else if (!floats_to_halves(x.data(), f16_.data() + at, count))
      overflow = true;
  });
  if (!overflow) return;
  // Layer l's outputs leave fp16's range. Earlier batches of this layer were already stored
  // (rounded) in place, so recompute its inputs from the embedding with every earlier boundary
  // rounded as before — the quantized layers are the same weights as then, so the values are
  // the same — and hold fp32 from this layer on.
  widened_at_ = l;
  embed_all();
  for (int k = 0; k < l; ++k) {
    bool again = false;
    for_each_batch([&](int64_t row0, MatrixRM& x, const std::vector<int>& lens) {
      model_->run_layer(k, x, lens);
      again |= !floats_to_halves(x.data(), f16_.data() + size_t(row0 * cols_), size_t(x.size()));
    });
    QS_ASSERT(!again, "layer inputs: an earlier layer overflowed fp16 on recomputation");
  }
  f32_.resize(f16_.size());
  halves_to_floats(f16_.data(), f32_.data(), f16_.size());
  f16_.clear();
  f16_.shrink_to_fit();
  fp32_ = true;
  advance(l, {});  // the hook has seen every batch's inputs: they do not change
}

}  // namespace qsweep
