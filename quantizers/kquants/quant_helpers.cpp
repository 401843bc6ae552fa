// Scale/level search helpers (see detail/quant_helpers.h). Operation order and intermediate
// types follow ggml-quants.c exactly; do not "simplify" expressions such as (w * x) * l.
#include "quantizers/kquants/detail/quant_helpers.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace qsweep::kquants::detail {

namespace {

// ggml's MAX(-nmax, MIN(nmax-1, l)).
inline int clamp_sym(int l, int nmax) {
  return std::max(-nmax, std::min(nmax - 1, l));
}

inline float qx_weight(const float* qw, int rmse_type, const float* x, int i) {
  if (qw) return qw[i];
  switch (rmse_type) {
    case 1:
      return x[i] * x[i];
    case 2:
      return 1.0f;
    case 3:
      return std::fabs(x[i]);
    default:
      return std::sqrt(std::fabs(x[i]));
  }
}

}  // namespace

float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::memset(L, 0, static_cast<size_t>(n));
    return 0.f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) {
      L[i] = static_cast<int8_t>(nmax + clamp_sym(nearest_int(iscale * x[i]), nmax));
    }
    return 1 / iscale;
  }
  bool return_early = false;
  if (rmse_type < 0) {
    rmse_type = -rmse_type;
    return_early = true;
  }
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_sym(nearest_int(iscale * x[i]), nmax);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = qx_weight(qw, rmse_type, x, i);
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
  float best = scale * sumlx;
  // The 18 trial scales (is = -9 ... 9 without 0) are independent: their sums are accumulated
  // side by side, one vector lane per trial (3 vectors of 8, the last 6 lanes unused), each
  // in ggml's element order with ggml's operations (so every sum is the one ggml computes, bit
  // for bit). The choice then walks the trials in ggml's order.
  constexpr int kTrials = 18, kLanes = 8, kVecs = 3;
  using VF = float __attribute__((vector_size(4 * kLanes)));
  using VI = int32_t __attribute__((vector_size(4 * kLanes)));
  alignas(32) float trial_iscale[kVecs * kLanes] = {};
  alignas(32) float trial_sumlx[kVecs * kLanes], trial_suml2[kVecs * kLanes];
  for (int k = 0; k < kTrials; ++k) {
    const int is = k < 9 ? k - 9 : k - 8;
    trial_iscale[k] = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
  }
  VF isc[kVecs], slx[kVecs], sl2[kVecs];
  for (int v = 0; v < kVecs; ++v) {
    std::memcpy(&isc[v], trial_iscale + v * kLanes, sizeof(VF));
    slx[v] = VF{} * 0.0f;
    sl2[v] = slx[v];
  }
  const VI lo = VI{} - nmax, hi = VI{} + (nmax - 1);
  for (int i = 0; i < n; ++i) {
    const float w = qx_weight(qw, rmse_type, x, i);
    const float wx = w * x[i];
    for (int v = 0; v < kVecs; ++v) {
      // nearest_int, lane by lane: 1.5·2^23 added puts the integer in the low mantissa bits.
      const VF shifted = isc[v] * x[i] + 12582912.f;
      VI l = (std::bit_cast<VI>(shifted) & 0x007fffff) - 0x00400000;
      l = l < lo ? lo : l;  // clamp_sym
      l = l > hi ? hi : l;
      const VF lf = __builtin_convertvector(l, VF);
      slx[v] += wx * lf;
      sl2[v] += w * lf * lf;
    }
  }
  for (int v = 0; v < kVecs; ++v) {
    std::memcpy(trial_sumlx + v * kLanes, &slx[v], sizeof(VF));
    std::memcpy(trial_suml2 + v * kLanes, &sl2[v], sizeof(VF));
  }
  for (int k = 0; k < kTrials; ++k) {
    sumlx = trial_sumlx[k];
    suml2 = trial_suml2[k];
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      iscale = trial_iscale[k];
      for (int i = 0; i < n; ++i) {
        L[i] = static_cast<int8_t>(nmax + clamp_sym(nearest_int(iscale * x[i]), nmax));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// ---- ggml's make_q3_quants / make_qkx2_quants on NL sub-blocks at once ------------------
// One vector lane per sub-block. Every lane runs exactly ggml's operations in ggml's order
// (each branch becomes a per-lane select), so each lane's result is bit for bit the scalar one.

namespace {

// Spelled out per width: GCC drops vector_size on a typedef whose size depends on NL.
template <int NL>
struct Lanes;
template <>
struct Lanes<8> {
  using VF = float __attribute__((vector_size(32)));
  using VI = int32_t __attribute__((vector_size(32)));
};
template <>
struct Lanes<16> {
  using VF = float __attribute__((vector_size(64)));
  using VI = int32_t __attribute__((vector_size(64)));
};
template <typename VI>
bool any_lane(VI m) {
  int32_t acc = 0;
  for (size_t j = 0; j < sizeof(VI) / 4; ++j) acc |= m[j];
  return acc != 0;
}

// nearest_int lane by lane (1.5·2^23 added puts the integer in the low mantissa bits).
template <typename VI, typename VF>
inline VI nearest_lanes(VF v) {
  return (std::bit_cast<VI>(v + 12582912.f) & 0x007fffff) - 0x00400000;
}

template <typename VI, typename VF>
inline VF abs_lanes(VF v) {
  return std::bit_cast<VF>(std::bit_cast<VI>(v) & 0x7fffffff);
}

template <typename VI>
inline VI clamp_lanes(VI l, VI lo, VI hi) {
  l = l < lo ? lo : l;
  return l > hi ? hi : l;
}

constexpr int kMaxLaneN = 32;

// xt[i] = (x[n*0 + i], ..., x[n*(NL-1) + i]): element i of every sub-block.
template <int NL>
void transpose_in(int n, const float* x, typename Lanes<NL>::VF* xt) {
  alignas(64) float buf[NL];
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < NL; ++j) buf[j] = x[n * j + i];
    std::memcpy(&xt[i], buf, sizeof(buf));
  }
}

// G groups of NL lanes (sub-blocks x + n*NL*g ...), interleaved so that the sequential
// coordinate descent of one group overlaps the others'.
// L[n*j + i] = zero[j] ? 0 : int(level(i)[j]) + add for the NL sub-blocks of one group.
template <int NL, typename T, typename Level>
void transpose_out(int n, Level level, typename Lanes<NL>::VI zero, int add, T* L) {
  using VI = typename Lanes<NL>::VI;
  alignas(64) int32_t buf[kMaxLaneN][NL];
  for (int i = 0; i < n; ++i) {
    const VI l = zero ? VI{} * 0 : __builtin_convertvector(level(i), VI) + add;
    std::memcpy(buf[i], &l, sizeof(l));
  }
  for (int j = 0; j < NL; ++j) {
    for (int i = 0; i < n; ++i) L[n * j + i] = static_cast<T>(buf[i][j]);
  }
}

template <int NL, int G>
void q3_lanes(int n, int nmax, const float* x, int8_t* L, float* scales) {
  using VF = typename Lanes<NL>::VF;
  using VI = typename Lanes<NL>::VI;
  VF xs[G][kMaxLaneN], lev[G][kMaxLaneN];
  const VF zero = VF{} * 0.0f;
  const VI lo = VI{} - nmax, hi = VI{} + (nmax - 1);
  VI all_zero[G];
  VF sumlx[G], suml2[G];
  for (int g = 0; g < G; ++g) {
    transpose_in<NL>(n, x + n * NL * g, xs[g]);
    VF max = zero, amax = zero;
    for (int i = 0; i < n; ++i) {
      const VF ax = abs_lanes<VI>(xs[g][i]);
      const VI gt = ax > amax;
      amax = gt ? ax : amax;
      max = gt ? xs[g][i] : max;
    }
    all_zero[g] = amax < kGroupMaxEps;
    const VF iscale = static_cast<float>(-nmax) / max;
    sumlx[g] = zero;
    suml2[g] = zero;
    for (int i = 0; i < n; ++i) {
      const VF lf =
          __builtin_convertvector(clamp_lanes(nearest_lanes<VI>(iscale * xs[g][i]), lo, hi), VF);
      lev[g][i] = lf;
      const VF w = xs[g][i] * xs[g][i];
      sumlx[g] += w * xs[g][i] * lf;
      suml2[g] += w * lf * lf;
    }
  }
  // Coordinate descent. A pass that changes nothing in a lane would repeat unchanged, so the
  // passes a lane runs after ggml would have stopped it change nothing either.
  bool active[G];
  for (int g = 0; g < G; ++g) active[g] = true;
  for (int itry = 0; itry < 5; ++itry) {
    VI changed[G];
    for (int g = 0; g < G; ++g) changed[g] = VI{} * 0;
    for (int i = 0; i < n; ++i) {
      for (int g = 0; g < G; ++g) {
        if (!active[g]) continue;
        const VF xi = xs[g][i];
        const VF w = xi * xi;
        const VF Li = lev[g][i];
        VF slx = sumlx[g] - w * xi * Li;
        const VI slx_pos = slx > 0;
        VF sl2 = suml2[g] - w * Li * Li;
        const VF nl =
            __builtin_convertvector(clamp_lanes(nearest_lanes<VI>(xi * sl2 / slx), lo, hi), VF);
        slx += w * xi * nl;
        sl2 += w * nl * nl;
        const VI accept =
            slx_pos & (nl != Li) & (sl2 > 0) & (slx * slx * suml2[g] > sumlx[g] * sumlx[g] * sl2);
        lev[g][i] = accept ? nl : Li;
        sumlx[g] = accept ? slx : sumlx[g];
        suml2[g] = accept ? sl2 : suml2[g];
        changed[g] |= accept;
      }
    }
    bool any = false;
    for (int g = 0; g < G; ++g) {
      active[g] = active[g] && any_lane(changed[g]);
      any = any || active[g];
    }
    if (!any) break;
  }
  for (int g = 0; g < G; ++g) {
    const VF scale = suml2[g] > 0.0f ? sumlx[g] / suml2[g] : zero;
    for (int j = 0; j < NL; ++j) scales[NL * g + j] = all_zero[g][j] ? 0.f : scale[j];
    transpose_out<NL>(
        n, [&](int i) { return lev[g][i]; }, all_zero[g], nmax, L + n * NL * g);
  }
}

// G groups of NL lanes (sub-blocks x + n*NL*g ...), interleaved so that the sequential sums
// of one group overlap the others'.
template <int NL, int G, bool kMad>
void qkx2_lanes(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* scales,
                float* the_mins, float rmin, float rdelta, int nstep) {
  using VF = typename Lanes<NL>::VF;
  using VI = typename Lanes<NL>::VI;
  // [element][group]; xm = x - min, refreshed whenever a lane's min changes.
  VF xs[kMaxLaneN][G], ws[kMaxLaneN][G], xm[kMaxLaneN][G], lev[kMaxLaneN][G], aux[kMaxLaneN][G];
  const VF zero = VF{} * 0.0f;
  const VI lo = VI{} * 0, hi = VI{} + nmax;
  auto error_term = [](VF diff) {
    if constexpr (kMad) {
      return abs_lanes<VI>(diff);
    } else {
      return diff * diff;
    }
  };
  auto levels = [&](VF iscale, VF xmin) {
    return __builtin_convertvector(clamp_lanes(nearest_lanes<VI>(iscale * xmin), lo, hi), VF);
  };
  const float fnmax = static_cast<float>(nmax);
  VF min[G], max[G], sum_w[G], sum_x[G], scale[G], best_error[G];
  VI flat[G];
  for (int g = 0; g < G; ++g) {
    VF t[kMaxLaneN];
    transpose_in<NL>(n, x + n * NL * g, t);
    for (int i = 0; i < n; ++i) xs[i][g] = t[i];
    transpose_in<NL>(n, weights + n * NL * g, t);
    for (int i = 0; i < n; ++i) ws[i][g] = t[i];
    min[g] = xs[0][g];
    max[g] = xs[0][g];
    sum_w[g] = ws[0][g];
    sum_x[g] = sum_w[g] * xs[0][g];
    for (int i = 1; i < n; ++i) {
      min[g] = xs[i][g] < min[g] ? xs[i][g] : min[g];
      max[g] = xs[i][g] > max[g] ? xs[i][g] : max[g];
      sum_w[g] += ws[i][g];
      sum_x[g] += ws[i][g] * xs[i][g];
    }
    min[g] = min[g] > 0 ? zero : min[g];
    flat[g] = max[g] == min[g];
    const VF iscale = fnmax / (max[g] - min[g]);
    scale[g] = 1.0f / iscale;
    best_error[g] = zero;
    for (int i = 0; i < n; ++i) {
      xm[i][g] = xs[i][g] - min[g];
      lev[i][g] = levels(iscale, xm[i][g]);
      best_error[g] += ws[i][g] * error_term(scale[g] * lev[i][g] + min[g] - xs[i][g]);
    }
  }
  for (int is = 0; is <= nstep; ++is) {
    const float num = rmin + rdelta * static_cast<float>(is) + fnmax;
    VF iscale[G], sum_l[G], sum_l2[G], sum_xl[G];
    for (int g = 0; g < G; ++g) {
      iscale[g] = num / (max[g] - min[g]);
      sum_l[g] = sum_l2[g] = sum_xl[g] = zero;
    }
    for (int i = 0; i < n; ++i) {
      for (int g = 0; g < G; ++g) {
        const VF fl = levels(iscale[g], xm[i][g]);
        aux[i][g] = fl;
        sum_l[g] += ws[i][g] * fl;
        sum_l2[g] += ws[i][g] * fl * fl;
        sum_xl[g] += ws[i][g] * fl * xs[i][g];
      }
    }
    VF D[G], this_scale[G], this_min[G], cur_error[G];
    for (int g = 0; g < G; ++g) {
      D[g] = sum_w[g] * sum_l2[g] - sum_l[g] * sum_l[g];
      this_scale[g] = (sum_w[g] * sum_xl[g] - sum_x[g] * sum_l[g]) / D[g];
      this_min[g] = (sum_l2[g] * sum_x[g] - sum_l[g] * sum_xl[g]) / D[g];
      const VI min_pos = this_min[g] > 0;
      this_min[g] = min_pos ? zero : this_min[g];
      this_scale[g] = min_pos ? sum_xl[g] / sum_l2[g] : this_scale[g];
      cur_error[g] = zero;
    }
    for (int i = 0; i < n; ++i) {
      for (int g = 0; g < G; ++g) {
        cur_error[g] += ws[i][g] * error_term(this_scale[g] * aux[i][g] + this_min[g] - xs[i][g]);
      }
    }
    for (int g = 0; g < G; ++g) {
      const VI better = (D[g] > 0) & (cur_error[g] < best_error[g]) & ~flat[g];
      if (!any_lane(better)) continue;
      best_error[g] = better ? cur_error[g] : best_error[g];
      scale[g] = better ? this_scale[g] : scale[g];
      min[g] = better ? this_min[g] : min[g];
      for (int i = 0; i < n; ++i) {
        lev[i][g] = better ? aux[i][g] : lev[i][g];
        xm[i][g] = xs[i][g] - min[g];
      }
    }
  }
  for (int g = 0; g < G; ++g) {
    for (int j = 0; j < NL; ++j) {
      scales[NL * g + j] = flat[g][j] ? 0.f : scale[g][j];
      the_mins[NL * g + j] = -min[g][j];
    }
    transpose_out<NL>(
        n, [&](int i) { return lev[i][g]; }, flat[g], 0, L + n * NL * g);
  }
}

}  // namespace

