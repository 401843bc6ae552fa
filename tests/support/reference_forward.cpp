#include "tests/support/reference_forward.h"

#include <algorithm>
#include <cmath>

#include "backends/cpu/cpu_gemm.h"
#include "backends/cpu/cpu_ops.h"
#include "common/errors.h"
#include "model/rope.h"

namespace qsweep::test {

const MatrixRM& RefLayerWeights::linear(LinearRole r) const {
  switch (r) {
    case LinearRole::Q:
      return wq;
    case LinearRole::K:
      return wk;
    case LinearRole::V:
      return wv;
    case LinearRole::O:
      return wo;
    case LinearRole::Gate:
      return w_gate;
    case LinearRole::Up:
      return w_up;
    case LinearRole::Down:
      return w_down;
  }
  QS_ASSERT(false, "bad LinearRole");
}

RefWeights reference_weights(const ModelWeights& w) {
  RefWeights r;
  r.embed = w.embed.to_matrix();
  for (const LayerWeights& L : w.layers) {
    RefLayerWeights x;
    x.wq = L.wq.to_matrix();
    x.wk = L.wk.to_matrix();
    x.wv = L.wv.to_matrix();
    x.wo = L.wo.to_matrix();
    x.w_gate = L.w_gate.to_matrix();
    x.w_up = L.w_up.to_matrix();
    x.w_down = L.w_down.to_matrix();
    x.bq = L.bq, x.bk = L.bk, x.bv = L.bv, x.bo = L.bo;
    x.attn_norm = L.attn_norm, x.mlp_norm = L.mlp_norm, x.q_norm = L.q_norm, x.k_norm = L.k_norm;
    r.layers.push_back(std::move(x));
  }
  r.final_norm = w.final_norm;
  r.lm_head = w.lm_head.to_matrix();
  return r;
}

namespace {

// y[N, out] = x[N, in] · Wᵀ (+ b)
MatrixRM linear(const MatrixRM& x, const MatrixRM& W, const VectorF& b) {
  MatrixRM y(x.rows(), W.rows());
  cpu_gemm_nt(x.data(), W.data(), y.data(), x.rows(), W.rows(), x.cols());
  if (b.size()) y.rowwise() += b.transpose();
  return y;
}

MatrixRM rms_norm(const MatrixRM& x, const VectorF& w, float eps) {
  MatrixRM y(x.rows(), x.cols());
  cpu_rms_norm(x.data(), w.data(), y.data(), x.rows(), x.cols(), eps);
  return y;
}

void apply_rope(MatrixRM& x, int n_heads, int head_dim, const std::vector<float>& inv_freq,
                const std::vector<int64_t>& row_pos) {
  cpu_rope(x.data(), x.rows(), n_heads, head_dim, inv_freq, row_pos);
}

// Qwen3: RMSNorm over each head's vector (x: [rows, n_heads · head_dim] seen as
// [rows · n_heads, head_dim]), in place; nothing when the model has no such norm.
void head_rms_norm(MatrixRM& x, const VectorF& w, int head_dim, float eps) {
  if (w.size() == 0) return;
  cpu_rms_norm(x.data(), w.data(), x.data(), x.size() / head_dim, head_dim, eps);
}

// Position of every row of packed sequences that each start at position 0.
std::vector<int64_t> packed_positions(const std::vector<int>& lengths) {
  std::vector<int64_t> pos;
  for (int n : lengths)
    for (int p = 0; p < n; ++p) pos.push_back(p);
  return pos;
}

MatrixRM attention(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                   const std::vector<AttentionSpan>& spans, const ModelSpec& s) {
  MatrixRM out(q.rows(), q.cols());
  cpu_attention(q.data(), k.data(), v.data(), out.data(), spans,
                {s.num_heads, s.num_kv_heads, s.head_dim, s.sliding_window});
  return out;
}

}  // namespace

ReferenceForward::ReferenceForward(ModelSpec spec, RefWeights weights)
    : spec_(std::move(spec)), weights_(std::move(weights)), inv_freq_(rope_inv_freq(spec_)) {
  QS_THROW_IF_NOT(int(weights_.layers.size()) == spec_.num_layers, "model has ",
                  weights_.layers.size(), " layers of weights but the spec says ",
                  spec_.num_layers);
  for (const RefLayerWeights& L : weights_.layers) {
    if (L.wq.size() == 0) continue;  // a weightless shell (a K-quant mix's QuantizedModel)
    const int64_t want = spec_.qk_norm ? spec_.head_dim : 0;
    QS_THROW_IF_NOT(L.q_norm.size() == want && L.k_norm.size() == want,
                    "model has q_norm/k_norm of ", L.q_norm.size(), "/", L.k_norm.size(),
                    " values but the spec implies ", want);
  }
}

MatrixRM ReferenceForward::embed(const std::vector<std::vector<int>>& sequences,
                                 std::vector<int>* lengths) const {
  int64_t n = 0;
  lengths->clear();
  for (const auto& s : sequences) {
    lengths->push_back(int(s.size()));
    n += int64_t(s.size());
  }
  MatrixRM h(n, spec_.hidden_size);
  int64_t r = 0;
  for (const auto& s : sequences)
    for (int id : s) h.row(r++) = weights_.embed.row(id);
  return h;
}

void ReferenceForward::run_layer(int layer, MatrixRM& hidden, const std::vector<int>& lengths,
                                 const LinearInputHook& hook,
                                 std::optional<LinearRole> stop_after) const {
  layer_impl(layer, hidden, lengths, nullptr, hook, stop_after);
}

void ReferenceForward::layer_impl(int layer, MatrixRM& hidden, const std::vector<int>& lengths,
                                  RefKvCache* cache, const LinearInputHook& hook,
                                  std::optional<LinearRole> stop_after) const {
  QS_ASSERT(layer >= 0 && layer < spec_.num_layers);
  const RefLayerWeights& L = weights_.layers[size_t(layer)];
  auto seen = [&](LinearRole r, const MatrixRM& x) {
    if (hook) hook(layer, r, x);
  };
  // Attention block.
  {
    const MatrixRM x = rms_norm(hidden, L.attn_norm, spec_.rms_norm_eps);
    seen(LinearRole::Q, x);
    seen(LinearRole::K, x);
    seen(LinearRole::V, x);
    if (stop_after && *stop_after <= LinearRole::V) return;
    MatrixRM q = linear(x, L.wq, L.bq);
    MatrixRM k = linear(x, L.wk, L.bk);
    const MatrixRM v = linear(x, L.wv, L.bv);
    std::vector<AttentionSpan> spans;
    std::vector<int64_t> pos;
    if (cache) {
      // One sequence continuing the cache: positions go on from its length, and
      // the new keys/values join the cached ones before attending.
      const int64_t p0 = cache->length, n = hidden.rows();
      for (int64_t i = 0; i < n; ++i) pos.push_back(p0 + i);
      spans.push_back({0, 0, n, p0});
    } else {
      pos = packed_positions(lengths);
      int64_t off = 0;
      for (int n : lengths) {
        spans.push_back({off, off, n, 0});
        off += n;
      }
    }
    head_rms_norm(q, L.q_norm, spec_.head_dim, spec_.rms_norm_eps);
    head_rms_norm(k, L.k_norm, spec_.head_dim, spec_.rms_norm_eps);
    apply_rope(q, spec_.num_heads, spec_.head_dim, inv_freq_, pos);
    apply_rope(k, spec_.num_kv_heads, spec_.head_dim, inv_freq_, pos);
    MatrixRM a;
    if (cache) {
      RefKvCache::Layer& c = cache->layers[size_t(layer)];
      const int64_t p0 = cache->length, need = p0 + k.rows();
      if (c.k.rows() < need) {
        // Grow geometrically (capped at the context) so a token-by-token decode
        // copies the cache O(log n) times, not n times.
        const int64_t cap =
            std::min<int64_t>(std::max<int64_t>(need, 2 * c.k.rows()),
                              std::max<int64_t>(need, spec_.max_position_embeddings));
        c.k.conservativeResize(cap, k.cols());
        c.v.conservativeResize(cap, v.cols());
      }
      c.k.middleRows(p0, k.rows()) = k;
      c.v.middleRows(p0, v.rows()) = v;
      a = attention(q, c.k, c.v, spans, spec_);
    } else {
      a = attention(q, k, v, spans, spec_);
    }
    seen(LinearRole::O, a);
    if (stop_after == LinearRole::O) return;
    hidden += linear(a, L.wo, L.bo);
  }
  // SwiGLU MLP block: down(silu(gate(x)) * up(x)).
  {
    const MatrixRM x = rms_norm(hidden, L.mlp_norm, spec_.rms_norm_eps);
    seen(LinearRole::Gate, x);
    seen(LinearRole::Up, x);
    if (stop_after == LinearRole::Gate || stop_after == LinearRole::Up) return;
    MatrixRM g = linear(x, L.w_gate, VectorF());
    const MatrixRM u = linear(x, L.w_up, VectorF());
    cpu_swiglu(g.data(), u.data(), g.size());
    seen(LinearRole::Down, g);
    if (stop_after == LinearRole::Down) return;
    hidden += linear(g, L.w_down, VectorF());
  }
}

MatrixRM ReferenceForward::head(const MatrixRM& hidden) const {
  const MatrixRM x = rms_norm(hidden, weights_.final_norm, spec_.rms_norm_eps);
  return linear(x, weights_.lm_head, VectorF());
}

MatrixRM ReferenceForward::forward(const std::vector<std::vector<int>>& sequences) const {
  std::vector<int> lengths;
  MatrixRM h = embed(sequences, &lengths);
  for (int l = 0; l < spec_.num_layers; ++l) run_layer(l, h, lengths);
  return head(h);
}

MatrixRM ReferenceForward::decode(RefKvCache& cache, const std::vector<int>& new_tokens) const {
  QS_THROW_IF_NOT(!new_tokens.empty(), "decode needs at least one new token");
  const int64_t total = int64_t(cache.length) + int64_t(new_tokens.size());
  QS_THROW_IF_NOT(total <= spec_.max_position_embeddings, "decoding ", new_tokens.size(),
                  " more token(s) after ", cache.length, " would exceed the model's context of ",
                  spec_.max_position_embeddings,
                  " positions (max_position_embeddings); shorten the prompt or max_new_tokens");
  std::vector<int> lengths;
  MatrixRM h = embed({new_tokens}, &lengths);  // checks the ids before anything changes
  if (cache.layers.empty()) cache.layers.resize(size_t(spec_.num_layers));
  QS_ASSERT(int(cache.layers.size()) == spec_.num_layers &&
                (cache.layers[0].k.rows() == 0 ||
                 cache.layers[0].k.cols() == int64_t(spec_.num_kv_heads) * spec_.head_dim),
            "a KvCache is used with a different model than the one that filled it");
  for (int l = 0; l < spec_.num_layers; ++l) layer_impl(l, h, lengths, &cache, {}, std::nullopt);
  cache.length = int(total);
  return head(h);
}

}  // namespace qsweep::test
