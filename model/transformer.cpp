#include "model/transformer.h"

#include <tbb/parallel_for.h>

#include <cmath>
#include <limits>

#include "backends/cpu/cpu_gemm.h"
#include "common/errors.h"

namespace qsweep {

namespace {

// y[N, out] = x[N, in] · Wᵀ (+ b)
MatrixRM linear(const MatrixRM& x, const MatrixRM& W, const VectorF& b) {
  MatrixRM y(x.rows(), W.rows());
  cpu_gemm_nt(x.data(), W.data(), y.data(), x.rows(), W.rows(), x.cols());
  if (b.size()) y.rowwise() += b.transpose();
  return y;
}

// HF LlamaRMSNorm: x · rsqrt(mean(x²) + eps) · w, in fp32.
MatrixRM rms_norm(const MatrixRM& x, const VectorF& w, float eps) {
  MatrixRM y(x.rows(), x.cols());
  tbb::parallel_for(int64_t(0), int64_t(x.rows()), [&](int64_t i) {
    const float ms = x.row(i).squaredNorm() / float(x.cols());
    const float r = 1.0f / std::sqrt(ms + eps);
    y.row(i) = (x.row(i) * r).cwiseProduct(w.transpose());
  });
  return y;
}

// Rotary embedding, Hugging Face "rotate half" convention: within each head the
// pair (i, i + d/2) is rotated by angle pos · θ^(−2i/d). Computed like HF in fp32.
void apply_rope(MatrixRM& x, int n_heads, int head_dim, double theta,
                const std::vector<int>& lengths) {
  const int half = head_dim / 2;
  int max_len = 0;
  for (int n : lengths) max_len = std::max(max_len, n);
  std::vector<float> cos_t(size_t(max_len) * half), sin_t(size_t(max_len) * half);
  for (int i = 0; i < half; ++i) {
    const float inv_freq = 1.0f / float(std::pow(theta, double(float(2 * i) / float(head_dim))));
    for (int p = 0; p < max_len; ++p) {
      const float angle = float(p) * inv_freq;
      cos_t[size_t(p) * half + i] = float(std::cos(double(angle)));
      sin_t[size_t(p) * half + i] = float(std::sin(double(angle)));
    }
  }
  std::vector<int64_t> row_pos(size_t(x.rows()));
  int64_t r = 0;
  for (int n : lengths)
    for (int p = 0; p < n; ++p) row_pos[size_t(r++)] = p;
  tbb::parallel_for(int64_t(0), int64_t(x.rows()), [&](int64_t row) {
    const float* c = &cos_t[size_t(row_pos[size_t(row)]) * half];
    const float* s = &sin_t[size_t(row_pos[size_t(row)]) * half];
    float* xr = x.row(row).data();
    for (int h = 0; h < n_heads; ++h) {
      float* v = xr + h * head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i] + a * s[i];
      }
    }
  });
}

// Causal (optionally sliding-window) GQA attention of every sequence and head.
MatrixRM attention(const MatrixRM& q, const MatrixRM& k, const MatrixRM& v,
                   const std::vector<int>& lengths, const ModelSpec& s) {
  const int hd = s.head_dim, nh = s.num_heads, group = s.num_heads / s.num_kv_heads;
  MatrixRM out(q.rows(), q.cols());
  std::vector<int64_t> offsets{0};
  for (int n : lengths) offsets.push_back(offsets.back() + n);
  const float scale = 1.0f / std::sqrt(float(hd));
  const int64_t tasks = int64_t(lengths.size()) * nh;
  tbb::parallel_for(int64_t(0), tasks, [&](int64_t t) {
    const int64_t seq = t / nh;
    const int h = int(t % nh), kvh = h / group;
    const int64_t off = offsets[size_t(seq)], T = lengths[size_t(seq)];
    const auto Q = q.block(off, int64_t(h) * hd, T, hd);
    const auto K = k.block(off, int64_t(kvh) * hd, T, hd);
    const auto V = v.block(off, int64_t(kvh) * hd, T, hd);
    MatrixRM S = (Q * K.transpose()) * scale;
    for (int64_t i = 0; i < T; ++i) {
      const int64_t lo = s.sliding_window > 0 ? std::max<int64_t>(0, i - s.sliding_window + 1) : 0;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = lo; j <= i; ++j) mx = std::max(mx, S(i, j));
      float sum = 0;
      for (int64_t j = 0; j < T; ++j) {
        const float e = (j >= lo && j <= i) ? std::exp(S(i, j) - mx) : 0.0f;
        S(i, j) = e;
        sum += e;
      }
      S.row(i) /= sum;
    }
    out.block(off, int64_t(h) * hd, T, hd).noalias() = S * V;
  });
  return out;
}

}  // namespace

