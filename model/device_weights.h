// One Transformer's weights in the memory of an off-host backend (CUDA), issue #16. Each layer
// is one block in backend memory holding its linears in their stored form — F32 as is, F16/BF16
// as 2-byte bits, GGUF block codes as their blocks and GPTQ/AWQ group codes as code bytes +
// scales + zeros + g_idx (both dequantized on the backend per use; the llama q/k tensors, whose
// rows the GGUF file permutes, are widened to fp32 on the host) — and its norms and biases.
//
// Layers 0..R−1 are uploaded once and stay resident; when the whole model does not fit in the
// backend's budget (Backend::max_device_memory), layers R..L−1 are streamed through two device
// slots: while layer l computes, the next streamed layer is copied on the copy stream from a
// pinned host staging buffer into the other slot. Events order copy → compute (the layer waits
// for its slot's copy) and compute → reuse (a slot's next copy waits for the layer that used it;
// the host refills a staging buffer only after its last copy completed). lm_head is resident
// when it fits in what the layers leave, else uploaded per call (Backend::gemm_nt_weight).
// Host-memory backends (the CPU) never build one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "backends/backend.h"
#include "model/model_spec.h"
#include "model/weights.h"

namespace qsweep {

/// A linear's weight [rows, cols] in backend memory: F32, F16/BF16 bits, or (Quantized) the
/// GGUF file's ggml blocks of type `ggml_type` (≥ 0) or group codes (ggml_type −1: data = one
/// code byte per weight, then `scales`, `zeros` [n_groups, rows] and `g_idx` [cols]).
struct DeviceLinear {
  const void* data = nullptr;
  WeightDType dtype = WeightDType::F32;
  int64_t rows = 0, cols = 0;
  int ggml_type = -1;
  const float *scales = nullptr, *zeros = nullptr;
  const int32_t* g_idx = nullptr;
};

/// C[m, rows] = A[m, cols]·Wᵀ for a weight in backend memory: Backend::gemm_nt_resident, or
/// for ggml blocks Backend::dequantize_ggml into the scratch's weight buffer then gemm_nt.
void gemm_nt_device_linear(Backend& b, const float* A, const DeviceLinear& W, float* C, int64_t m,
                           WeightScratch& s);

/// One layer in backend memory; a vector is nullptr when the layer has none.
struct DeviceLayer {
  DeviceLinear wq, wk, wv, wo, w_gate, w_up, w_down;
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
  const float *attn_norm = nullptr, *mlp_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr;
};

class DeviceWeights {
 public:
  /// Plans against b.max_device_memory() and uploads the resident layers. Error naming the
  /// budget's origin, the need and the fix when streaming is needed and the budget is smaller
  /// than two layer slots.
  DeviceWeights(Backend& b, const ModelSpec& spec, const ModelWeights& w);
  ~DeviceWeights();
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;

  /// Bytes layer `l` takes in backend memory (its slot size when streamed).
  static size_t layer_bytes(const LayerWeights& L);
  int resident_layers() const { return resident_; }
  int streamed_layers() const { return int(layers_) - resident_; }
  bool head_resident() const { return head_.data != nullptr; }
  /// Backend memory held: resident layers, the two slots, lm_head.
  size_t bytes() const { return bytes_; }

  /// One forward pass's use: layers acquired in increasing order, each released once its ops
  /// are queued. Serializes passes while layers are streamed (the slots are shared).
  class Pass {
   public:
    /// `w`: the weights the store was built from (the model's own).
    Pass(DeviceWeights& d, const ModelWeights& w);
    ~Pass();
    Pass(const Pass&) = delete;
    Pass& operator=(const Pass&) = delete;
    /// Layer `l`'s weights, ready for ops queued on the compute stream from now on; queues the
    /// next streamed layer's copy into the other slot.
    const DeviceLayer& acquire(int l);
    /// After layer `l`'s ops are queued: its slot may be refilled once they complete.
    void release(int l);

   private:
    DeviceWeights& d_;
    const ModelWeights& w_;
    std::unique_lock<std::mutex> lock_;
    int open_ = -1;  ///< a streamed layer acquired and not yet released
  };
  /// lm_head in backend memory, or nullptr when it is uploaded per call.
  const DeviceLinear* head() const { return head_resident() ? &head_ : nullptr; }

 private:
  void free_all() noexcept;
  void fetch(const ModelWeights& w, int l, int slot);  // queues layer l's copy into `slot`
  Backend& b_;
  size_t layers_ = 0;
  int resident_ = 0;
  size_t bytes_ = 0;
  std::vector<void*> blocks_;  ///< resident layers' blocks
  std::vector<DeviceLayer> resident_views_;
  void* head_block_ = nullptr;
  DeviceLinear head_;
  // Streaming: two device slots, two pinned staging buffers, their events.
  void* slot_[2] = {nullptr, nullptr};
  void* staging_[2] = {nullptr, nullptr};
  Backend::Event copied_[2] = {nullptr, nullptr};    ///< slot's last copy done
  Backend::Event computed_[2] = {nullptr, nullptr};  ///< slot's last layer's ops done
  int holder_[2] = {-1, -1};                         ///< layer in (or on its way to) each slot
  int current_ = -1;                                 ///< slot of the layer being computed
  DeviceLayer slot_view_[2];
  std::mutex mutex_;
};

}  // namespace qsweep
