// cpu_gemm_nt_ggml: see the header. Built with -ffp-contract=off (backends/CMakeLists.txt): the
// block decoders below must round as ggml_decode.h's per-weight decoders do (a product, then a
// sum, never fused), which the tests check bit for bit; the dot products use explicit FMAs.
#include "backends/cpu/cpu_gemv_blocks.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "backends/kernels/ggml_decode.h"

namespace qsweep {
namespace {

using ggml::f16_at;

// ---- block decoders: out[QK] = ggml::decode(type, b, e) for e < QK, bit for bit -------------
// The K-quant loops are those of quantizers/kquants/k_dequant.cpp (one scale product per 16 or
// 32 weights, same operands and order per weight as ggml_decode.h); the 32-weight formats hoist
// the fp16 scales out of ggml_decode.h's per-weight expressions.

void block_q4_0(const uint8_t* b, float* out) {
  const float d = f16_at(b, 0);
  for (int l = 0; l < 16; ++l) {
    out[l] = float((b[2 + l] & 0xF) - 8) * d;
    out[l + 16] = float((b[2 + l] >> 4) - 8) * d;
  }
}

void block_q4_1(const uint8_t* b, float* out) {
  const float d = f16_at(b, 0), m = f16_at(b, 2);
  for (int l = 0; l < 16; ++l) {
    out[l] = float(b[4 + l] & 0xF) * d + m;
    out[l + 16] = float(b[4 + l] >> 4) * d + m;
  }
}

void block_q5_0(const uint8_t* b, float* out) {
  const float d = f16_at(b, 0);
  const uint32_t qh = ggml::u32_at(b, 2);
  for (int l = 0; l < 16; ++l) {
    out[l] = float(((b[6 + l] & 0xF) | int(((qh >> l) & 1u) << 4)) - 16) * d;
    out[l + 16] = float(((b[6 + l] >> 4) | int(((qh >> (l + 16)) & 1u) << 4)) - 16) * d;
  }
}

void block_q5_1(const uint8_t* b, float* out) {
  const float d = f16_at(b, 0), m = f16_at(b, 2);
  const uint32_t qh = ggml::u32_at(b, 4);
  for (int l = 0; l < 16; ++l) {
    out[l] = float((b[8 + l] & 0xF) | int(((qh >> l) & 1u) << 4)) * d + m;
    out[l + 16] = float((b[8 + l] >> 4) | int(((qh >> (l + 16)) & 1u) << 4)) * d + m;
  }
}

void block_q8_0(const uint8_t* b, float* out) {
  const float d = f16_at(b, 0);
  for (int l = 0; l < 32; ++l) out[l] = float(int8_t(b[2 + l])) * d;
}

void block_q2_K(const uint8_t* b, float* out) {
  const float d = f16_at(b, 80), dmin = f16_at(b, 82);
  for (int j = 0; j < 16; ++j) {
    const uint8_t sc = b[j];
    const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
    const int e0 = 16 * j;
    const uint8_t* q = b + 16 + 32 * (e0 / 128) + e0 % 32;
    const int shift = 2 * ((e0 % 128) / 32);
    for (int l = 0; l < 16; ++l) out[e0 + l] = dl * float((q[l] >> shift) & 3) - ml;
  }
}

void block_q3_K(const uint8_t* b, float* out) {
  const float d = f16_at(b, 108);
  for (int j = 0; j < 16; ++j) {
    const float dl = d * float(ggml::q3k_scale(b + 96, j));
    const int e0 = 16 * j;
    const uint8_t* q = b + 32 + 32 * (e0 / 128) + e0 % 32;
    const uint8_t* hm = b + e0 % 32;
    const int shift = 2 * ((e0 % 128) / 32), hbit = e0 / 32;
    for (int l = 0; l < 16; ++l) {
      const int high = (hm[l] >> hbit) & 1;
      out[e0 + l] = dl * float(((q[l] >> shift) & 3) - (high ? 0 : 4));
    }
  }
}

void block_q4_K(const uint8_t* b, float* out) {
  const float d = f16_at(b, 0), dmin = f16_at(b, 2);
  for (int s = 0; s < 8; ++s) {
    uint8_t sc, m;
    ggml::scale_min_k4(s, b + 4, &sc, &m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    const uint8_t* q = b + 16 + 32 * (s / 2);
    const int shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) out[32 * s + l] = d1 * float((q[l] >> shift) & 0xF) - m1;
  }
}

void block_q5_K(const uint8_t* b, float* out) {
  const float d = f16_at(b, 0), dmin = f16_at(b, 2);
  const uint8_t* qh = b + 16;
  for (int s = 0; s < 8; ++s) {
    uint8_t sc, m;
    ggml::scale_min_k4(s, b + 4, &sc, &m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    const uint8_t* q = b + 48 + 32 * (s / 2);
    const int shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) {
      const int v = ((q[l] >> shift) & 0xF) + (((qh[l] >> s) & 1) << 4);
      out[32 * s + l] = d1 * float(v) - m1;
    }
  }
}

void block_q6_K(const uint8_t* b, float* out) {
  const float d = f16_at(b, 208);
  for (int c = 0; c < 2; ++c)
    for (int g = 0; g < 4; ++g)
      for (int h = 0; h < 2; ++h) {
        const int e0 = 128 * c + 32 * g + 16 * h;
        const float ds = d * float(int8_t(b[192 + e0 / 16]));
        const uint8_t* ql = b + 64 * c + 32 * (g & 1) + 16 * h;
        const uint8_t* qh = b + 128 + 32 * c + 16 * h;
        const int lshift = g < 2 ? 0 : 4, hshift = 2 * g;
        for (int l = 0; l < 16; ++l) {
          const int q = (((ql[l] >> lshift) & 0xF) | (((qh[l] >> hshift) & 3) << 4)) - 32;
          out[e0 + l] = ds * float(q);
        }
      }
}

using BlockDecoder = void (*)(const uint8_t*, float*);

BlockDecoder block_decoder(int type) {
  switch (type) {
    case ggml::kQ4_0:
      return block_q4_0;
    case ggml::kQ4_1:
      return block_q4_1;
    case ggml::kQ5_0:
      return block_q5_0;
    case ggml::kQ5_1:
      return block_q5_1;
    case ggml::kQ8_0:
      return block_q8_0;
    case ggml::kQ2_K:
      return block_q2_K;
    case ggml::kQ3_K:
      return block_q3_K;
    case ggml::kQ4_K:
      return block_q4_K;
    case ggml::kQ5_K:
      return block_q5_K;
    case ggml::kQ6_K:
      return block_q6_K;
    default:
      return nullptr;
  }
}

// ---- the dot products: 4 accumulators per row of A, vector v of a chunk into accumulator v % 4
#if defined(__AVX512F__)
constexpr int kLanes = 16;
using Vec = __m512;
inline Vec vzero() {
  return _mm512_setzero_ps();
}
inline Vec vload(const float* p) {
  return _mm512_loadu_ps(p);
}
inline Vec vfma(Vec a, Vec b, Vec c) {
  return _mm512_fmadd_ps(a, b, c);
}
inline Vec vadd(Vec a, Vec b) {
  return _mm512_add_ps(a, b);
}
inline float vsum(Vec v) {
  return _mm512_reduce_add_ps(v);
}
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kLanes = 8;
using Vec = __m256;
inline Vec vzero() {
  return _mm256_setzero_ps();
}
inline Vec vload(const float* p) {
  return _mm256_loadu_ps(p);
}
inline Vec vfma(Vec a, Vec b, Vec c) {
  return _mm256_fmadd_ps(a, b, c);
}
inline Vec vadd(Vec a, Vec b) {
  return _mm256_add_ps(a, b);
}
inline float vsum(Vec v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#else
constexpr int kLanes = 1;
using Vec = float;
inline Vec vzero() {
  return 0.0f;
}
inline Vec vload(const float* p) {
  return *p;
}
inline Vec vfma(Vec a, Vec b, Vec c) {
  return std::fma(a, b, c);
}
inline Vec vadd(Vec a, Vec b) {
  return a + b;
}
inline float vsum(Vec v) {
  return v;
}
#endif

// A chunk is at most 256 weights (one K-quant super-block or eight 32-weight blocks), a multiple
// of 32 = 2 AVX-512 vectors, and starts at a multiple of 256: v % 4 is the same for a weight
// whatever chunk it is in.
constexpr int kChunk = 256;
static_assert(32 % kLanes == 0);

constexpr int kRowsOfA = 4;                  // rows of A sharing one decoded chunk
constexpr int64_t kRowsPerTask = 32;         // fixed chunks of W's rows: thread-independent
constexpr int64_t kSerialWeights = 1 << 16;  // below this many weights, one task
constexpr int kPrefetchBytes = 1024;         // AVX-512 register kernels: prefetch distance

// C[i, j] for the R rows i of A at A (stride k, results at C with stride ldc) and one row of W.
template <int R>
void dot_row(const float* A, const uint8_t* row, BlockDecoder decode, int qk, int bytes, float* C,
             int64_t ldc, int64_t k) {
  alignas(64) float w[kChunk];
  Vec acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int a = 0; a < 4; ++a) acc[r][a] = vzero();
  const int per_chunk = kChunk / qk;
  for (int64_t p0 = 0; p0 < k; p0 += kChunk) {
    const int blocks = int(std::min<int64_t>(per_chunk, (k - p0) / qk));
    for (int i = 0; i < blocks; ++i) decode(row + (p0 / qk + i) * bytes, w + i * qk);
    const int vecs = blocks * qk / kLanes;
    for (int r = 0; r < R; ++r) {
      const float* x = A + r * k + p0;
      int v = 0;
      for (; v + 4 <= vecs; v += 4)
        for (int a = 0; a < 4; ++a)
          acc[r][a] = vfma(vload(x + (v + a) * kLanes), vload(w + (v + a) * kLanes), acc[r][a]);
      for (int a = 0; v + a < vecs; ++a)  // a short last chunk of 32-weight blocks
        acc[r][a] = vfma(vload(x + (v + a) * kLanes), vload(w + (v + a) * kLanes), acc[r][a]);
    }
  }
  for (int r = 0; r < R; ++r)
    C[r * ldc] = vsum(vadd(vadd(acc[r][0], acc[r][1]), vadd(acc[r][2], acc[r][3])));
}

using RowFn = void (*)(const float* A, const uint8_t* row, BlockDecoder decode, int qk, int bytes,
                       float* C, int64_t ldc, int64_t k);

#if defined(__AVX512F__)
// ---- AVX-512: Q4_K, Q5_K, Q6_K and Q8_0 decoded in registers, no buffer ---------------------
// Each 16-weight vector is the block decoder's values (same scalar scale products, then the same
// vector product and difference, no contraction) and goes into the accumulator dot_row gives it
// (vector v = e / 16 of the row into v % 4), so the results equal dot_row's bit for bit.
#define QS_INLINE inline __attribute__((always_inline))
using Acc = Vec[4];

template <int R>
QS_INLINE void fma_rows(Vec w, const float* const* x, int off, Acc* acc, int a) {
  for (int r = 0; r < R; ++r)
    acc[r][a] = _mm512_fmadd_ps(_mm512_loadu_ps(x[r] + off), w, acc[r][a]);
}

QS_INLINE __m512i bytes16(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// x = d1*q - m1 with q the nibbles (Q4_K) or nibbles + high bit << 4 (Q5_K), sub-block s = e/32.
// The 16 (Q5_K: 32) values a sub-block can take are computed once, d1*float(q) - m1 for every q
// (the same product and difference as the decoder), and each weight is looked up by its code
// (vpermps / vpermi2ps): 3 instructions per 16 weights instead of 5, bit for bit the same values
// (GemvBlocks.OneHotRows...); docs/performance.md, session 9.
template <int R, bool Q5>
QS_INLINE void qk45_block(const uint8_t* b, const float* const* x, Acc* acc, int) {
  const float d = f16_at(b, 0), dmin = f16_at(b, 2);
  const __m512 codes_lo = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 codes_hi = _mm512_add_ps(codes_lo, _mm512_set1_ps(16));
  const __m512i low4 = _mm512_set1_epi32(0xF), one = _mm512_set1_epi32(1);
  __m512i h0 = _mm512_setzero_si512(), h1 = h0;
  if constexpr (Q5) h0 = bytes16(b + 16), h1 = bytes16(b + 32);
  const uint8_t* qs = b + (Q5 ? 48 : 16);
  // The eight sub-blocks' d*sc and dmin*m in one vector product (the same fp32 products as the
  // scalar decoder: float(sc) is exact), from the pairs unpacked without branches.
  alignas(16) uint8_t pairs[16];
  ggml::scale_min_k4_all(b + 4, pairs);
  alignas(64) float scaled[16];  // d*sc for sub-blocks 0–7, then dmin*m for 0–7
  _mm512_store_ps(
      scaled, _mm512_mul_ps(_mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d), _mm512_set1_ps(dmin)),
                            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                                _mm_loadu_si128(reinterpret_cast<const __m128i*>(pairs))))));
  const float* d1s = scaled;
  const float* m1s = scaled + 8;
  for (int p = 0; p < 4; ++p) {
    const __m512i lo = bytes16(qs + 32 * p), hi = bytes16(qs + 32 * p + 16);
    for (int h = 0; h < 2; ++h) {  // sub-block s = 2p + h: the low nibbles, then the high ones
      const int s = 2 * p + h;
      const __m512 d1 = _mm512_set1_ps(d1s[s]), m1 = _mm512_set1_ps(m1s[s]);
      const __m512 table_lo = _mm512_sub_ps(_mm512_mul_ps(d1, codes_lo), m1);
      __m512 w0, w1;
      if constexpr (Q5) {
        const __m512 table_hi = _mm512_sub_ps(_mm512_mul_ps(d1, codes_hi), m1);
        const __m128i cnt = _mm_cvtsi32_si128(s);
        __m512i q0 = h ? _mm512_srli_epi32(lo, 4) : _mm512_and_si512(lo, low4);
        __m512i q1 = h ? _mm512_srli_epi32(hi, 4) : _mm512_and_si512(hi, low4);
        q0 = _mm512_add_epi32(
            q0, _mm512_slli_epi32(_mm512_and_si512(_mm512_srl_epi32(h0, cnt), one), 4));
        q1 = _mm512_add_epi32(
            q1, _mm512_slli_epi32(_mm512_and_si512(_mm512_srl_epi32(h1, cnt), one), 4));
        w0 = _mm512_permutex2var_ps(table_lo, q0, table_hi);  // index bit 4 picks the table
        w1 = _mm512_permutex2var_ps(table_lo, q1, table_hi);
      } else {
        // vpermps reads only an index's low 4 bits: the low nibble needs no mask.
        w0 = _mm512_permutexvar_ps(h ? _mm512_srli_epi32(lo, 4) : lo, table_lo);
        w1 = _mm512_permutexvar_ps(h ? _mm512_srli_epi32(hi, 4) : hi, table_lo);
      }
      fma_rows<R>(w0, x, 32 * s, acc, (2 * s) % 4);
      fma_rows<R>(w1, x, 32 * s + 16, acc, (2 * s + 1) % 4);
    }
  }
}