// Runs f<W, G>(j) over the nsub sub-blocks: G groups of W lanes, 4 x 16 at a time while 64
// remain. (Generic vectors wider than a register, 32 lanes in two, measured 4x slower than
// 16-lane ones with GCC 12; separate vectors side by side do not have that problem.)
template <typename F>
void by_lanes(int nsub, F f) {
  int j = 0;
  for (; j + 64 <= nsub; j += 64) f.template operator()<16, 4>(j);
  for (; j + 32 <= nsub; j += 32) f.template operator()<16, 2>(j);
  for (; j + 16 <= nsub; j += 16) f.template operator()<16, 1>(j);
  for (; j < nsub; j += 8) f.template operator()<8, 1>(j);
}

void make_q3_quants_lanes(int nsub, int n, int nmax, const float* x, int8_t* L, float* scales) {
  QS_THROW_IF_NOT(n >= 1 && n <= kMaxLaneN && nsub % 8 == 0, "make_q3_quants_lanes: ", nsub,
                  " sub-blocks of ", n);
  by_lanes(nsub,
           [&]<int W, int G>(int j) { q3_lanes<W, G>(n, nmax, x + n * j, L + n * j, scales + j); });
}

void make_qkx2_quants_lanes(int nsub, int n, int nmax, const float* x, const float* weights,
                            uint8_t* L, float* scales, float* the_mins, float rmin, float rdelta,
                            int nstep, bool use_mad) {
  QS_THROW_IF_NOT(n >= 1 && n <= kMaxLaneN && nsub % 8 == 0, "make_qkx2_quants_lanes: ", nsub,
                  " sub-blocks of ", n);
  by_lanes(nsub, [&]<int W, int G>(int j) {
    auto* const run = use_mad ? qkx2_lanes<W, G, true> : qkx2_lanes<W, G, false>;
    run(n, nmax, x + n * j, weights + n * j, L + n * j, scales + j, the_mins + j, rmin, rdelta,
        nstep);
  });
}

