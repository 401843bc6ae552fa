// The qsweep side of bench/peers/run_peers.sh (one program, one subcommand per table row):
//   model DIR HIDDEN INTER LAYERS HEADS KV_HEADS SEED TOKENIZER_DIR
//       a random-weight Llama checkpoint (HF layout, F16) with TOKENIZER_DIR's tokenizer
//   gguf HF_DIR OUT.gguf            the checkpoint as an F16 GGUF (the peer's input)
//   ids TOKENIZER_DIR TEXT N OUT    the first N token ids of TEXT, one per line
//   prefill GGUF IDS CTX            evaluate_perplexity (chunks of CTX) → tokens/s
//   decode GGUF IDS PROMPT NEW      batch-1 decode: prefill PROMPT ids, then NEW steps of one
//                                   (teacher-forced) id each → decode tokens/s
//   hessian ROWS COLS               GPTQ's Hessian accumulation (ActivationStats::add) and,
//                                   built with OpenBLAS, cblas_ssyrk / dsyrk of the same X
//   peak THREADS                    the machine's fp32 FMA peak (GFLOP/s)
// Each prints one JSON object on stdout. Thread counts come from QSWEEP_THREADS.
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "backends/backend.h"
#include "calibration/calibration.h"
#include "common/mapped_file.h"
#include "eval/perplexity.h"
#include "formats/formats.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "quantize/kquant_mix.h"
#ifdef QSWEEP_PEER_OPENBLAS
#include <cblas.h>
#endif

using namespace qsweep;
namespace fs = std::filesystem;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<int> read_ids(const std::string& path) {
  std::vector<int> ids;
  std::ifstream in(path);
  for (int t; in >> t;) ids.push_back(t);
  QS_THROW_IF_NOT(!ids.empty(), path, ": no token ids");
  return ids;
}

Transformer load(const std::string& gguf) {
  LoadedModel m = load_model(gguf);
  return Transformer(m.spec, std::move(m.weights));
}

int cmd_model(char** a) {
  ModelSpec s;
  s.arch_name = "LlamaForCausalLM";
  s.hidden_size = std::atoi(a[1]);
  s.intermediate_size = std::atoi(a[2]);
  s.num_layers = std::atoi(a[3]);
  s.num_heads = std::atoi(a[4]);
  s.num_kv_heads = std::atoi(a[5]);
  s.head_dim = s.hidden_size / s.num_heads;
  s.max_position_embeddings = 2048;
  const std::string tok_dir = a[7];
  s.vocab_size = load_tokenizer(tok_dir)->vocab_size();
  save_hf_checkpoint(a[0], s, random_weights(s, uint64_t(std::atoll(a[6])), 0.02f), "F16");
  for (const char* f : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
    if (fs::exists(tok_dir + "/" + f))
      fs::copy_file(tok_dir + "/" + f, std::string(a[0]) + "/" + f,
                    fs::copy_options::overwrite_existing);
  std::printf("{\"parameters\": %lld}\n", s.parameter_count());
  return 0;
}

int cmd_gguf(char** a) {
  LoadedModel hf = load_model(a[0]);
  GgufTypePlan plan;  // F16 weights, F32 norms
  write_gguf(a[1], hf.spec, hf.weights, a[0], plan);
  std::printf("{\"written\": \"%s\"}\n", a[1]);
  return 0;
}

int cmd_ids(char** a) {
  std::vector<int> ids = load_tokenizer(a[0])->encode(read_text_file(a[1]), false);
  const size_t n = size_t(std::atoll(a[2]));
  QS_THROW_IF_NOT(ids.size() >= n, a[1], " has only ", ids.size(), " tokens, ", n, " asked");
  ids.resize(n);
  std::ofstream out(a[3]);
  for (int t : ids) out << t << "\n";
  std::printf("{\"ids\": %zu}\n", n);
  return 0;
}

int cmd_prefill(char** a) {
  const Transformer model = load(a[0]);
  PerplexityOptions opt;
  opt.ctx = std::atoi(a[2]);
  const PerplexityResult r = evaluate_perplexity(model, read_ids(a[1]), opt);
  std::printf("{\"tokens_per_second\": %.2f, \"perplexity\": %.6f, \"threads\": %d}\n",
              r.tokens_per_second, r.perplexity, backend_threads());
  return 0;
}

int cmd_decode(char** a) {
  const Transformer model = load(a[0]);
  const std::vector<int> ids = read_ids(a[1]);
  const size_t prompt = size_t(std::atoi(a[2])), steps = size_t(std::atoi(a[3]));
  QS_THROW_IF_NOT(ids.size() >= prompt + steps, a[1], ": too few ids");
  KvCache cache;
  model.decode(cache, std::vector<int>(ids.begin(), ids.begin() + std::ptrdiff_t(prompt)));
  const double t0 = now();
  double checksum = 0;
  std::vector<MatrixRM> logits(steps);
  for (size_t i = 0; i < steps; ++i) {
    logits[i] = model.decode(cache, {ids[prompt + i]});
    checksum += logits[i](0, 0);
  }
  const double s = now() - t0;
  uint64_t fnv = 1469598103934665603ull;  // FNV-1a of every logit's bytes (bit-identity checks)
  for (const MatrixRM& l : logits)
    for (const unsigned char c : std::string_view(reinterpret_cast<const char*>(l.data()),
                                                  size_t(l.size()) * sizeof(float)))
      fnv = (fnv ^ c) * 1099511628211ull;
  std::printf(
      "{\"tokens_per_second\": %.2f, \"checksum\": %.6f, \"logits_fnv\": \"%016llx\", "
      "\"threads\": %d}\n",
      double(steps) / s, checksum, static_cast<unsigned long long>(fnv), backend_threads());
  return 0;
}

int cmd_hessian(char** a) {
  const int64_t n = std::atoll(a[0]), d = std::atoll(a[1]);
  std::mt19937 rng(1);
  std::normal_distribution<float> g;
  MatrixRM x(n, d);
  for (int64_t i = 0; i < x.size(); ++i) x.data()[i] = g(rng);
  ActivationStats st;
  double t0 = now();
  st.add(x, true);
  const double ours = now() - t0;
  std::printf("{\"qsweep_seconds\": %.4f", ours);
#ifdef QSWEEP_PEER_OPENBLAS
  std::vector<float> hs(size_t(d * d), 0.f);
  t0 = now();
  cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, int(d), int(n), 1.f, x.data(), int(d), 0.f,
              hs.data(), int(d));
  const double ss = now() - t0;
  const Eigen::MatrixXd xd = x.cast<double>();
  std::vector<double> hd(size_t(d * d), 0.0);
  t0 = now();
  // xd is column-major [n, d], i.e. row-major Xᵀ [d, n]: H = Xᵀ·(Xᵀ)ᵀ.
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, int(d), int(n), 1.0, xd.data(), int(n), 0.0,
              hd.data(), int(d));
  const double ds = now() - t0;
  std::printf(", \"openblas_ssyrk_seconds\": %.4f, \"openblas_dsyrk_seconds\": %.4f", ss, ds);
