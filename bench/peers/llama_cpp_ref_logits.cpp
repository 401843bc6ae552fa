// llama.cpp's logits for a shared model's reference prompts, compared with the reference
// (bench/peers/ref_logits.h). Built by bench/peers/check_gguf_arch.sh against a llama.cpp build
// outside the repository (llama.h only).
//   llama_cpp_ref_logits MODEL.gguf MODEL_DIR [threads]
#include <cstdio>
#include <cstdlib>

#include "bench/peers/ref_logits.h"
#include "llama.h"

static void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.gguf MODEL_DIR [threads]\n", argv[0]);
    return 2;
  }
  int64_t vocab = 0;
  const auto prompts = ref_logits::load(argv[2], &vocab);
  llama_log_set(quiet_log, nullptr);
  llama_backend_init();
  llama_model* model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (!model) return std::fprintf(stderr, "load failed: %s\n", argv[1]), 1;
  if (llama_vocab_n_tokens(llama_model_get_vocab(model)) != vocab)
    return std::fprintf(stderr, "vocabulary size differs from the reference\n"), 1;
  std::vector<std::vector<std::vector<float>>> got(prompts.size());
  for (size_t p = 0; p < prompts.size(); ++p) {
    const auto& q = prompts[p];
    const int n = int(q.ids.size());
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = uint32_t(n);
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = argc > 3 ? std::atoi(argv[3]) : 2;
    cp.no_perf = true;
    // fp32 throughout: llama.cpp's default F16 KV cache alone moves logits by ~1e-2.
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context* ctx = llama_init_from_model(model, cp);
    if (!ctx) return std::fprintf(stderr, "no context\n"), 1;
    llama_batch b = llama_batch_init(n, 0, 1);
    b.n_tokens = n;
    for (int i = 0; i < n; ++i) {
      b.token[i] = q.ids[size_t(i)];
      b.pos[i] = i;
      b.n_seq_id[i] = 1;
      b.seq_id[i][0] = 0;
      b.logits[i] = std::find(q.rows.begin(), q.rows.end(), i) != q.rows.end();
    }
    if (llama_decode(ctx, b) != 0) return std::fprintf(stderr, "decode failed\n"), 1;
    for (int r : q.rows) {
      const float* z = llama_get_logits_ith(ctx, r);
      got[p].emplace_back(z, z + vocab);
    }
    llama_batch_free(b);
    llama_free(ctx);
  }
  ref_logits::report("llama.cpp", prompts, vocab,
                     [&](size_t p, size_t r) { return got[p][r].data(); });
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