// Q6_K: x = ds*(q - 32), ds = d*scales[e/16], e = 128c + 32g + 16h + l.
template <int R>
QS_INLINE void q6k_block(const uint8_t* b, const float* const* x, Acc* acc, int) {
  const float d = f16_at(b, 208);
  // The sixteen d*scale products in one vector product (float(int8) is exact: the same fp32
  // products as the scalar decoder), instead of 16 scalar conversions and products.
  alignas(64) float ds16[16];
  _mm512_store_ps(ds16, _mm512_mul_ps(_mm512_set1_ps(d),
                                      _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                          reinterpret_cast<const __m128i*>(b + 192))))));
  // The 6-bit codes are assembled on bytes, 32 at a time (ql's nibble, qh's 2 bits at bits 4–5,
  // minus 32; 16-bit shifts, the masks drop what crosses a byte), then widened 16 at a time:
  // ~40% fewer instructions than assembling them on int32 lanes, the same integers.
  const __m256i nibble = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30),
                k32 = _mm256_set1_epi8(32);
  const auto load32 = [&](int off) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + off));
  };
  for (int c = 0; c < 2; ++c) {
    const __m256i qa = load32(64 * c), qb = load32(64 * c + 32), qh = load32(128 + 32 * c);
    // q[g][l'] for l' = 16h + l: g = 0, 1 the low nibbles of qa, qb; g = 2, 3 their high ones.
    const __m256i q[4] = {_mm256_or_si256(_mm256_and_si256(qa, nibble),
                                          _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45)),
                          _mm256_or_si256(_mm256_and_si256(qb, nibble),
                                          _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45)),
                          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), nibble),
                                          _mm256_and_si256(qh, bits45)),
                          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), nibble),
                                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45))};
    for (int g = 0; g < 4; ++g) {
      const __m256i centred = _mm256_sub_epi8(q[g], k32);
      for (int h = 0; h < 2; ++h) {
        const int e0 = 128 * c + 32 * g + 16 * h;
        const __m128i codes =
            h ? _mm256_extracti128_si256(centred, 1) : _mm256_castsi256_si128(centred);
        const __m512 ds = _mm512_set1_ps(ds16[e0 / 16]);
        fma_rows<R>(_mm512_mul_ps(ds, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes))), x, e0, acc,
                    (e0 / 16) % 4);
      }
    }
  }
}