float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad) {
  auto weight = [&](int i) { return weights ? weights[i] : x[i] * x[i]; };
  float min = x[0];
  float max = x[0];
  float sum_w = weight(0);
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weight(i);
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max <= min) {
    std::memset(L, 0, static_cast<size_t>(n));
    *the_min = -min;
    return 0.f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = fnmax / (max - min);
  float scale = 1 / iscale;
  float best_mad = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_mad += weight(i) * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  // As in ggml, the trial scales are relative to the best min found so far.
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + fnmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      // v can be inf/nan/huge once min approaches max: clamp before rounding.
      const float v = iscale * (x[i] - min);
      const int l = v > 0 ? nearest_int(v < fnmax ? v : fnmax) : 0;
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weight(i);
      const float fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float mad = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        mad += weight(i) * diff;
      }
      if (mad < best_mad) {
        std::memcpy(L, Laux, static_cast<size_t>(n));
        best_mad = mad;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = max > x[i] ? max : x[i];  // ggml's MAX(), NaN included
  if (max < kGroupMaxEps) {
    std::memset(L, 0, static_cast<size_t>(n));
    return 0.f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = fnmax / max;
  // L is uint8_t as in ggml: a (theoretically) negative level wraps, and the wrapped value
  // is what the error sums below see.
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * static_cast<float>(L[i]);
    best_mse += quant_weights[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * static_cast<float>(is) + fnmax) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * static_cast<float>(l);
      mse += quant_weights[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    const float w = quant_weights[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = quant_weights[i];
      const float Li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * Li;
      float sl2 = suml2 - w * Li * Li;
      if (slx > 0 && sl2 > 0) {
        const int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          slx += w * x[i] * static_cast<float>(new_l);
          sl2 += w * static_cast<float>(new_l) * static_cast<float>(new_l);
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

}  // namespace qsweep::kquants::detail
