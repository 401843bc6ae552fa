#include "backends/cpu/cpu_gemm.h"

#include <tbb/blocked_range2d.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <immintrin.h>
#include <tbb/blocked_range.h>

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "backends/backend.h"
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

// ---- the packed NT kernel: C[m, n] = A[m, k] · B[n, k]ᵀ ------------------------------------
// Every element of C is one sequential chain of fused multiply-adds over p = 0 … k−1, started at
// 0 (or at C's old value when accumulating): c = fma(a[p], b[p], c). Between k-blocks the chain's
// value waits in C as an fp32 (lossless), so the tile shapes, the k-blocking and the thread count
// never change a bit, and a plain loop of std::fma is an exact reference (GemmShapes tests).
// Why not Eigen (used until session 9): on the 128x256 tiles the scheduler gives it, Eigen's GEBP
// repacks A and B per tile and ran at ~70% of one core's FMA peak; this kernel reads A in place
// and packs only B, and runs at 80–85% (docs/performance.md, "Session 9").
constexpr int64_t kNtRowBlock = 192;  // rows of C per task (16 micro-panels of kMr)
constexpr int64_t kNtColBlock = 256;  // columns of C per task and per packed chunk of B
// k per packed chunk of B: kNtColBlock x kNtKBlock fp32 = 256 KiB (L2).
constexpr int64_t kNtKBlock = 256;

#if defined(__AVX512F__)
constexpr int kMr = 12;  // rows of A broadcast per micro-kernel step (12 x 2 accumulators)
constexpr int kNr = 32;  // columns of B per packed panel: two 16-lane vectors

// dst[c * ld_dst + r] = src[r * ld_src + c] for a 16 x 16 block, in registers: 16 row loads,
// 64 shuffles, 16 stores. (A gather per column was tried first: its 16 rows sit k·4 bytes apart,
// the same L1 set for k = 1024, and it took 11% of a prefill.)
inline void transpose16(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld_src);
  // Per 128-bit lane L: t[2i] = rows 2i, 2i+1 at columns 4L, 4L+1; t[2i+1] at 4L+2, 4L+3.
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // Per lane L: r[4g + c] = rows 4g … 4g+3 at column 4L + c.
  for (int g = 0; g < 4; ++g) {
    const __m512d lo_a = _mm512_castps_pd(t[4 * g]), hi_a = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d lo_b = _mm512_castps_pd(t[4 * g + 2]), hi_b = _mm512_castps_pd(t[4 * g + 3]);
    r[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo_a, lo_b));
    r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo_a, lo_b));
    r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi_a, hi_b));
    r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi_a, hi_b));
  }
  // Gather the four row groups' lane L into column 4L + c.
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);  // g0 L0, g0 L2, g1 L0, g1 L2
    const __m512 v1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);  // g0 L1, g0 L3, g1 L1, g1 L3
    const __m512 w0 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);  // g2, g3 likewise
    const __m512 w1 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
    _mm512_storeu_ps(dst + (0 + c) * ld_dst, _mm512_shuffle_f32x4(v0, w0, 0x88));
    _mm512_storeu_ps(dst + (8 + c) * ld_dst, _mm512_shuffle_f32x4(v0, w0, 0xDD));
    _mm512_storeu_ps(dst + (4 + c) * ld_dst, _mm512_shuffle_f32x4(v1, w1, 0x88));
    _mm512_storeu_ps(dst + (12 + c) * ld_dst, _mm512_shuffle_f32x4(v1, w1, 0xDD));
  }
}

// Packs `rows` (≤ kNr) rows of B, k-slice [0, kc), into panel[kc][kNr]: the 32 values a step of
// the micro-kernel multiplies sit contiguous. Missing rows are zero (their lanes are never stored).
void pack_b_panel(const float* B, int64_t ldb, int rows, int kc, float* panel) {
  int p = 0;
  if (rows == kNr) {
    for (; p + 16 <= kc; p += 16) {
      transpose16(B + p, ldb, panel + p * kNr, kNr);
      transpose16(B + 16 * ldb + p, ldb, panel + p * kNr + 16, kNr);
    }
  }
  for (; p < kc; ++p)
    for (int j = 0; j < kNr; ++j) panel[p * kNr + j] = j < rows ? B[j * ldb + p] : 0.0f;
}