// Q8_0: x = q*d; block i of a row fills accumulators 2i % 4 and 2i % 4 + 1 (a0).
template <int R>
QS_INLINE void q8_0_block(const uint8_t* b, const float* const* x, Acc* acc, int a0) {
  const __m512 d = _mm512_set1_ps(f16_at(b, 0));
  for (int h = 0; h < 2; ++h) {
    const __m512i q =
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 + 16 * h)));
    fma_rows<R>(_mm512_mul_ps(_mm512_cvtepi32_ps(q), d), x, 16 * h, acc, a0 + h);
  }
}

template <int R, void (*Block)(const uint8_t*, const float* const*, Acc*, int)>
void dot_row_reg(const float* A, const uint8_t* row, BlockDecoder, int qk, int bytes, float* C,
                 int64_t ldc, int64_t k) {
  Acc acc[R];
  for (int r = 0; r < R; ++r)
    for (int a = 0; a < 4; ++a) acc[r][a] = vzero();
  const float* x[R];
  for (int64_t i = 0; i < k / qk; ++i) {
    // Software prefetch 1 KiB ahead: a row of blocks is too short a stream for the hardware
    // prefetcher (rand200m Q4_K_M decode +10%, docs/performance.md); past the end: no fault.
    for (int o = 0; o < bytes; o += 64)
      _mm_prefetch(reinterpret_cast<const char*>(row + i * bytes + kPrefetchBytes + o),
                   _MM_HINT_T0);
    for (int r = 0; r < R; ++r) x[r] = A + r * k + i * qk;
    Block(row + i * bytes, x, acc, int(2 * i % 4));
  }
  for (int r = 0; r < R; ++r)
    C[r * ldc] = vsum(vadd(vadd(acc[r][0], acc[r][1]), vadd(acc[r][2], acc[r][3])));
}

