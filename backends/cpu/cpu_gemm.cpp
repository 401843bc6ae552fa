#include "backends/cpu/cpu_gemm.h"

#include <tbb/blocked_range2d.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <immintrin.h>
#include <tbb/blocked_range.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/half.h"

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

// ---- cpu_gemv_w16 ----------------------------------------------------------------------------
// R rows at a time share the loads of x; each row keeps two vector accumulators (even and odd
// lane-chunks), so a row's arithmetic is the same whether it runs in a block of R or alone.
constexpr int64_t kGemvRowBlock = 4;
constexpr int64_t kGemvRowsPerTask = 64;       // fixed chunks: results independent of threads
constexpr int64_t kGemvSerialElems = 1 << 16;  // below this many weights, one task
// Software prefetch distance (weights, 1 KiB ahead) in the AVX-512 loop: a decode row is only
// k·2 bytes, too short a stream for the hardware prefetcher to ramp up; rand200m F16 decode
// 41 -> 56 tok/s (docs/performance.md). A prefetch past the end of W is harmless (no fault).
constexpr int64_t kGemvPrefetch = 512;

// W may sit at an odd address (a view into a mapped file): scalar loads go through memcpy.
template <bool BF16>
float widen1(const uint16_t* p) {
  uint16_t w;
  std::memcpy(&w, p, sizeof w);
  return BF16 ? bf16_to_float(w) : half_to_float(w);
}

#if defined(__AVX512F__) && defined(__F16C__)
template <bool BF16>
inline __m512 load_w(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  if constexpr (BF16)
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  else
    return _mm512_cvtph_ps(h);
}

template <bool BF16, int R>
void gemv_rows(const float* x, const uint16_t* W, float* y, int64_t k) {
  __m512 a0[R], a1[R];
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + 32 <= k; p += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + p), x1 = _mm512_loadu_ps(x + p + 16);
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(W + r * k + p + kGemvPrefetch), _MM_HINT_T0);
      a0[r] = _mm512_fmadd_ps(x0, load_w<BF16>(W + r * k + p), a0[r]);
      a1[r] = _mm512_fmadd_ps(x1, load_w<BF16>(W + r * k + p + 16), a1[r]);
    }
  }
  if (p + 16 <= k) {
    const __m512 x0 = _mm512_loadu_ps(x + p);
    for (int r = 0; r < R; ++r) a0[r] = _mm512_fmadd_ps(x0, load_w<BF16>(W + r * k + p), a0[r]);
    p += 16;
  }
  for (int r = 0; r < R; ++r) {
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
    for (int64_t q = p; q < k; ++q) s = std::fma(x[q], widen1<BF16>(W + r * k + q), s);
    y[r] = s;
  }
}
#elif defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
template <bool BF16>
inline __m256 load_w(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (BF16)
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  else
    return _mm256_cvtph_ps(h);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <bool BF16, int R>
void gemv_rows(const float* x, const uint16_t* W, float* y, int64_t k) {
  __m256 a0[R], a1[R];
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + p), x1 = _mm256_loadu_ps(x + p + 8);
    for (int r = 0; r < R; ++r) {
      a0[r] = _mm256_fmadd_ps(x0, load_w<BF16>(W + r * k + p), a0[r]);
      a1[r] = _mm256_fmadd_ps(x1, load_w<BF16>(W + r * k + p + 8), a1[r]);
    }
  }
  if (p + 8 <= k) {
    const __m256 x0 = _mm256_loadu_ps(x + p);
    for (int r = 0; r < R; ++r) a0[r] = _mm256_fmadd_ps(x0, load_w<BF16>(W + r * k + p), a0[r]);
    p += 8;
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum(_mm256_add_ps(a0[r], a1[r]));
    for (int64_t q = p; q < k; ++q) s = std::fma(x[q], widen1<BF16>(W + r * k + q), s);
    y[r] = s;
  }
}
#else
template <bool BF16, int R>
void gemv_rows(const float* x, const uint16_t* W, float* y, int64_t k) {
  for (int r = 0; r < R; ++r) {
    float s = 0;
    for (int64_t q = 0; q < k; ++q) s = std::fma(x[q], widen1<BF16>(W + r * k + q), s);
    y[r] = s;
  }
}
#endif

template <bool BF16>
void gemv_range(const float* x, const uint16_t* W, const int64_t* row_of, float* y, int64_t r0,
                int64_t r1, int64_t k) {
  int64_t r = r0;
  if (row_of) {  // rows stored in another order: one at a time (a row's sum is the same alone)
    for (; r < r1; ++r) gemv_rows<BF16, 1>(x, W + row_of[r] * k, y + r, k);
    return;
  }
  for (; r + kGemvRowBlock <= r1; r += kGemvRowBlock)
    gemv_rows<BF16, kGemvRowBlock>(x, W + r * k, y + r, k);
  for (; r < r1; ++r) gemv_rows<BF16, 1>(x, W + r * k, y + r, k);
}

}  // namespace

void cpu_gemv_w16(const float* x, const uint16_t* W, bool bf16, float* y, int64_t n, int64_t k,
                  const int64_t* row_of) {
  if (n == 0) return;
  auto range = [&](int64_t r0, int64_t r1) {
    if (bf16)
      gemv_range<true>(x, W, row_of, y, r0, r1, k);
    else
      gemv_range<false>(x, W, row_of, y, r0, r1, k);
  };
  if (n * k <= kGemvSerialElems) return range(0, n);
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, n, kGemvRowsPerTask),
      [&](const tbb::blocked_range<int64_t>& r) { range(r.begin(), r.end()); },
      tbb::simple_partitioner());
}

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
  // The buffers are owned by a function-static, not thread_local: LeakSanitizer does not see
  // the thread-local storage of TBB's workers at exit and reported such buffers leaked (#18).
  static tbb::enumerable_thread_specific<std::vector<float>> buffers;
  auto gemm = [&](const float* b_rows, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    ConstMap a(A + r0 * k, r1 - r0, k);
    ConstMap b(b_rows, c1 - c0, k);
    Eigen::Map<RowMat, 0, Eigen::OuterStride<>> c(C + r0 * n + c0, r1 - r0, c1 - c0,
                                                  Eigen::OuterStride<>(n));
    c.noalias() = a * b.transpose();
  };
  if (serial(m, n, k)) {
    // One kernel call over all of B, as cpu_gemm_nt makes: decode B in parallel row blocks first.
    std::vector<float>& spare = buffers.local();
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
    std::vector<float>& spare = buffers.local();  // this task's thread's
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
  static tbb::enumerable_thread_specific<RowMat> tiles;  // not thread_local: see cpu_gemm_nt_rows
  tiled(m, n, k, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    RowMat& tile = tiles.local();
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
