// GEMM GFLOP/s at the model's matmul shapes, and end-to-end forward tokens/s.
// Shapes: tinycode's linears (hidden 256, MLP 768, vocab 4096) and a Llama-2-7B
// layer's (4096 / 11008 / 32000), as [tokens, in] x [out, in]ᵀ.
#include <benchmark/benchmark.h>
#include <tbb/global_control.h>

#include <immintrin.h>

#include <random>

#include "backends/backend.h"
#include "backends/cpu/cpu_gemm.h"
#include "common/matrix.h"
#include "model/transformer.h"
#include "model/weights.h"

namespace qsweep {
namespace {

MatrixRM random_matrix(int64_t r, int64_t c, uint32_t seed) {
  std::mt19937 rng{seed};
  std::normal_distribution<float> d;
  MatrixRM m(r, c);
  for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = d(rng);
  return m;
}

// The machine's fp32 FMA peak on one core: 12 independent vector FMA chains
// (enough to cover latency x throughput), no memory traffic. GEMM efficiency is
// reported against this number times the core count.
void BM_PeakFmaOneCore(benchmark::State& state) {
#if defined(__AVX512F__)
  using V = __m512;
  constexpr int kLanes = 16;
  auto fma = [](V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); };
  const V x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-7f);
#elif defined(__AVX2__)
  using V = __m256;
  constexpr int kLanes = 8;
  auto fma = [](V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); };
  const V x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-7f);
#else
  state.SkipWithError("no AVX2/AVX-512");
  return;
#endif
#if defined(__AVX512F__) || defined(__AVX2__)
  constexpr int kChains = 12, kSteps = 1 << 16;
  V acc[kChains];
  for (auto& a : acc) a = y;
  for (auto _ : state) {
    for (int s = 0; s < kSteps; ++s)
      for (int c = 0; c < kChains; ++c) acc[c] = fma(acc[c], x, y);
    benchmark::DoNotOptimize(acc);
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * kLanes * kChains * kSteps * double(state.iterations()),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
#endif
}
BENCHMARK(BM_PeakFmaOneCore)->Unit(benchmark::kMillisecond)->UseRealTime();

// args: tokens m, out n, in k, threads
void BM_GemmNT(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, size_t(state.range(3)));
  const MatrixRM a = random_matrix(m, k, 1), b = random_matrix(n, k, 2);
  MatrixRM c(m, n);
  for (auto _ : state) {
    cpu_gemm_nt(a.data(), b.data(), c.data(), m, n, k);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(m) * double(n) * double(k) * double(state.iterations()),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void gemm_shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) {
    // tinycode: q/o (256x256), k/v (128x256), gate/up (768x256), down (256x768), lm_head
    for (auto [n, k] : {std::pair{256, 256}, {128, 256}, {768, 256}, {256, 768}, {4096, 256}})
      b->Args({4096, n, k, threads});
    // Llama-2-7B: q/k/v/o, gate/up, down, lm_head at 512 tokens
    for (auto [n, k] : {std::pair{4096, 4096}, {11008, 4096}, {4096, 11008}, {32000, 4096}})
      b->Args({512, n, k, threads});
  }
  b->ArgNames({"m", "n", "k", "threads"})->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_GemmNT)->Apply(gemm_shapes);

ModelSpec tinycode_shape() {
  ModelSpec s;
  s.arch_name = "LlamaForCausalLM";
  s.vocab_size = 4096;
  s.hidden_size = 256;
  s.intermediate_size = 768;
  s.num_layers = 6;
  s.num_heads = 8;
  s.num_kv_heads = 4;
  s.head_dim = 32;
  s.max_position_embeddings = 256;
  s.rms_norm_eps = 1e-5f;
  return s;
}

// End-to-end forward of a tinycode-shaped model: batch of 16 x 256-token windows.
void BM_ForwardTinycode(benchmark::State& state) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, size_t(state.range(0)));
  const ModelSpec spec = tinycode_shape();
  const Transformer model(spec, random_weights(spec, 7));
  std::mt19937 rng{3};
  std::uniform_int_distribution<int> d(0, spec.vocab_size - 1);
  std::vector<std::vector<int>> seqs(16, std::vector<int>(256));
  for (auto& s : seqs)
    for (auto& t : s) t = d(rng);
  for (auto _ : state) benchmark::DoNotOptimize(model.forward(seqs).data());
  const double tokens = 16.0 * 256 * double(state.iterations());
  state.counters["tokens/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(tokens * forward_flops_per_token(spec, 256), benchmark::Counter::kIsRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_ForwardTinycode)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("threads")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace qsweep

BENCHMARK_MAIN();
