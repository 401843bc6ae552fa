#include "model/device_weights.h"

#include <algorithm>
#include <cstring>

#include "backends/kernels/ggml_decode.h"
#include "common/errors.h"

namespace qsweep {

namespace {

constexpr size_t kAlign = 256;  // every piece of a block starts on a 256-byte boundary

size_t aligned(size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

// GGUF codes the backend dequantizes itself (Backend::dequantize_ggml): kept as blocks.
bool as_blocks(const WeightTensor& W) {
  const GgmlBlocks& g = W.ggml_blocks();
  return W.dtype() == WeightDType::Quantized && g.ggml_type >= 0 && g.row_of == nullptr &&
         ggml::block_weights(g.ggml_type) > 0 && W.size() % ggml::block_weights(g.ggml_type) == 0;
}

// GPTQ/AWQ group codes: code bytes, scales, zeros, g_idx, each piece 256-byte aligned.
bool as_groups(const WeightTensor& W) {
  return W.dtype() == WeightDType::Quantized && W.group_codes().codes != nullptr;
}
struct GroupOffsets {
  size_t scales, zeros, g_idx, end;
};
GroupOffsets group_offsets(const WeightTensor& W) {
  GroupOffsets o;
  const size_t sz = size_t(W.group_codes().n_groups * W.rows()) * sizeof(float);
  o.scales = aligned(size_t(W.size()));
  o.zeros = o.scales + aligned(sz);
  o.g_idx = o.zeros + aligned(sz);
  o.end = o.g_idx + size_t(W.cols()) * sizeof(int32_t);
  return o;
}

// Stored form in backend memory: 16-bit weights keep 2 bytes, GGUF block codes their blocks,
// GPTQ/AWQ codes their groups, the rest (F32, permuted q/k blocks) become fp32.
WeightDType device_dtype(const WeightTensor& W) {
  if (W.dtype() == WeightDType::F16 || W.dtype() == WeightDType::BF16) return W.dtype();
  return as_blocks(W) || as_groups(W) ? WeightDType::Quantized : WeightDType::F32;
}

size_t device_bytes(const WeightTensor& W) {
  switch (device_dtype(W)) {
    case WeightDType::Quantized:
      return as_blocks(W) ? W.ggml_blocks().bytes : group_offsets(W).end;
    case WeightDType::F16:
    case WeightDType::BF16:
      return size_t(W.size()) * 2;
    case WeightDType::F32:
      break;
  }
  return size_t(W.size()) * 4;
}

DeviceLinear device_linear(const WeightTensor& W, const uint8_t* at) {
  DeviceLinear d{at, device_dtype(W), W.rows(), W.cols()};
  if (as_blocks(W)) {
    d.ggml_type = W.ggml_blocks().ggml_type;
  } else if (as_groups(W)) {
    const GroupOffsets o = group_offsets(W);
    d.scales = reinterpret_cast<const float*>(at + o.scales);
    d.zeros = reinterpret_cast<const float*>(at + o.zeros);
    d.g_idx = reinterpret_cast<const int32_t*>(at + o.g_idx);
  }
  return d;
}

// A layer's pieces in block order: 7 linears, then 8 vectors.
struct Pieces {
  const WeightTensor* lin[7];
  const VectorF* vec[8];
};
Pieces pieces(const LayerWeights& L) {
  return {{&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down},
          {&L.bq, &L.bk, &L.bv, &L.bo, &L.attn_norm, &L.mlp_norm, &L.q_norm, &L.k_norm}};
}

// Writes the weight's device form to `dst` (host memory): the stored bits, or fp32 rows.
void write_weight(const WeightTensor& W, uint8_t* dst) {
  if (W.empty()) return;
  if (const float* f = W.f32_data())
    std::memcpy(dst, f, device_bytes(W));
  else if (const void* h = W.half_data())
    std::memcpy(dst, h, device_bytes(W));
  else if (as_blocks(W))
    std::memcpy(dst, W.ggml_blocks().data, device_bytes(W));
  else if (as_groups(W)) {
    const GroupCodes& g = W.group_codes();
    const GroupOffsets o = group_offsets(W);
    const size_t sz = size_t(g.n_groups * W.rows()) * sizeof(float);
    std::memcpy(dst, g.codes, size_t(W.size()));
    std::memcpy(dst + o.scales, g.scales, sz);
    std::memcpy(dst + o.zeros, g.zeros, sz);
    std::memcpy(dst + o.g_idx, g.g_idx, size_t(W.cols()) * sizeof(int32_t));
  } else
    W.decode_rows(0, W.rows(), reinterpret_cast<float*>(dst));  // GPTQ/AWQ: widened exactly
}

// The block image of layer L at `host` (when not null) and its views at `base` (backend memory).
DeviceLayer lay_out(const LayerWeights& L, uint8_t* host, uint8_t* base) {
  const Pieces p = pieces(L);
  DeviceLayer d;
  DeviceLinear* lin[7] = {&d.wq, &d.wk, &d.wv, &d.wo, &d.w_gate, &d.w_up, &d.w_down};
  const float** vec[8] = {&d.bq,        &d.bk,       &d.bv,     &d.bo,
                          &d.attn_norm, &d.mlp_norm, &d.q_norm, &d.k_norm};
  size_t off = 0;
  for (int i = 0; i < 7; ++i) {
    const WeightTensor& W = *p.lin[i];
    *lin[i] = device_linear(W, base + off);
    if (host) write_weight(W, host + off);
    off += aligned(device_bytes(W));
  }
  for (int i = 0; i < 8; ++i) {
    const VectorF& v = *p.vec[i];
    if (v.size() == 0) continue;
    *vec[i] = reinterpret_cast<const float*>(base + off);
    if (host) std::memcpy(host + off, v.data(), size_t(v.size()) * sizeof(float));
    off += aligned(size_t(v.size()) * sizeof(float));
  }
  return d;
}

std::string mib(size_t bytes) {
  return cat(bytes, " bytes (", double(bytes) / (1 << 20), " MiB)");
}

}  // namespace

size_t DeviceWeights::layer_bytes(const LayerWeights& L) {
  const Pieces p = pieces(L);
  size_t n = 0;
  for (const WeightTensor* W : p.lin) n += aligned(device_bytes(*W));
  for (const VectorF* v : p.vec) n += aligned(size_t(v->size()) * sizeof(float));
  return n;
}

DeviceWeights::DeviceWeights(Backend& b, const ModelSpec& spec, const ModelWeights& w)
    : b_(b), layers_(w.layers.size()) {
  QS_ASSERT(!b.host_memory(), "host-memory backends use the weights where they are");
  QS_ASSERT(int(layers_) == spec.num_layers);
  std::string origin;
  const size_t budget = b.max_device_memory(&origin);
  size_t total = 0, widest = 0;
  for (const LayerWeights& L : w.layers) {
    total += layer_bytes(L);
    widest = std::max(widest, layer_bytes(L));
  }
  // Resident layers as many as fit beside the two slots streaming needs.
  size_t used = 0;
  if (total <= budget) {
    resident_ = int(layers_);
    used = total;
  } else {
    QS_THROW_IF_NOT(2 * widest <= budget, origin, " = ", mib(budget),
                    " is smaller than the two layer slots streaming this model needs (2 x ",
                    mib(widest), " = ", mib(2 * widest), "); raise it to at least ", 2 * widest,
                    " bytes, or use --device cpu");
    used = 2 * widest;
    while (resident_ < int(layers_) && used + layer_bytes(w.layers[size_t(resident_)]) <= budget)
      used += layer_bytes(w.layers[size_t(resident_++)]);
  }
  try {
    std::vector<uint8_t> image;
    for (int l = 0; l < resident_; ++l) {
      const LayerWeights& L = w.layers[size_t(l)];
      image.assign(layer_bytes(L), 0);
      blocks_.push_back(b_.allocate(image.size()));
      resident_views_.push_back(lay_out(L, image.data(), static_cast<uint8_t*>(blocks_.back())));
      b_.to_device(blocks_.back(), image.data(), image.size());
    }
    const size_t hb = w.lm_head.empty() ? 0 : aligned(device_bytes(w.lm_head));
    if (hb && used + hb <= budget) {
      image.assign(hb, 0);
      write_weight(w.lm_head, image.data());
      head_block_ = b_.allocate(hb);
      b_.to_device(head_block_, image.data(), hb);
      head_ = device_linear(w.lm_head, static_cast<const uint8_t*>(head_block_));
      used += hb;
    }
    if (resident_ < int(layers_)) {
      for (int s = 0; s < 2; ++s) {
        slot_[s] = b_.allocate(widest);
        staging_[s] = b_.allocate_pinned(widest);
        copied_[s] = b_.create_event();
        computed_[s] = b_.create_event();
      }
    }
    b_.synchronize();  // allocations and uploads complete before the copy stream uses them
  } catch (...) {
    free_all();
    throw;
  }
  bytes_ = used;
}

DeviceWeights::~DeviceWeights() {
  free_all();
}

void DeviceWeights::free_all() noexcept {
  for (int s = 0; s < 2; ++s)
    if (copied_[s]) {
      try {
        b_.host_wait_event(copied_[s]);  // no copy still writes a slot or reads staging
      } catch (...) {
      }
    }
  try {
    b_.synchronize();  // nor does any layer still read a slot
  } catch (...) {
  }
  for (int s = 0; s < 2; ++s) {
    b_.destroy_event(copied_[s]);
    b_.destroy_event(computed_[s]);
    if (slot_[s]) b_.release(slot_[s]);
    if (staging_[s]) b_.release_pinned(staging_[s]);
    copied_[s] = computed_[s] = nullptr;
    slot_[s] = staging_[s] = nullptr;
  }
  for (void* p : blocks_) b_.release(p);
  blocks_.clear();
  if (head_block_) b_.release(head_block_);
  head_block_ = nullptr;
}

void DeviceWeights::fetch(const ModelWeights& w, int l, int s) {
  const LayerWeights& L = w.layers[size_t(l)];
  b_.host_wait_event(copied_[s]);  // staging[s]'s last copy has been read
  slot_view_[s] = lay_out(L, static_cast<uint8_t*>(staging_[s]), static_cast<uint8_t*>(slot_[s]));
  b_.wait_event(Backend::Stream::Copy, computed_[s]);  // the slot's last layer is done with it
  b_.to_device_async(slot_[s], staging_[s], layer_bytes(L));
  b_.record_event(copied_[s], Backend::Stream::Copy);
  holder_[s] = l;
}

DeviceWeights::Pass::Pass(DeviceWeights& d, const ModelWeights& w) : d_(d), w_(w) {
  if (d_.resident_ < int(d_.layers_)) lock_ = std::unique_lock<std::mutex>(d_.mutex_);
}

const DeviceLayer& DeviceWeights::Pass::acquire(int l) {
  QS_ASSERT(l >= 0 && size_t(l) < d_.layers_);
  if (l < d_.resident_) return d_.resident_views_[size_t(l)];
  int s = d_.holder_[0] == l ? 0 : d_.holder_[1] == l ? 1 : -1;
  if (s < 0) {  // not prefetched (the first streamed layer of the first pass)
    s = d_.current_ < 0 ? 0 : 1 - d_.current_;
    d_.fetch(w_, l, s);
  }
  d_.b_.wait_event(Backend::Stream::Compute, d_.copied_[s]);  // copy → compute
  open_ = l;
  d_.current_ = s;
  // The next streamed layer (wrapping to the first for the next pass) into the other slot.
  const int next = size_t(l) + 1 < d_.layers_ ? l + 1 : d_.resident_;
  if (next != l && d_.holder_[1 - s] != next) d_.fetch(w_, next, 1 - s);
  return d_.slot_view_[s];
}

void DeviceWeights::Pass::release(int l) {
  if (l < d_.resident_) return;
  QS_ASSERT(open_ == l, "layers are released in the order they were acquired");
  d_.b_.record_event(d_.computed_[d_.current_], Backend::Stream::Compute);  // compute → reuse
  open_ = -1;
}

DeviceWeights::Pass::~Pass() {
  if (open_ < 0) return;
  try {  // a pass cut short by an error: the slot is free once what was queued completes
    d_.b_.record_event(d_.computed_[d_.current_], Backend::Stream::Compute);
  } catch (...) {
  }
}

void gemm_nt_device_linear(Backend& b, const float* A, const DeviceLinear& W, float* C, int64_t m,
                           WeightScratch& s) {
  if (W.dtype != WeightDType::Quantized) {
    b.gemm_nt_resident(A, W.data, W.dtype, C, m, W.rows, W.cols, s);
    return;
  }
  // Dequantized on the backend into the scratch's reused weight buffer (what the host's row
  // decoder gives, bit for bit: the same per-weight decode), then the fp32 GEMM, as
  // Backend::gemm_nt_weight does with a widened weight.
  const int64_t n = W.rows * W.cols;
  auto* w = static_cast<float*>(s.device_buffer(b, 0, size_t(n) * sizeof(float)));
  if (W.ggml_type >= 0)
    b.dequantize_ggml(W.ggml_type, static_cast<const uint8_t*>(W.data), w, n);
  else
    b.dequantize_groups(static_cast<const uint8_t*>(W.data), W.scales, W.zeros, W.g_idx, w, W.rows,
                        W.cols);
  b.gemm_nt(A, w, C, m, W.rows, W.cols);
}

}  // namespace qsweep