Transformer::Transformer(ModelSpec spec, ModelWeights weights)
    : spec_(std::move(spec)), weights_(std::move(weights)) {
  QS_THROW_IF_NOT(int(weights_.layers.size()) == spec_.num_layers, "model has ",
                  weights_.layers.size(), " layers of weights but the spec says ",
                  spec_.num_layers);
}

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
    for (int id : s) h.row(r++) = weights_.embed.row(id);
  return h;
}

void Transformer::run_layer(int layer, MatrixRM& hidden, const std::vector<int>& lengths,
                            const LinearInputHook& hook,
                            std::optional<LinearRole> stop_after) const {
  QS_ASSERT(layer >= 0 && layer < spec_.num_layers);
  const LayerWeights& L = weights_.layers[size_t(layer)];
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
    apply_rope(q, spec_.num_heads, spec_.head_dim, spec_.rope_theta, lengths);
    apply_rope(k, spec_.num_kv_heads, spec_.head_dim, spec_.rope_theta, lengths);
    const MatrixRM a = attention(q, k, v, lengths, spec_);
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
    tbb::parallel_for(int64_t(0), int64_t(g.rows()), [&](int64_t i) {
      float* gr = g.row(i).data();
      const float* ur = u.row(i).data();
      for (int64_t j = 0; j < g.cols(); ++j) gr[j] = gr[j] / (1.0f + std::exp(-gr[j])) * ur[j];
    });
    seen(LinearRole::Down, g);
    if (stop_after == LinearRole::Down) return;
    hidden += linear(g, L.w_down, VectorF());
  }
}

MatrixRM Transformer::head(const MatrixRM& hidden) const {
  const MatrixRM x = rms_norm(hidden, weights_.final_norm, spec_.rms_norm_eps);
  return linear(x, weights_.lm_head, VectorF());
}

MatrixRM Transformer::forward(const std::vector<std::vector<int>>& sequences) const {
  std::vector<int> lengths;
  MatrixRM h = embed(sequences, &lengths);
  for (int l = 0; l < spec_.num_layers; ++l) run_layer(l, h, lengths);
  return head(h);
}

MatrixRM Transformer::forward(const std::vector<int>& tokens) const {
  return forward(std::vector<std::vector<int>>{tokens});
}

void log_softmax_rows(MatrixRM& logits) {
  tbb::parallel_for(int64_t(0), int64_t(logits.rows()), [&](int64_t i) {
    float* r = logits.row(i).data();
    const int64_t n = logits.cols();
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, r[j]);
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += std::exp(double(r[j] - mx));
    const float lse = mx + float(std::log(sum));
    for (int64_t j = 0; j < n; ++j) r[j] -= lse;
  });
}

double forward_flops_per_token(const ModelSpec& s, int ctx) {
  const double H = s.hidden_size, I = s.intermediate_size, hd = s.head_dim;
  const double q = s.num_heads * hd, kv = s.num_kv_heads * hd;
  const double linears = H * q * 2 + H * kv * 2 + 3 * H * I;       // q,o ; k,v ; gate,up,down
  const double per_layer = 2 * linears + 2 * 2 * q * (ctx / 2.0);  // QKᵀ and PV, causal average
  return per_layer * s.num_layers + 2 * H * s.vocab_size;
}

}  // namespace qsweep
