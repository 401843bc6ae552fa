#include "backends/cpu/cpu_gemm.h"

#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <Eigen/Core>
#include <algorithm>
#include <vector>

namespace qsweep {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMat>;
using Map = Eigen::Map<RowMat>;

// Tiles are large enough that Eigen's packed kernel runs near its peak
// (packing cost amortised over k), small enough to give every core work.
constexpr int64_t kTileM = 128;
constexpr int64_t kTileN = 256;
// Below this many FLOPs a single call is faster than spawning tasks.
constexpr double kParallelFlops = 2e6;

bool serial(int64_t m, int64_t n, int64_t k) {
  return 2.0 * double(m) * double(n) * double(k) < kParallelFlops;
}

template <typename Kernel>
void tiled(int64_t m, int64_t n, int64_t k, Kernel&& kernel) {
  if (serial(m, n, k)) {
    kernel(0, m, 0, n);
    return;
  }
  // simple_partitioner: the tiles depend only on (m, n), never on how many
  // threads run or who steals what, so every result is bit-for-bit reproducible
  // (Eigen's k-blocking inside a tile depends on the tile's shape).
  tbb::parallel_for(
      tbb::blocked_range2d<int64_t>(0, m, kTileM, 0, n, kTileN),
      [&](const tbb::blocked_range2d<int64_t>& r) {
        kernel(r.rows().begin(), r.rows().end(), r.cols().begin(), r.cols().end());
      },
      tbb::simple_partitioner());
}

}  // namespace

void cpu_gemm_nt(const float* A, const float* B, float* C, int64_t m, int64_t n, int64_t k,
                 bool accumulate) {
  if (m == 0 || n == 0) return;
  tiled(m, n, k, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    ConstMap a(A + r0 * k, r1 - r0, k);
    ConstMap b(B + c0 * k, c1 - c0, k);
    Eigen::Map<RowMat, 0, Eigen::OuterStride<>> c(C + r0 * n + c0, r1 - r0, c1 - c0,
                                                  Eigen::OuterStride<>(n));
    if (accumulate)
      c.noalias() += a * b.transpose();
    else
      c.noalias() = a * b.transpose();
  });
}

void cpu_gemm_nt_rows(const float* A, float* C, int64_t m, int64_t n, int64_t k,
                      const GemmRowDecoder& decode_rows) {
  if (m == 0 || n == 0) return;
  // Each task decodes into a buffer of its thread, taken out of `spare` while in use, so a task
  // that decode_rows lets this thread steal (a nested parallel loop) gets a buffer of its own.
  thread_local std::vector<float> spare;
  auto gemm = [&](const float* b_rows, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    ConstMap a(A + r0 * k, r1 - r0, k);
    ConstMap b(b_rows, c1 - c0, k);
    Eigen::Map<RowMat, 0, Eigen::OuterStride<>> c(C + r0 * n + c0, r1 - r0, c1 - c0,
                                                  Eigen::OuterStride<>(n));
    c.noalias() = a * b.transpose();
  };
  if (serial(m, n, k)) {
    // One kernel call over all of B, as cpu_gemm_nt makes: decode B in parallel row blocks first.
    std::vector<float> all = std::move(spare);
    if (all.size() < size_t(n * k)) all.resize(size_t(n * k));
    const int64_t block = std::max<int64_t>(1, 16384 / std::max<int64_t>(k, 1));
    tbb::parallel_for(int64_t(0), (n + block - 1) / block, [&](int64_t i) {
      const int64_t r0 = i * block;
      decode_rows(r0, std::min(block, n - r0), all.data() + r0 * k);
    });
    gemm(all.data(), 0, m, 0, n);
    spare = std::move(all);
    return;
  }
  tiled(m, n, k, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    std::vector<float> rows = std::move(spare);
    if (rows.size() < size_t((c1 - c0) * k)) rows.resize(size_t((c1 - c0) * k));
    decode_rows(c0, c1 - c0, rows.data());
    gemm(rows.data(), r0, r1, c0, c1);
    spare = std::move(rows);
  });
}

void cpu_gemm_nt_accumulate_f64(const float* A, const float* B, double* C, int64_t m, int64_t n,
                                int64_t k) {
  if (m == 0 || n == 0) return;
  tiled(m, n, k, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    thread_local RowMat tile;
    tile.resize(r1 - r0, c1 - c0);
    ConstMap a(A + r0 * k, r1 - r0, k);
    ConstMap b(B + c0 * k, c1 - c0, k);
    tile.noalias() = a * b.transpose();
    for (int64_t j = c0; j < c1; ++j) {
      double* c = C + j * m;
      for (int64_t r = r0; r < r1; ++r) c[r] += double(tile(r - r0, j - c0));
    }
  });
}

void cpu_gemm_nn(const float* A, const float* B, float* C, int64_t m, int64_t n, int64_t k) {
  if (m == 0 || n == 0) return;
  tiled(m, n, k, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    ConstMap a(A + r0 * k, r1 - r0, k);
    Eigen::Map<const RowMat, 0, Eigen::OuterStride<>> b(B + c0, k, c1 - c0,
                                                        Eigen::OuterStride<>(n));
    Eigen::Map<RowMat, 0, Eigen::OuterStride<>> c(C + r0 * n + c0, r1 - r0, c1 - c0,
                                                  Eigen::OuterStride<>(n));
    c.noalias() = a * b;
  });
}

}  // namespace qsweep
