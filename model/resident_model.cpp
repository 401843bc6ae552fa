#include "model/resident_model.h"

#include <array>

#include "common/errors.h"
#include "model/rope.h"

namespace qsweep {

namespace {
std::unique_ptr<BackendArray<float>> upload(Backend& b, const float* data, int64_t n) {
  auto a = std::make_unique<BackendArray<float>>(b, size_t(n));
  if (n) b.to_device(a->get(), data, size_t(n) * sizeof(float));
  return a;
}
template <typename M>
std::unique_ptr<BackendArray<float>> upload(Backend& b, const M& m) {
  return upload(b, m.data(), m.size());
}
using Array = std::unique_ptr<BackendArray<float>>;
}  // namespace

struct ResidentModel::Weights {
  struct Layer {
    std::array<Array, kAllLinearRoles.size()> linear;  ///< indexed by LinearRole
    Array bq, bk, bv, bo, attn_norm, mlp_norm, q_norm, k_norm;
    const float* w(LinearRole r) const { return linear[size_t(r)]->get(); }
  };
  std::vector<Layer> layers;
  Array final_norm, lm_head;
};

// Activations of one call, in backend memory.
struct ResidentModel::Hidden {
  int64_t rows = 0;
  Array h, logits;
};

ResidentModel::ResidentModel(Backend& backend, const Transformer& model)
    : backend_(backend),
      spec_(model.spec()),
      inv_freq_(rope_inv_freq(spec_)),
      embed_(model.weights().embed) {
  const ModelWeights& mw = model.weights();
  w_ = std::make_unique<Weights>();
  for (const LayerWeights& L : mw.layers) {
    Weights::Layer d;
    for (LinearRole r : kAllLinearRoles) d.linear[size_t(r)] = upload(backend_, L.linear(r));
    d.bq = upload(backend_, L.bq);
    d.bk = upload(backend_, L.bk);
    d.bv = upload(backend_, L.bv);
    d.bo = upload(backend_, L.bo);
    d.attn_norm = upload(backend_, L.attn_norm);
    d.mlp_norm = upload(backend_, L.mlp_norm);
    d.q_norm = upload(backend_, L.q_norm);
    d.k_norm = upload(backend_, L.k_norm);
    w_->layers.push_back(std::move(d));
  }
  w_->final_norm = upload(backend_, mw.final_norm);
  w_->lm_head = upload(backend_, mw.lm_head);
}

ResidentModel::~ResidentModel() = default;

void ResidentModel::run(const std::vector<std::vector<int>>& sequences, Hidden& out) {
  const ModelSpec& s = spec_;
  const int64_t H = s.hidden_size, I = s.intermediate_size;
  const int64_t qw = int64_t(s.num_heads) * s.head_dim, kw = int64_t(s.num_kv_heads) * s.head_dim;
  std::vector<int64_t> pos;
  std::vector<AttentionSpan> spans;
  int64_t n = 0;
  for (const auto& seq : sequences) {
    // Like Transformer::forward, no limit at max_position_embeddings: RoPE extends, and the
    // CLI warns that such a run measures extrapolation.
    spans.push_back({n, n, int64_t(seq.size()), 0});
    for (size_t p = 0; p < seq.size(); ++p) pos.push_back(int64_t(p));
    n += int64_t(seq.size());
  }
  MatrixRM emb(n, H);
  int64_t r = 0;
  for (const auto& seq : sequences)
    for (int id : seq) {
      QS_THROW_IF_NOT(id >= 0 && id < s.vocab_size, "token id ", id, " is outside the vocabulary (",
                      s.vocab_size, ")");
      emb.row(r++) = embed_.row(id);
    }
  Backend& b = backend_;
  out.rows = n;
  out.h = upload(b, emb);
  BackendArray<float> x(b, size_t(n * H)), q(b, size_t(n * qw)), k(b, size_t(n * kw)),
      v(b, size_t(n * kw)), a(b, size_t(n * qw)), g(b, size_t(n * I)), u(b, size_t(n * I)),
      tmp(b, size_t(n * H));
  const AttentionShape shape{s.num_heads, s.num_kv_heads, s.head_dim, s.sliding_window};
  auto linear = [&](const float* in, const float* W, const Array& bias, float* y, int64_t rows,
                    int64_t out_f, int64_t in_f) {
    b.gemm_nt(in, W, y, rows, out_f, in_f);
    if (bias->size()) b.add_row_bias(y, bias->get(), rows, out_f);
  };
  for (const auto& L : w_->layers) {
    b.rms_norm(out.h->get(), L.attn_norm->get(), x.get(), n, H, s.rms_norm_eps);
    linear(x.get(), L.w(LinearRole::Q), L.bq, q.get(), n, qw, H);
    linear(x.get(), L.w(LinearRole::K), L.bk, k.get(), n, kw, H);
    linear(x.get(), L.w(LinearRole::V), L.bv, v.get(), n, kw, H);
    if (L.q_norm->size()) {  // Qwen3: RMSNorm of each head's q and k before RoPE
      b.rms_norm(q.get(), L.q_norm->get(), q.get(), n * s.num_heads, s.head_dim, s.rms_norm_eps);
      b.rms_norm(k.get(), L.k_norm->get(), k.get(), n * s.num_kv_heads, s.head_dim, s.rms_norm_eps);
    }
    b.rope(q.get(), n, s.num_heads, s.head_dim, inv_freq_, pos);
    b.rope(k.get(), n, s.num_kv_heads, s.head_dim, inv_freq_, pos);
    b.attention(q.get(), k.get(), v.get(), a.get(), spans, shape);
    linear(a.get(), L.w(LinearRole::O), L.bo, tmp.get(), n, H, qw);
    b.add(out.h->get(), tmp.get(), n * H);
    b.rms_norm(out.h->get(), L.mlp_norm->get(), x.get(), n, H, s.rms_norm_eps);
    b.gemm_nt(x.get(), L.w(LinearRole::Gate), g.get(), n, I, H);
    b.gemm_nt(x.get(), L.w(LinearRole::Up), u.get(), n, I, H);
    b.swiglu(g.get(), u.get(), n * I);
    b.gemm_nt(g.get(), L.w(LinearRole::Down), tmp.get(), n, H, I);
    b.add(out.h->get(), tmp.get(), n * H);
  }
  b.rms_norm(out.h->get(), w_->final_norm->get(), x.get(), n, H, s.rms_norm_eps);
  out.logits = std::make_unique<BackendArray<float>>(b, size_t(n * s.vocab_size));
  b.gemm_nt(x.get(), w_->lm_head->get(), out.logits->get(), n, s.vocab_size, H);
}

MatrixRM ResidentModel::forward(const std::vector<std::vector<int>>& sequences) {
  Hidden h;
  run(sequences, h);
  MatrixRM logits(h.rows, spec_.vocab_size);
  if (h.rows) backend_.to_host(logits.data(), h.logits->get(), size_t(logits.size()) * 4);
  return logits;
}

std::vector<float> ResidentModel::next_token_nll(const std::vector<std::vector<int>>& sequences) {
  Hidden h;
  run(sequences, h);
  // Row of each predicted position and its target, over the packed rows.
  std::vector<int32_t> targets;
  std::vector<int64_t> rows;
  int64_t off = 0;
  for (const auto& seq : sequences) {
    for (size_t p = 0; p + 1 < seq.size(); ++p) {
      rows.push_back(off + int64_t(p));
      targets.push_back(seq[p + 1]);
    }
    off += int64_t(seq.size());
  }
  // Full-row targets: the last row of each sequence has none; use 0 and drop it after.
  std::vector<int32_t> all(size_t(h.rows), 0);
  for (size_t i = 0; i < rows.size(); ++i) all[size_t(rows[i])] = targets[i];
  BackendArray<int32_t> t(backend_, all);
  BackendArray<float> nll(backend_, size_t(h.rows));
  backend_.token_nll(h.logits->get(), t.get(), nll.get(), h.rows, spec_.vocab_size);
  const std::vector<float> every = nll.download();
  std::vector<float> out;
  out.reserve(rows.size());
  for (int64_t r : rows) out.push_back(every[size_t(r)]);
  return out;
}

}  // namespace qsweep