// C[MR, ≤32] (masked columns) continues its chains through the k-slice [0, kc) of MR rows of A
// (read in place, lda apart) and one packed panel of B.
template <int MR>
void nt_micro(const float* A, int64_t lda, const float* panel, int kc, float* C, int64_t ldc,
              bool start_at_zero, __mmask16 lo_mask, __mmask16 hi_mask) {
  __m512 lo[MR], hi[MR];
  for (int i = 0; i < MR; ++i) {
    lo[i] = start_at_zero ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(lo_mask, C + i * ldc);
    hi[i] = start_at_zero ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(hi_mask, C + i * ldc + 16);
  }
  for (int p = 0; p < kc; ++p) {
    const __m512 b_lo = _mm512_loadu_ps(panel + p * kNr);
    const __m512 b_hi = _mm512_loadu_ps(panel + p * kNr + 16);
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(A[i * lda + p]);
      lo[i] = _mm512_fmadd_ps(a, b_lo, lo[i]);
      hi[i] = _mm512_fmadd_ps(a, b_hi, hi[i]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    _mm512_mask_storeu_ps(C + i * ldc, lo_mask, lo[i]);
    _mm512_mask_storeu_ps(C + i * ldc + 16, hi_mask, hi[i]);
  }
}

// nt_micro<1> … nt_micro<kMr>, indexed by rows − 1 (the last row panel of a tile may be short).
using NtMicro = void (*)(const float*, int64_t, const float*, int, float*, int64_t, bool, __mmask16,
                         __mmask16);
template <int... R>
constexpr std::array<NtMicro, sizeof...(R)> nt_micro_table(std::integer_sequence<int, R...>) {
  return {&nt_micro<R + 1>...};
}
constexpr auto kNtMicro = nt_micro_table(std::make_integer_sequence<int, kMr>{});

__mmask16 lane_mask(int64_t lanes) {
  return lanes >= 16 ? __mmask16(0xffff) : lanes <= 0 ? __mmask16(0) : __mmask16((1u << lanes) - 1);
}
#endif

// The packed B chunk of the calling thread (kNtColBlock x kNtKBlock floats). A function-static
// enumerable_thread_specific, not thread_local: see cpu_gemm_nt_rows.
float* nt_pack_buffer() {
  static tbb::enumerable_thread_specific<std::vector<float>> buffers;
  std::vector<float>& b = buffers.local();
  if (b.size() < size_t(kNtColBlock * kNtKBlock)) b.resize(size_t(kNtColBlock * kNtKBlock));
  return b.data();
}

// C[m, n] (ldc) = or += A[m, k] (lda) · B[n, k]ᵀ (ldb), serially, on the calling thread.
void nt_block(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
              int64_t m, int64_t n, int64_t k, bool accumulate) {
  if (m == 0 || n == 0) return;
#if defined(__AVX512F__)
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(C + i * ldc, C + i * ldc + n, 0.0f);
    return;
  }
  float* pack = nt_pack_buffer();
  for (int64_t c0 = 0; c0 < n; c0 += kNtColBlock) {
    const int64_t cols = std::min(kNtColBlock, n - c0);
    const int64_t panels = (cols + kNr - 1) / kNr;
    for (int64_t p0 = 0; p0 < k; p0 += kNtKBlock) {
      const int kc = int(std::min(kNtKBlock, k - p0));
      for (int64_t j = 0; j < panels; ++j)
        pack_b_panel(B + (c0 + j * kNr) * ldb + p0, ldb,
                     int(std::min<int64_t>(kNr, cols - j * kNr)), kc, pack + j * kNr * kNtKBlock);
      const bool start_at_zero = p0 == 0 && !accumulate;
      for (int64_t i = 0; i < m; i += kMr) {
        const int mr = int(std::min<int64_t>(kMr, m - i));
        for (int64_t j = 0; j < panels; ++j) {
          const int64_t left = cols - j * kNr;
          kNtMicro[size_t(mr - 1)](A + i * lda + p0, lda, pack + j * kNr * kNtKBlock, kc,
                                   C + i * ldc + c0 + j * kNr, ldc, start_at_zero, lane_mask(left),
                                   lane_mask(left - 16));
        }
      }
    }
  }
#else
  // Builds without AVX-512: Eigen's kernel (the chain order above is then not guaranteed, only
  // fp32 reordering of it; results are still independent of the thread count: no k-splitting).
  Eigen::Map<const RowMat, 0, Eigen::OuterStride<>> a(A, m, k, Eigen::OuterStride<>(lda));
  Eigen::Map<const RowMat, 0, Eigen::OuterStride<>> b(B, n, k, Eigen::OuterStride<>(ldb));
  Eigen::Map<RowMat, 0, Eigen::OuterStride<>> c(C, m, n, Eigen::OuterStride<>(ldc));
  if (accumulate)
    c.noalias() += a * b.transpose();
  else
    c.noalias() = a * b.transpose();
#endif
}