#endif
  std::printf(", \"rows\": %lld, \"cols\": %lld, \"threads\": %d}\n", (long long)n, (long long)d,
              backend_threads());
  return 0;
}

// 12 independent FMA chains per thread: enough to cover the latency on 2 FMA ports.
template <class V, V (*Fma)(V, V, V), V (*Set)(float)>
double fma_loop(int64_t iters) {
  V acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = Set(float(i) * 1e-3f);
  const V m = Set(0.999999f), c = Set(1e-7f);
  for (int64_t k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i) acc[i] = Fma(acc[i], m, c);
  float s = 0;
  for (int i = 0; i < 12; ++i) s += reinterpret_cast<const float*>(&acc[i])[0];
  return double(s);
}

__attribute__((target("avx512f"))) __m512 fma512(__m512 a, __m512 b, __m512 c) {
  return _mm512_fmadd_ps(a, b, c);
}
__attribute__((target("avx512f"))) __m512 set512(float v) {
  return _mm512_set1_ps(v);
}
__attribute__((target("avx2,fma"))) __m256 fma256(__m256 a, __m256 b, __m256 c) {
  return _mm256_fmadd_ps(a, b, c);
}
__attribute__((target("avx2,fma"))) __m256 set256(float v) {
  return _mm256_set1_ps(v);
}

int cmd_peak(char** a) {
  const int threads = std::atoi(a[0]);
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const int lanes = avx512 ? 16 : 8;
  const int64_t iters = 200'000'000 / 12;
  std::atomic<double> sink{0};
  auto body = [&] {
    const double v =
        avx512 ? fma_loop<__m512, fma512, set512>(iters) : fma_loop<__m256, fma256, set256>(iters);
    sink = sink + v;
  };
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) ts.emplace_back(body);
    for (auto& t : ts) t.join();
    const double s = now() - t0;
    best = std::max(best, double(threads) * double(iters) * 12 * lanes * 2 / s / 1e9);
  }
  std::printf("{\"gflops\": %.1f, \"isa\": \"%s\", \"threads\": %d, \"sink\": %g}\n", best,
              avx512 ? "avx512" : "avx2", threads, sink.load());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::pair<std::string, std::pair<int, int (*)(char**)>>> cmds = {
      {"model", {8, cmd_model}},     {"gguf", {2, cmd_gguf}},     {"ids", {4, cmd_ids}},
      {"prefill", {3, cmd_prefill}}, {"decode", {4, cmd_decode}}, {"hessian", {2, cmd_hessian}},
      {"peak", {1, cmd_peak}}};
  try {
    apply_thread_env();
    for (const auto& [name, c] : cmds)
      if (argc >= 2 && name == argv[1]) {
        QS_THROW_IF_NOT(argc - 2 == c.first, name, ": expected ", c.first, " arguments");
        return c.second(argv + 2);
      }
    std::fprintf(stderr, "usage: see the header of bench/peers/peer_bench.cpp\n");
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "peer_bench: %s\n", e.what());
    return 2;
  }
}
