// Backend ops at Llama-2-7B shapes and the forward pass on each backend, per backend ("cpu",
// "cuda"): GEMM fp32 and fp16-input GFLOP/s, the GPTQ Hessian (syrk) and Cholesky-of-inverse times,
// and forward tokens/s of a 7B-shaped model cut to 2 layers (the per-layer rate is what a
// whole model divides by its layer count; the lm_head is included once). Timings end with
// synchronize(), so they include the kernels' execution, not just their launch.
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include "backends/backend.h"
#include "backends/cpu/cpu_gemm.h"
#include "backends/cpu/cpu_gemv_blocks.h"
#include "backends/kernels/ggml_decode.h"
#include "common/half.h"
#include "common/weight_tensor.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep {
namespace {

const char* kDevices[] = {"cpu", "cuda"};

std::unique_ptr<Backend> backend_or_skip(benchmark::State& state) {
  const std::string dev = kDevices[state.range(0)];
  if (dev == "cuda" && !cuda_available()) {
    state.SkipWithError(("no CUDA: " + cuda_unavailable_reason()).c_str());
    return nullptr;
  }
  state.SetLabel(dev);
  return make_backend(dev);
}

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 rng{seed};
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// args: device, m (tokens), n (out), k (in), fp16
void BM_Gemm(benchmark::State& state) {
  auto b = backend_or_skip(state);
  if (!b) return;
  const int64_t m = state.range(1), n = state.range(2), k = state.range(3);
  const bool f16 = state.range(4) != 0;
  BackendArray<float> c(*b, size_t(m * n));
  if (f16) {
    std::vector<uint16_t> ah(size_t(m * k)), bh(size_t(n * k));
    const auto a = randn(ah.size(), 1), w = randn(bh.size(), 2);
    for (size_t i = 0; i < ah.size(); ++i) ah[i] = float_to_half(a[i]);
    for (size_t i = 0; i < bh.size(); ++i) bh[i] = float_to_half(w[i]);
    BackendArray<uint16_t> ad(*b, ah), bd(*b, bh);
    for (auto _ : state) {
      b->gemm_nt_f16(ad.get(), bd.get(), c.get(), m, n, k);
      b->synchronize();
    }
  } else {
    BackendArray<float> ad(*b, randn(size_t(m * k), 1)), bd(*b, randn(size_t(n * k), 2));
    for (auto _ : state) {
      b->gemm_nt(ad.get(), bd.get(), c.get(), m, n, k);
      b->synchronize();
    }
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * m * n * k * double(state.iterations()), benchmark::Counter::kIsRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Gemm)
    ->ArgNames({"dev", "m", "n", "k", "f16"})
    ->ArgsProduct({{0, 1}, {2048}, {4096, 11008}, {4096}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// GPTQ's per-linear linear algebra at d = 4096 / 11008: H += XᵀX over 128 × 2048 calibration
// tokens (in chunks of 2048), then the upper Cholesky factor of H⁻¹. args: device, d.
void BM_HessianAndCholesky(benchmark::State& state) {
  auto b = backend_or_skip(state);
  if (!b) return;
  const int64_t d = state.range(1), chunk = 2048, chunks = 128;
  BackendArray<float> x(*b, randn(size_t(chunk * d), 3)), hinv(*b, size_t(d * d));
  BackendArray<double> h(*b, size_t(d * d));
  std::vector<double> zero(size_t(d * d), 0.0);
  for (int64_t i = 0; i < d; ++i) zero[size_t(i * d + i)] = 1.0;  // damping: stays SPD
  for (auto _ : state) {
    h.upload(zero);
    for (int64_t c = 0; c < chunks; ++c) b->hessian_accumulate(x.get(), h.get(), chunk, d);
    if (!b->upper_cholesky_of_inverse(h.get(), hinv.get(), d))
      state.SkipWithError("Cholesky failed");
    b->synchronize();
  }
}
BENCHMARK(BM_HessianAndCholesky)
    ->ArgNames({"dev", "d"})
    ->ArgsProduct({{0, 1}, {4096, 11008}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

// Llama-2-7B shapes, 2 layers, fp32 weights resident on the backend; 8 sequences × 256
// tokens (the perplexity eval's batch). args: device.
void BM_ResidentForward7BShaped(benchmark::State& state) {
  auto b = backend_or_skip(state);
  if (!b) return;
  ModelSpec s;
  s.arch_name = "LlamaForCausalLM";
  s.vocab_size = 32000;
  s.hidden_size = 4096;
  s.intermediate_size = 11008;
  s.num_layers = 2;
  s.num_heads = 32;
  s.num_kv_heads = 32;
  s.head_dim = 128;
  s.max_position_embeddings = 4096;
  static const Transformer* model = new Transformer(s, random_weights(s, 7, 0.02f));
  const Transformer resident(model->spec(), model->weights(), *b);
  std::vector<std::vector<int>> seqs(8);
  for (size_t i = 0; i < seqs.size(); ++i)
    for (int t = 0; t < 256; ++t) seqs[i].push_back(int((i * 7919 + size_t(t) * 104729) % 32000));
  for (auto _ : state) benchmark::DoNotOptimize(resident.next_token_nll(seqs));
  state.counters["tokens/s"] =
      benchmark::Counter(8 * 256 * double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ResidentForward7BShaped)
    ->ArgNames({"dev"})
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Decode on an fp16 weight on the CPU (#18): GB/s of weight bytes streamed (n·k·2 per row of A, so
// m > 1 counts the weight once per row). args: m, n (out), k (in), path: 0 cpu_gemv_w16 per row
// of A, 1 the tile-widening cpu_gemm_nt_rows the backend uses today for m <= 128.
void BM_DecodeGemvF16(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const bool widen_tiles = state.range(3) != 0;
  const auto w = randn(size_t(n * k), 2);
  auto bits = std::make_shared<std::vector<uint16_t>>(w.size());
  for (size_t i = 0; i < w.size(); ++i) (*bits)[i] = float_to_half(w[i]);
  const auto W = WeightTensor::half_view(WeightDType::F16, bits->data(), n, k, bits);
  const auto a = randn(size_t(m * k), 1);
  std::vector<float> c(size_t(m * n));
  for (auto _ : state) {
    if (widen_tiles)
      cpu_gemm_nt_rows(a.data(), c.data(), m, n, k, [&](int64_t r0, int64_t count, float* out) {
        W.decode_rows(r0, count, out);
      });
    else
      for (int64_t i = 0; i < m; ++i)
        cpu_gemv_w16(a.data() + i * k, bits->data(), false, c.data() + i * n, n, k);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GB/s"] =
      benchmark::Counter(2.0 * double(n * k) * double(m * state.iterations()),
                         benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_DecodeGemvF16)
    ->ArgNames({"m", "n", "k", "widen"})
    ->ArgsProduct({{1, 2, 4}, {4096, 11008}, {4096}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Decode on GGUF ggml blocks on the CPU (#18): GB/s of block bytes streamed (once per row of A:
// both paths read the weight once per call). args: type (ggml id), m, n (out), k (in), path: 0
// cpu_gemm_nt_ggml (what CpuBackend::gemm_nt_weight takes for m <= kGemmNtGgmlMaxM), 1 the
// weight widened to fp32 by kquants' row decoders then the tiled GEMM (the path before #18).
void BM_DecodeGemvGgml(benchmark::State& state) {
  const int type = int(state.range(0));
  const int64_t m = state.range(1), n = state.range(2), k = state.range(3);
  const bool widen = state.range(4) != 0;
  const int qk = ggml::block_weights(type), bsize = ggml::block_bytes(type);
  const size_t bytes = size_t(n * k / qk * bsize);
  // Random codes, finite fp16 scales (in every type the first or last fields; a random byte
  // elsewhere is a valid code), from quantizing random weights.
  const auto f = randn(size_t(n * k), 3);
  auto blocks = std::make_shared<std::vector<uint8_t>>(bytes);
  const auto q = *kquants::type_from_ggml(type);
  kquants::quantize_row_ref(q, f.data(), blocks->data(), n * k);
  const uint8_t* data = blocks->data();
  const auto W = WeightTensor::quantized(
      n, k, bytes, "q", [q, data, k, bsize, qk, blocks](int64_t r0, int64_t count, float* out) {
        kquants::dequantize_row(q, data + r0 * (k / qk) * bsize, out, count * k);
      });
  const auto a = randn(size_t(m * k), 1);
  std::vector<float> c(size_t(m * n));
  WeightScratch s;
  for (auto _ : state) {
    if (widen)
      cpu_backend().gemm_nt_weight(a.data(), W, c.data(), m, s);
    else
      cpu_gemm_nt_ggml(a.data(), type, data, c.data(), m, n, k);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GB/s"] =
      benchmark::Counter(double(bytes) * double(state.iterations()), benchmark::Counter::kIsRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_DecodeGemvGgml)
    ->ArgNames({"type", "m", "n", "k", "widen"})
    ->ArgsProduct(
        {{ggml::kQ4_K, ggml::kQ6_K, ggml::kQ8_0, ggml::kQ5_K}, {1, 4, 8}, {2816}, {1024}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace qsweep

BENCHMARK_MAIN();
