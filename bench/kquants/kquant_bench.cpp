// Throughput of the ggml block formats on a 4096 x 4096 fp32 matrix (64 MiB), through the
// row-parallel tensor API (oneTBB): quantize without / with an imatrix, and dequantize.
// Bytes/s are of the fp32 input (quantize) or fp32 output (dequantize).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "quantizers/kquants/kquants.h"

namespace {

using qsweep::kquants::QuantType;

constexpr int64_t kRows = 4096, kCols = 4096;

const std::vector<float>& matrix() {
  static const std::vector<float> w = [] {
    std::mt19937_64 rng(1);
    std::normal_distribution<float> d(0.0f, 0.02f);
    std::vector<float> v(static_cast<size_t>(kRows * kCols));
    for (float& x : v) x = d(rng);
    return v;
  }();
  return w;
}

const std::vector<float>& imatrix() {
  static const std::vector<float> w = [] {
    std::mt19937_64 rng(2);
    std::uniform_real_distribution<float> u(0.01f, 10.0f);
    std::vector<float> v(static_cast<size_t>(kCols));
    for (float& x : v) x = u(rng);
    return v;
  }();
  return w;
}

void BM_Quantize(benchmark::State& state, QuantType t, bool with_imatrix) {
  const auto& w = matrix();
  const float* imx = with_imatrix ? imatrix().data() : nullptr;
  for (auto _ : state) {
    auto q = qsweep::kquants::quantize_tensor(t, w.data(), kRows, kCols, imx);
    benchmark::DoNotOptimize(q.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kRows * kCols * int64_t(sizeof(float)));
}

void BM_Dequantize(benchmark::State& state, QuantType t) {
  const auto q = qsweep::kquants::quantize_tensor(t, matrix().data(), kRows, kCols, nullptr);
  for (auto _ : state) {
    auto y = qsweep::kquants::dequantize_tensor(t, q, kRows, kCols);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kRows * kCols * int64_t(sizeof(float)));
}

int register_all() {
  for (const auto& tr : qsweep::kquants::kTypeTraits) {
    const std::string name = tr.name;
    benchmark::RegisterBenchmark(("quantize/" + name).c_str(), BM_Quantize, tr.type, false)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    if (tr.type != QuantType::Q8_0 && tr.type != QuantType::Q8_K) {
      benchmark::RegisterBenchmark(("quantize_imatrix/" + name).c_str(), BM_Quantize, tr.type, true)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
    benchmark::RegisterBenchmark(("dequantize/" + name).c_str(), BM_Dequantize, tr.type)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  return 0;
}

const int kRegistered = register_all();

}  // namespace

BENCHMARK_MAIN();
