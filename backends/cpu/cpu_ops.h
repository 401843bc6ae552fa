// The transformer's non-GEMM operations on the CPU, on plain row-major fp32 arrays: the
// forward pass calls them, and they are the CPU twins of the CUDA kernels (backend.h). Kept
// free functions, like cpu_gemm_nt, so the forward pass pays no virtual call per row.
#pragma once

#include <cstdint>
#include <vector>

namespace qsweep {

/// HF LlamaRMSNorm: y[r] = x[r] · rsqrt(mean(x[r]²) + eps) ⊙ w, fp32. x, y: [rows, dim].
void cpu_rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps);

/// Rotary embedding in place, Hugging Face "rotate half" convention: within each of the
/// `n_heads` heads of row r the pair (i, i + head_dim/2) is rotated by the fp32 angle
/// row_pos[r] · inv_freq[i] (inv_freq: head_dim/2 entries, model/rope.h's rope_inv_freq).
/// x: [rows, n_heads · head_dim]; row_pos has `rows` entries.
void cpu_rope(float* x, int64_t rows, int n_heads, int head_dim, const std::vector<float>& inv_freq,
              const std::vector<int64_t>& row_pos);

/// One causal attention problem: `n` query rows from row q_off of q (output rows likewise) at
/// positions p0 … p0 + n − 1, over the keys/values of positions 0 … p0 + n − 1 stored from row
/// kv_off of k and v. A packed prefill has p0 = 0, q_off = kv_off; a decode step reads a cache.
struct AttentionSpan {
  int64_t q_off, kv_off, n, p0;
};
struct AttentionShape {
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int sliding_window = 0;  ///< 0 = none; else a query sees its last `sliding_window` positions
};
/// Causal GQA softmax(q·kᵀ/√d)·v of every span and head, fp32. q, out: [·, n_heads·head_dim];
/// k, v: [·, n_kv_heads·head_dim]. Rows of `out` outside every span are left untouched.
void cpu_attention(const float* q, const float* k, const float* v, float* out,
                   const std::vector<AttentionSpan>& spans, const AttentionShape& shape);

/// gate[i] = silu(gate[i]) · up[i] over n elements (SwiGLU's product).
void cpu_swiglu(float* gate, const float* up, int64_t n);

/// Each row of logits [rows, cols] replaced by its log-softmax (max-shifted, sum in fp64).
void cpu_log_softmax_rows(float* logits, int64_t rows, int64_t cols);

/// nll[r] = −log softmax(logits[r])[targets[r]] (logits unchanged), the same arithmetic as
/// cpu_log_softmax_rows.
void cpu_token_nll(const float* logits, const int32_t* targets, float* nll, int64_t rows,
                   int64_t cols);

}  // namespace qsweep
