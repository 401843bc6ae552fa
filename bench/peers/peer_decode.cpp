// peer_decode MODEL.gguf IDS.txt PROMPT NEW [threads=2]
// llama.cpp's side of run_peers.sh's decode row (built by that script against llama.h; not part
// of qsweep's build): one llama_decode of PROMPT ids, then NEW single-token llama_decode calls
// fed the following ids (teacher-forced, as bench_peer decode does), timed; prints JSON.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "llama.h"

static void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL.gguf IDS.txt PROMPT NEW [threads]\n", argv[0]);
    return 2;
  }
  const int prompt = std::atoi(argv[3]), steps = std::atoi(argv[4]);
  const int threads = argc > 5 ? std::atoi(argv[5]) : 2;
  llama_log_set(quiet_log, nullptr);
  llama_backend_init();
  std::vector<llama_token> ids;
  std::ifstream in(argv[2]);
  for (long t; in >> t;) ids.push_back(llama_token(t));
  if (int(ids.size()) < prompt + steps) {
    std::fprintf(stderr, "%s: too few ids\n", argv[2]);
    return 2;
  }
  llama_model* model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (!model) return 1;
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = uint32_t(prompt + steps);
  cp.n_batch = cp.n_ubatch = uint32_t(prompt);
  cp.n_seq_max = 1;
  cp.n_threads = cp.n_threads_batch = threads;
  cp.no_perf = true;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) return 1;
  if (llama_decode(ctx, llama_batch_get_one(ids.data(), prompt)) != 0) return 1;
  const auto t0 = std::chrono::steady_clock::now();
  double checksum = 0;
  for (int i = 0; i < steps; ++i) {
    if (llama_decode(ctx, llama_batch_get_one(&ids[size_t(prompt + i)], 1)) != 0) return 1;
    checksum += llama_get_logits_ith(ctx, -1)[0];
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("{\"tokens_per_second\": %.2f, \"checksum\": %.6f, \"threads\": %d}\n", steps / s,
              checksum, threads);
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
