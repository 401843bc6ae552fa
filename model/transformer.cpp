#include "model/transformer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backends/cpu/cpu_ops.h"
#include "common/errors.h"
#include "model/device_weights.h"
#include "model/rope.h"

namespace qsweep {

namespace {

using Arr = BackendArray<float>;

// Position of every row of packed sequences that each start at position 0.
std::vector<int64_t> packed_positions(const std::vector<int>& lengths) {
  std::vector<int64_t> pos;
  for (int n : lengths)
    for (int p = 0; p < n; ++p) pos.push_back(p);
  return pos;
}

// Host data as backend memory: the host pointer itself on a host-memory backend, else a copy
// uploaded into `tmp`.
const float* on_backend(Backend& b, const float* host, int64_t n, std::unique_ptr<Arr>& tmp) {
  if (b.host_memory() || n == 0) return host;
  tmp = std::make_unique<Arr>(b, size_t(n));
  b.to_device(tmp->get(), host, size_t(n) * sizeof(float));
  return tmp->get();
}

}  // namespace

struct Transformer::Scratch {
  WeightScratch weight;  ///< the widened weight of the linear that runs
};

struct Transformer::ScratchPool {
  std::mutex mutex;
  std::vector<std::unique_ptr<Scratch>> free;
  /// Off-host backends: the weights in backend memory (issue #16), built by the first
  /// forward/decode/next_token_nll, dropped by mutable_weights().
  std::unique_ptr<DeviceWeights> device;
};

// One call's scratch, taken from the pool and given back: calls in flight on several threads
// each get their own, consecutive calls reuse the same buffers.
class Transformer::Lease {
 public:
  explicit Lease(ScratchPool& pool) : pool_(pool) {
    std::lock_guard<std::mutex> lock(pool_.mutex);
    if (pool_.free.empty()) {
      s_ = std::make_unique<Scratch>();
    } else {
      s_ = std::move(pool_.free.back());
      pool_.free.pop_back();
    }
  }
  ~Lease() {
    std::lock_guard<std::mutex> lock(pool_.mutex);
    pool_.free.push_back(std::move(s_));
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Scratch& get() { return *s_; }

 private:
  ScratchPool& pool_;
  std::unique_ptr<Scratch> s_;
};

Transformer::Transformer(ModelSpec spec, ModelWeights weights, Backend& backend)
    : spec_(std::move(spec)),
      weights_(std::move(weights)),
      inv_freq_(rope_inv_freq(spec_)),
      backend_(&backend),
      pool_(std::make_unique<ScratchPool>()) {
  QS_THROW_IF_NOT(int(weights_.layers.size()) == spec_.num_layers, "model has ",
                  weights_.layers.size(), " layers of weights but the spec says ",
                  spec_.num_layers);
  for (const LayerWeights& L : weights_.layers) {
    if (L.wq.size() == 0) continue;  // a weightless shell (a K-quant mix's QuantizedModel)
    const int64_t want = spec_.qk_norm ? spec_.head_dim : 0;
    QS_THROW_IF_NOT(L.q_norm.size() == want && L.k_norm.size() == want,
                    "model has q_norm/k_norm of ", L.q_norm.size(), "/", L.k_norm.size(),
                    " values but the spec implies ", want);
  }
}

Transformer::Transformer(const Transformer& o)
    : spec_(o.spec_),
      weights_(o.weights_),
      inv_freq_(o.inv_freq_),
      backend_(o.backend_),
      pool_(std::make_unique<ScratchPool>()) {}

Transformer& Transformer::operator=(const Transformer& o) {
  if (this != &o) {
    spec_ = o.spec_;
    weights_ = o.weights_;
    inv_freq_ = o.inv_freq_;
    backend_ = o.backend_;
    pool_ = std::make_unique<ScratchPool>();
  }
  return *this;
}

ModelWeights& Transformer::mutable_weights() {
  std::lock_guard<std::mutex> lock(pool_->mutex);
  pool_->device.reset();  // the device copy would go stale
  return weights_;
}

DeviceWeights* Transformer::device_weights() const {
  if (backend_->host_memory()) return nullptr;
  std::lock_guard<std::mutex> lock(pool_->mutex);
  if (!pool_->device) pool_->device = std::make_unique<DeviceWeights>(*backend_, spec_, weights_);
  return pool_->device.get();
}

const DeviceWeights* Transformer::device_weights_if_built() const {
  std::lock_guard<std::mutex> lock(pool_->mutex);
  return pool_->device.get();
}

void Transformer::run_layers(float* h, int64_t n, const std::vector<int>& lengths, KvCache* cache,
                             Scratch& s, const DeviceLinear** head) const {
  *head = nullptr;
  DeviceWeights* dw = device_weights();
  if (!dw) {
    for (int l = 0; l < spec_.num_layers; ++l)
      layer_dev(l, h, n, lengths, cache, {}, std::nullopt, s, nullptr);
    return;
  }
  DeviceWeights::Pass pass(*dw, weights_);
  for (int l = 0; l < spec_.num_layers; ++l) {
    const DeviceLayer& dl = pass.acquire(l);
    layer_dev(l, h, n, lengths, cache, {}, std::nullopt, s, &dl);
    pass.release(l);
  }
  *head = dw->head();
}

Transformer::Transformer(Transformer&& o) noexcept = default;
Transformer& Transformer::operator=(Transformer&& o) noexcept = default;
Transformer::~Transformer() = default;

void Transformer::check_tokens(const std::vector<std::vector<int>>& sequences) const {
  for (const auto& seq : sequences)
    for (int id : seq)
      QS_THROW_IF_NOT(id >= 0 && id < spec_.vocab_size, "token id ", id,
                      " is outside the model's vocabulary [0, ", spec_.vocab_size,
                      "); the tokenizer and the model do not match");
}

MatrixRM Transformer::embed(const std::vector<std::vector<int>>& sequences,
                            std::vector<int>* lengths) const {
  check_tokens(sequences);
  int64_t n = 0;
  lengths->clear();
  for (const auto& s : sequences) {
    lengths->push_back(int(s.size()));
    n += int64_t(s.size());
  }
  MatrixRM h(n, spec_.hidden_size);
  int64_t r = 0;
  for (const auto& s : sequences)
    for (int id : s) weights_.embed.decode_rows(id, 1, h.row(r++).data());
  return h;
}

void Transformer::layer_dev(int layer, float* h, int64_t n, const std::vector<int>& lengths,
                            KvCache* cache, const LinearInputHook& hook,
                            std::optional<LinearRole> stop_after, Scratch& s,
                            const DeviceLayer* dl) const {
  QS_ASSERT(layer >= 0 && layer < spec_.num_layers);
  const LayerWeights& L = weights_.layers[size_t(layer)];
  Backend& b = *backend_;
  const ModelSpec& sp = spec_;
  const int64_t H = sp.hidden_size, I = sp.intermediate_size;
  const int64_t qw = int64_t(sp.num_heads) * sp.head_dim,
                kw = int64_t(sp.num_kv_heads) * sp.head_dim;
  std::vector<std::unique_ptr<Arr>> uploads;  // host vectors copied to an off-host backend
  // A norm or bias: resident in `dl`, else uploaded for this call.
  auto vec = [&](const VectorF& v, const float* resident) {
    if (dl) return resident;
    uploads.emplace_back();
    return on_backend(b, v.data(), v.size(), uploads.back());
  };
  // The hook sees a host copy of a linear's input (the same matrix for each role given).
  auto seen = [&](std::initializer_list<LinearRole> roles, const float* x, int64_t cols) {
    if (!hook) return;
    MatrixRM m(n, cols);
    if (m.size()) b.to_host(m.data(), x, size_t(m.size()) * sizeof(float));
    for (LinearRole r : roles) hook(layer, r, m);
  };
  auto linear = [&](const float* x, const WeightTensor& W, const DeviceLinear* dw,
                    const VectorF& bias, const float* dbias, float* y) {
    if (dw)
      gemm_nt_device_linear(b, x, *dw, y, n, s.weight);
    else
      b.gemm_nt_weight(x, W, y, n, s.weight);
    if (bias.size()) b.add_row_bias(y, vec(bias, dbias), n, W.rows());
  };
  auto dev = [&](DeviceLinear DeviceLayer::*m) { return dl ? &(dl->*m) : nullptr; };
  auto dvec = [&](const float* DeviceLayer::*m) { return dl ? dl->*m : nullptr; };
  Arr x(b, size_t(n * H)), tmp(b, size_t(n * H));
  // Attention block.
  {
    b.rms_norm(h, vec(L.attn_norm, dvec(&DeviceLayer::attn_norm)), x.get(), n, H, sp.rms_norm_eps);
    seen({LinearRole::Q, LinearRole::K, LinearRole::V}, x.get(), H);
    if (stop_after && *stop_after <= LinearRole::V) return;
    Arr q(b, size_t(n * qw)), k(b, size_t(n * kw)), v(b, size_t(n * kw)), a(b, size_t(n * qw));
    linear(x.get(), L.wq, dev(&DeviceLayer::wq), L.bq, dvec(&DeviceLayer::bq), q.get());
    linear(x.get(), L.wk, dev(&DeviceLayer::wk), L.bk, dvec(&DeviceLayer::bk), k.get());
    linear(x.get(), L.wv, dev(&DeviceLayer::wv), L.bv, dvec(&DeviceLayer::bv), v.get());
    std::vector<AttentionSpan> spans;
    std::vector<int64_t> pos;
    if (cache) {
      // One sequence continuing the cache: positions go on from its length, and
      // the new keys/values join the cached ones before attending.
      const int64_t p0 = cache->length_;
      for (int64_t i = 0; i < n; ++i) pos.push_back(p0 + i);
      spans.push_back({0, 0, n, p0});
    } else {
      pos = packed_positions(lengths);
      int64_t off = 0;
      for (int len : lengths) {
        spans.push_back({off, off, len, 0});
        off += len;
      }
    }
    if (L.q_norm.size()) {  // Qwen3: RMSNorm of each head's q and k before RoPE
      b.rms_norm(q.get(), vec(L.q_norm, dvec(&DeviceLayer::q_norm)), q.get(), n * sp.num_heads,
                 sp.head_dim, sp.rms_norm_eps);
    }
    if (L.k_norm.size()) {
      b.rms_norm(k.get(), vec(L.k_norm, dvec(&DeviceLayer::k_norm)), k.get(), n * sp.num_kv_heads,
                 sp.head_dim, sp.rms_norm_eps);
    }
    b.rope(q.get(), n, sp.num_heads, sp.head_dim, inv_freq_, pos);
    b.rope(k.get(), n, sp.num_kv_heads, sp.head_dim, inv_freq_, pos);
    const AttentionShape shape{sp.num_heads, sp.num_kv_heads, sp.head_dim, sp.sliding_window};
    if (cache) {
      KvCache::Layer& c = cache->layers_[size_t(layer)];
      const int64_t p0 = cache->length_, need = p0 + n;
      const size_t nb = size_t(n * kw) * sizeof(float);
      // Grow geometrically (capped at the context) so a token-by-token decode copies the
      // cache O(log n) times, not n times.
      auto capacity = [&](int64_t rows) {
        return std::min<int64_t>(std::max<int64_t>(need, 2 * rows),
                                 std::max<int64_t>(need, sp.max_position_embeddings));
      };
      if (b.host_memory()) {
        if (c.k.rows() < need) {
          const int64_t cap = capacity(c.k.rows());
          c.k.conservativeResize(cap, kw);
          c.v.conservativeResize(cap, kw);
        }
        if (nb) b.to_host(c.k.row(p0).data(), k.get(), nb);
        if (nb) b.to_host(c.v.row(p0).data(), v.get(), nb);
        b.attention(q.get(), c.k.data(), c.v.data(), a.get(), spans, shape);
      } else {
        // Device-resident: the new keys/values are appended in place in backend memory.
        if (c.dev_rows < need) {
          const int64_t cap = capacity(c.dev_rows);
          auto k2 = std::make_unique<Arr>(b, size_t(cap * kw));
          auto v2 = std::make_unique<Arr>(b, size_t(cap * kw));
          const size_t old_bytes = size_t(p0 * kw) * sizeof(float);
          if (old_bytes) b.copy(k2->get(), c.dk->get(), old_bytes);
          if (old_bytes) b.copy(v2->get(), c.dv->get(), old_bytes);
          c.dk = std::move(k2);
          c.dv = std::move(v2);
          c.dev_rows = cap;
        }
        if (nb) b.copy(c.dk->get() + p0 * kw, k.get(), nb);
        if (nb) b.copy(c.dv->get() + p0 * kw, v.get(), nb);
        b.attention(q.get(), c.dk->get(), c.dv->get(), a.get(), spans, shape);
      }
    } else {
      b.attention(q.get(), k.get(), v.get(), a.get(), spans, shape);
    }
    seen({LinearRole::O}, a.get(), qw);
    if (stop_after == LinearRole::O) return;
    linear(a.get(), L.wo, dev(&DeviceLayer::wo), L.bo, dvec(&DeviceLayer::bo), tmp.get());
    b.add(h, tmp.get(), n * H);
  }
  // SwiGLU MLP block: down(silu(gate(x)) * up(x)).
  {
    b.rms_norm(h, vec(L.mlp_norm, dvec(&DeviceLayer::mlp_norm)), x.get(), n, H, sp.rms_norm_eps);
    seen({LinearRole::Gate, LinearRole::Up}, x.get(), H);
    if (stop_after == LinearRole::Gate || stop_after == LinearRole::Up) return;
    Arr g(b, size_t(n * I)), u(b, size_t(n * I));
    linear(x.get(), L.w_gate, dev(&DeviceLayer::w_gate), VectorF(), nullptr, g.get());
    linear(x.get(), L.w_up, dev(&DeviceLayer::w_up), VectorF(), nullptr, u.get());
    b.swiglu(g.get(), u.get(), n * I);
    seen({LinearRole::Down}, g.get(), I);
    if (stop_after == LinearRole::Down) return;
    linear(g.get(), L.w_down, dev(&DeviceLayer::w_down), VectorF(), nullptr, tmp.get());
    b.add(h, tmp.get(), n * H);
  }
}

void Transformer::head_dev(const float* h, int64_t n, float* logits, Scratch& s,
                           const DeviceLinear* resident) const {
  Backend& b = *backend_;
  const int64_t H = spec_.hidden_size;
  Arr x(b, size_t(n * H));
  std::unique_ptr<Arr> norm;
  b.rms_norm(h, on_backend(b, weights_.final_norm.data(), H, norm), x.get(), n, H,
             spec_.rms_norm_eps);
  if (resident)
    gemm_nt_device_linear(b, x.get(), *resident, logits, n, s.weight);
  else
    b.gemm_nt_weight(x.get(), weights_.lm_head, logits, n, s.weight);
}

void Transformer::run_layer(int layer, MatrixRM& hidden, const std::vector<int>& lengths,
                            const LinearInputHook& hook,
                            std::optional<LinearRole> stop_after) const {
  Lease lease(*pool_);
  Backend& b = *backend_;
  const int64_t n = hidden.rows();
  if (b.host_memory())
    return layer_dev(layer, hidden.data(), n, lengths, nullptr, hook, stop_after, lease.get(),
                     nullptr);
  Arr h(b, size_t(hidden.size()));
  if (hidden.size()) b.to_device(h.get(), hidden.data(), size_t(hidden.size()) * sizeof(float));
  layer_dev(layer, h.get(), n, lengths, nullptr, hook, stop_after, lease.get(), nullptr);
  if (hidden.size()) b.to_host(hidden.data(), h.get(), size_t(hidden.size()) * sizeof(float));
}

MatrixRM Transformer::head(const MatrixRM& hidden) const {
  Lease lease(*pool_);
  Backend& b = *backend_;
  const int64_t n = hidden.rows(), V = spec_.vocab_size;
  MatrixRM logits(n, V);
  if (b.host_memory()) {
    head_dev(hidden.data(), n, logits.data(), lease.get(), nullptr);
    return logits;
  }
  std::unique_ptr<Arr> h;
  Arr out(b, size_t(n * V));
  head_dev(on_backend(b, hidden.data(), hidden.size(), h), n, out.get(), lease.get(), nullptr);
  if (logits.size()) b.to_host(logits.data(), out.get(), size_t(logits.size()) * sizeof(float));
  return logits;
}

void Transformer::run_all(const std::vector<std::vector<int>>& sequences, Scratch& s, float* logits,
                          int64_t* rows) const {
  // Like the reference implementations, no limit at max_position_embeddings: RoPE extends,
  // and the CLI warns that such a run measures extrapolation.
  std::vector<int> lengths;
  MatrixRM emb = embed(sequences, &lengths);
  Backend& b = *backend_;
  const int64_t n = emb.rows();
  *rows = n;
  std::unique_ptr<Arr> dev;
  float* h = emb.data();
  if (!b.host_memory() && emb.size()) {
    dev = std::make_unique<Arr>(b, size_t(emb.size()));
    b.to_device(dev->get(), emb.data(), size_t(emb.size()) * sizeof(float));
    h = dev->get();
  }
  const DeviceLinear* head = nullptr;
  run_layers(h, n, lengths, nullptr, s, &head);
  head_dev(h, n, logits, s, head);
}

MatrixRM Transformer::forward(const std::vector<std::vector<int>>& sequences) const {
  Lease lease(*pool_);
  int64_t n = 0;
  for (const auto& seq : sequences) n += int64_t(seq.size());
  MatrixRM out(n, spec_.vocab_size);
  if (backend_->host_memory()) {  // the logits are written where they are returned
    run_all(sequences, lease.get(), out.data(), &n);
    return out;
  }
  BackendArray<float> logits(*backend_, size_t(n * spec_.vocab_size));
  run_all(sequences, lease.get(), logits.get(), &n);
  if (out.size()) backend_->to_host(out.data(), logits.get(), size_t(out.size()) * sizeof(float));
  return out;
}

MatrixRM Transformer::forward(const std::vector<int>& tokens) const {
  return forward(std::vector<std::vector<int>>{tokens});
}

std::vector<float> Transformer::next_token_nll(
    const std::vector<std::vector<int>>& sequences) const {
  Lease lease(*pool_);
  int64_t n = 0;
  for (const auto& seq : sequences) n += int64_t(seq.size());
  BackendArray<float> logits(*backend_, size_t(n * spec_.vocab_size));
  run_all(sequences, lease.get(), logits.get(), &n);
  // Full-row targets: the last row of each sequence has none; 0, dropped after.
  std::vector<int32_t> all(size_t(n), 0);
  std::vector<int64_t> rows;
  int64_t off = 0;
  for (const auto& seq : sequences) {
    for (size_t p = 0; p + 1 < seq.size(); ++p) {
      rows.push_back(off + int64_t(p));
      all[size_t(off) + p] = seq[p + 1];
    }
    off += int64_t(seq.size());
  }
  BackendArray<int32_t> t(*backend_, all);
  BackendArray<float> nll(*backend_, size_t(n));
  backend_->token_nll(logits.get(), t.get(), nll.get(), n, spec_.vocab_size);
  const std::vector<float> every = nll.download();
  std::vector<float> out;
  out.reserve(rows.size());
  for (int64_t r : rows) out.push_back(every[size_t(r)]);
  return out;
}

MatrixRM Transformer::decode(KvCache& cache, const std::vector<int>& new_tokens) const {
  QS_THROW_IF_NOT(!new_tokens.empty(), "decode needs at least one new token");
  const int64_t total = int64_t(cache.length_) + int64_t(new_tokens.size());
  QS_THROW_IF_NOT(total <= spec_.max_position_embeddings, "decoding ", new_tokens.size(),
                  " more token(s) after ", cache.length_, " would exceed the model's context of ",
                  spec_.max_position_embeddings,
                  " positions (max_position_embeddings); shorten the prompt or max_new_tokens");
  std::vector<int> lengths;
  MatrixRM h = embed({new_tokens}, &lengths);  // checks the ids before anything changes
  if (cache.layers_.empty()) {
    cache.layers_.resize(size_t(spec_.num_layers));
    cache.backend_ = backend_;
  }
  QS_THROW_IF_NOT(cache.backend_ == backend_,
                  "a KvCache filled on one backend is used with a model on another");
  QS_ASSERT(int(cache.layers_.size()) == spec_.num_layers &&
                (cache.layers_[0].k.rows() == 0 ||
                 cache.layers_[0].k.cols() == int64_t(spec_.num_kv_heads) * spec_.head_dim),
            "a KvCache is used with a different model than the one that filled it");
  Lease lease(*pool_);
  Backend& b = *backend_;
  const int64_t n = h.rows();
  std::unique_ptr<Arr> dev;
  float* hp = h.data();
  if (!b.host_memory()) {
    dev = std::make_unique<Arr>(b, size_t(h.size()));
    b.to_device(dev->get(), h.data(), size_t(h.size()) * sizeof(float));
    hp = dev->get();
  }
  const DeviceLinear* head = nullptr;
  run_layers(hp, n, lengths, &cache, lease.get(), &head);
  cache.length_ = int(total);
  BackendArray<float> logits(b, size_t(n * spec_.vocab_size));
  head_dev(hp, n, logits.get(), lease.get(), head);
  MatrixRM out(n, spec_.vocab_size);
  b.to_host(out.data(), logits.get(), size_t(out.size()) * sizeof(float));
  return out;
}

void log_softmax_rows(MatrixRM& logits) {
  cpu_log_softmax_rows(logits.data(), logits.rows(), logits.cols());
}

double forward_flops_per_token(const ModelSpec& s, int ctx) {
  const double H = s.hidden_size, I = s.intermediate_size, hd = s.head_dim;
  const double q = s.num_heads * hd, kv = s.num_kv_heads * hd;
  const double linears = H * q * 2 + H * kv * 2 + 3 * H * I;       // q,o ; k,v ; gate,up,down
  const double per_layer = 2 * linears + 2 * 2 * q * (ctx / 2.0);  // QKᵀ and PV, causal average
  return per_layer * s.num_layers + 2 * H * s.vocab_size;
}

}  // namespace qsweep
