// GPTQ on Llama-7B-sized layers (out x in = 4096 x 4096 and 11008 x 4096, group 128, 4 bits)
// with a synthetic positive definite Hessian, on one thread and on all of them.
//
//   bench_gptq                       (each case runs once: Iterations(1))
//
// Counters: GFLOP/s counts rows * cols * (cols - 1) flops, GPTQ's error propagation: the
// error of column i reaches the cols - 1 - i later columns through the upper-triangular Hinv,
// one multiply-add each (intra-block updates + lazy trailing GEMM together). It is divided by
// the whole call's wall time, which also includes H -> Hinv (2/3 cols^3 double flops, timed
// alone by BM_GptqHinv), so it understates the update's own rate.
#include <benchmark/benchmark.h>
#include <tbb/global_control.h>

#include <memory>
#include <random>

#include "formats/gptq_packing.h"
#include "quantizers/detail/gptq_hinv.h"
#include "quantizers/quantizers.h"

namespace {

using qsweep::MatrixD;
using qsweep::MatrixRM;

constexpr int64_t kCols = 4096;

// H = D (K + A A^T / k) D: K the Kac-Murdock-Szego matrix rho^|i-j| (positive definite,
// neighbouring inputs correlated), a rank-64 common part, D random per-input magnitudes.
const MatrixD& synthetic_hessian() {
  static const MatrixD H = [] {
    std::mt19937_64 rng(1);
    std::normal_distribution<double> n01(0.0, 1.0);
    std::uniform_real_distribution<double> mag(0.1, 3.0);
    const int64_t k = 64;
    MatrixD A(kCols, k);
    for (int64_t i = 0; i < A.size(); ++i) A.data()[i] = n01(rng);
    MatrixD H = (A * A.transpose()) / double(k);
    Eigen::VectorXd d(kCols);
    for (int64_t i = 0; i < kCols; ++i) d(i) = mag(rng);
    for (int64_t j = 0; j < kCols; ++j)
      for (int64_t i = 0; i < kCols; ++i)
        H(i, j) = d(i) * d(j) * (H(i, j) + std::pow(0.6, double(std::abs(i - j))));
    return H;
  }();
  return H;
}

MatrixRM random_weight(int64_t rows) {
  std::mt19937_64 rng{uint64_t(rows)};
  std::normal_distribution<float> n01(0.0f, 0.02f);
  MatrixRM W(rows, kCols);
  for (int64_t i = 0; i < W.size(); ++i) W.data()[i] = n01(rng);
  return W;
}

std::unique_ptr<tbb::global_control> limit_threads(int64_t threads) {
  if (threads <= 0) return nullptr;  // 0 = all
  return std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                               size_t(threads));
}

void BM_Gptq(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const auto limit = limit_threads(state.range(1));
  const MatrixD& H = synthetic_hessian();
  const MatrixRM W = random_weight(rows);
  qsweep::GptqConfig cfg;
  cfg.bits = 4;
  cfg.group_size = 128;
  qsweep::GptqResult res;
  for (auto _ : state) {
    res = qsweep::gptq_quantize(W, H, cfg);
    benchmark::DoNotOptimize(res.q.codes.data());
  }
  const double flops = double(rows) * double(kCols) * double(kCols - 1);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] =
      double(tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
  state.counters["damp%"] = res.damp_percent_used * 100.0;
  state.counters["bpw"] = gptq_bits_per_weight(res.q);
}

void BM_GptqHinv(benchmark::State& state) {
  const auto limit = limit_threads(state.range(0));
  const MatrixD& H = synthetic_hessian();
  MatrixD R(kCols, kCols);
  MatrixRM Hinv;
  for (auto _ : state) {
    state.PauseTiming();
    for (int64_t j = 0; j < kCols; ++j)
      for (int64_t i = 0; i < kCols; ++i) R(i, j) = H(kCols - 1 - i, kCols - 1 - j);
    R.diagonal().array() += 0.01 * H.diagonal().mean();
    state.ResumeTiming();
    benchmark::DoNotOptimize(qsweep::detail::upper_cholesky_of_inverse(R, &Hinv));
  }
  const double flops = 2.0 / 3.0 * double(kCols) * double(kCols) * double(kCols);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: {rows, threads (0 = all)}.
BENCHMARK(BM_Gptq)
    ->Args({4096, 1})
    ->Args({4096, 0})
    ->Args({11008, 1})
    ->Args({11008, 0})
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kSecond);
BENCHMARK(BM_GptqHinv)->Arg(1)->Arg(0)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

}  // namespace

BENCHMARK_MAIN();
