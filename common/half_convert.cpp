#include "common/half_convert.h"

#include <cmath>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "common/half.h"

namespace qsweep {

void halves_to_floats(const uint16_t* in, float* out, size_t n) {
  size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
#endif
  for (; i < n; ++i) out[i] = half_to_float(in[i]);
}

bool floats_to_halves(const float* in, uint16_t* out, size_t n) {
  // Overflow = a finite input whose half is ±inf. Inputs that are already inf or NaN pass
  // through as what they are: they are somebody else's error, reported where they arose.
  bool ok = true;
  size_t i = 0;
#if defined(__F16C__)
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 max_finite = _mm256_set1_ps(65519.99609375f);  // the largest float rounding to 65504
  const __m256 inf = _mm256_set1_ps(INFINITY);
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(in + i);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256 a = _mm256_and_ps(x, abs_mask);
    const __m256 over =
        _mm256_and_ps(_mm256_cmp_ps(a, max_finite, _CMP_GT_OQ), _mm256_cmp_ps(a, inf, _CMP_LT_OQ));
    if (_mm256_movemask_ps(over)) ok = false;
  }
#endif
  for (; i < n; ++i) {
    out[i] = float_to_half(in[i]);
    if ((out[i] & 0x7fffu) == 0x7c00u && std::isfinite(in[i])) ok = false;
  }
  return ok;
}

}  // namespace qsweep