template <int R>
RowFn row_fn_r(int type) {
  switch (type) {
    case ggml::kQ4_K:
      return dot_row_reg<R, qk45_block<R, false>>;
    case ggml::kQ5_K:
      return dot_row_reg<R, qk45_block<R, true>>;
    case ggml::kQ6_K:
      return dot_row_reg<R, q6k_block<R>>;
    case ggml::kQ8_0:
      return dot_row_reg<R, q8_0_block<R>>;
    default:
      return dot_row<R>;
  }
}
#else
template <int R>
RowFn row_fn_r(int) {
  return dot_row<R>;
}
#endif

// The kernel for R rows of A (1 <= R <= kRowsOfA) on blocks of `type`.
RowFn row_fn(int type, int R) {
  static_assert(kRowsOfA == 4);
  return R == 4   ? row_fn_r<4>(type)
         : R == 3 ? row_fn_r<3>(type)
         : R == 2 ? row_fn_r<2>(type)
                  : row_fn_r<1>(type);
}

}  // namespace

bool cpu_gemm_nt_ggml_supports(int ggml_type, int64_t k) {
  return block_decoder(ggml_type) != nullptr && k % ggml::block_weights(ggml_type) == 0;
}

void cpu_gemm_nt_ggml(const float* A, int ggml_type, const void* blocks, float* C, int64_t m,
                      int64_t n, int64_t k, const int64_t* row_of) {
  if (m == 0 || n == 0) return;
  const BlockDecoder decode = block_decoder(ggml_type);
  const int qk = ggml::block_weights(ggml_type), bytes = ggml::block_bytes(ggml_type);
  const auto* W = static_cast<const uint8_t*>(blocks);
  const int64_t row_bytes = k / qk * bytes;
  RowFn fns[kRowsOfA + 1] = {nullptr};
  for (int R = 1; R <= kRowsOfA; ++R) fns[R] = row_fn(ggml_type, R);
  auto range = [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const uint8_t* row = W + (row_of ? row_of[j] : j) * row_bytes;
      for (int64_t i = 0; i < m; i += kRowsOfA) {
        const int R = int(std::min<int64_t>(kRowsOfA, m - i));
        fns[R](A + i * k, row, decode, qk, bytes, C + i * n + j, n, k);
      }
    }
  };
  if (n * k <= kSerialWeights) return range(0, n);
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, n, kRowsPerTask),
      [&](const tbb::blocked_range<int64_t>& r) { range(r.begin(), r.end()); },
      tbb::simple_partitioner());
}

}  // namespace qsweep
