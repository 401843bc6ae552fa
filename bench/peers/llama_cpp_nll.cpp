// The llama.cpp side of bench/peers/compare_llama_cpp.sh: loads a GGUF with llama.cpp (a
// prebuilt libllama shipped without headers, e.g. the npm package @node-llama-cpp/linux-x64),
// runs one window of token ids and prints each position's NLL of the next token. The few C API
// pieces used are declared here by hand; structs passed by value are over-allocated (SysV ABI:
// such arguments live in memory and the callee reads only its own prefix).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

extern "C" {
struct llama_model;
struct llama_context;
struct Big {
  unsigned char bytes[1024];
};
struct llama_batch {
  int32_t n_tokens;
  int32_t* token;
  float* embd;
  int32_t* pos;
  int32_t* n_seq_id;
  int32_t** seq_id;
  int8_t* logits;
};
void llama_backend_init(void);
void ggml_backend_load_all_from_path(const char* dir);
Big llama_model_default_params(void);
Big llama_context_default_params(void);
llama_model* llama_model_load_from_file(const char* path, Big params);
llama_context* llama_init_from_model(llama_model* model, Big params);
llama_batch llama_batch_init(int32_t n_tokens, int32_t embd, int32_t n_seq_max);
void llama_batch_free(llama_batch batch);
int32_t llama_decode(llama_context* ctx, llama_batch batch);
float* llama_get_logits_ith(llama_context* ctx, int32_t i);
const void* llama_model_get_vocab(const llama_model* model);
int32_t llama_vocab_n_tokens(const void* vocab);
int32_t llama_model_desc(const llama_model* model, char* buf, size_t buf_size);
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s BACKEND_DIR MODEL.gguf TOKENS.txt (ids, one window)\n",
                 argv[0]);
    return 2;
  }
  llama_backend_init();
  ggml_backend_load_all_from_path(argv[1]);
  llama_model* model = llama_model_load_from_file(argv[2], llama_model_default_params());
  if (!model) {
    std::fprintf(stderr, "llama.cpp refused %s\n", argv[2]);
    return 1;
  }
  char desc[256];
  llama_model_desc(model, desc, sizeof desc);
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  Big cp = llama_context_default_params();
  uint32_t n_ctx = 256;
  std::memcpy(cp.bytes, &n_ctx, 4);  // n_ctx is the first field
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "no context\n");
    return 1;
  }
  std::vector<int32_t> toks;
  std::ifstream in(argv[3]);
  for (int t; in >> t;) toks.push_back(t);
  llama_batch b = llama_batch_init(int32_t(toks.size()), 0, 1);
  b.n_tokens = int32_t(toks.size());
  for (size_t i = 0; i < toks.size(); ++i) {
    b.token[i] = toks[i];
    b.pos[i] = int32_t(i);
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = 0;
    b.logits[i] = 1;
  }
  if (llama_decode(ctx, b) != 0) {
    std::fprintf(stderr, "decode failed\n");
    return 1;
  }
  std::printf("# %s, vocab %d\n", desc, n_vocab);
  for (size_t i = 0; i + 1 < toks.size(); ++i) {
    const float* z = llama_get_logits_ith(ctx, int32_t(i));
    double m = -1e30;
    for (int v = 0; v < n_vocab; ++v) m = std::max(m, double(z[v]));
    double s = 0;
    for (int v = 0; v < n_vocab; ++v) s += std::exp(double(z[v]) - m);
    std::printf("%.6f\n", m + std::log(s) - double(z[toks[i + 1]]));
  }
  llama_batch_free(b);
  return 0;
}