// Runs kernel(r0, r1, c0, c1) over a grid of C tiles. The tiles only schedule work: no
// element's arithmetic depends on them (see nt_block), so they may follow the thread count.
// Preferred: all m rows per tile, so each packed chunk of B serves every row (packing is ~6% of
// a prefill at 192 rows per tile); columns split down to 64 wide to give each thread >= 4 tiles;
// rows split into kNtRowBlock only when the columns alone cannot feed the threads. Always all
// rows when m <= kGemmNtRowsMaxM, so cpu_gemm_nt_rows decodes each row of B once.
template <typename Kernel>
void nt_tiles(int64_t m, int64_t n, int64_t k, Kernel&& kernel) {
  if (serial(m, n, k)) {
    kernel(0, m, 0, n);
    return;
  }
  const int64_t threads = std::max(1, backend_threads());
  int64_t col_block = kNtColBlock;
  while (col_block > 64 && (n + col_block - 1) / col_block < 4 * threads) col_block /= 2;
  const int64_t col_tiles = (n + col_block - 1) / col_block;
  const int64_t row_block = m <= kGemmNtRowsMaxM || col_tiles >= 2 * threads ? m : kNtRowBlock;
  const int64_t row_tiles = (m + row_block - 1) / row_block;
  tbb::parallel_for(int64_t(0), row_tiles * col_tiles, [&](int64_t t) {
    const int64_t r0 = (t / col_tiles) * row_block, c0 = (t % col_tiles) * col_block;
    kernel(r0, std::min(m, r0 + row_block), c0, std::min(n, c0 + col_block));
  });
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
  nt_tiles(m, n, k, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    nt_block(A + r0 * k, k, B + c0 * k, k, C + r0 * n + c0, n, r1 - r0, c1 - c0, k, accumulate);
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
    nt_block(A + r0 * k, k, b_rows, k, C + r0 * n + c0, n, r1 - r0, c1 - c0, k, false);
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
  nt_tiles(m, n, k, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
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
  static tbb::enumerable_thread_specific<std::vector<float>> tiles;  // not thread_local: see
                                                                     // cpu_gemm_nt_rows
  nt_tiles(m, n, k, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    std::vector<float>& tile = tiles.local();
    const int64_t rows = r1 - r0, cols = c1 - c0;
    if (tile.size() < size_t(rows * cols)) tile.resize(size_t(rows * cols));
    nt_block(A + r0 * k, k, B + c0 * k, k, tile.data(), cols, rows, cols, k, false);
    for (int64_t j = c0; j < c1; ++j) {
      double* c = C + j * m;
      for (int64_t r = r0; r < r1; ++r) c[r] += double(tile[size_t((r - r0) * cols + (j - c0))]);
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
