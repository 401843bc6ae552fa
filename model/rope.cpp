#include "model/rope.h"

#include <cmath>

#include "common/errors.h"

namespace qsweep {

namespace {

float base_inv_freq(const ModelSpec& s, int i) {
  return 1.0f / float(std::pow(s.rope_theta, double(float(2 * i) / float(s.head_dim))));
}

}  // namespace

std::vector<float> rope_freq_factors(const ModelSpec& s) {
  const int pairs = s.head_dim / 2;
  const RopeScaling& sc = s.rope_scaling;
  switch (sc.type) {
    case RopeScaling::Type::None:
      return {};
    case RopeScaling::Type::Factors:
      QS_THROW_IF_NOT(int(sc.freq_factors.size()) == pairs, "rope scaling has ",
                      sc.freq_factors.size(), " frequency factors but head_dim ", s.head_dim,
                      " needs ", pairs);
      return sc.freq_factors;
    case RopeScaling::Type::Llama3: {
      // Wavelengths shorter than the original context / high_freq_factor keep their
      // frequency, longer than original / low_freq_factor are slowed by `factor`, and the
      // band between is interpolated smoothly.
      const double old_ctx = sc.original_max_position_embeddings;
      const double low_wavelen = old_ctx / sc.low_freq_factor;
      const double high_wavelen = old_ctx / sc.high_freq_factor;
      std::vector<float> f(static_cast<size_t>(pairs));
      for (int i = 0; i < pairs; ++i) {
        const double wavelen = 2 * M_PI / double(base_inv_freq(s, i));
        if (wavelen < high_wavelen) {
          f[size_t(i)] = 1.0f;
        } else if (wavelen > low_wavelen) {
          f[size_t(i)] = float(sc.factor);
        } else {
          const double smooth =
              (old_ctx / wavelen - sc.low_freq_factor) / (sc.high_freq_factor - sc.low_freq_factor);
          f[size_t(i)] = float(1.0 / ((1 - smooth) / sc.factor + smooth));
        }
      }
      return f;
    }
  }
  return {};
}

std::vector<float> rope_inv_freq(const ModelSpec& s) {
  const int pairs = s.head_dim / 2;
  const std::vector<float> factors = rope_freq_factors(s);
  std::vector<float> inv(static_cast<size_t>(pairs));
  for (int i = 0; i < pairs; ++i) {
    inv[size_t(i)] = base_inv_freq(s, i);
    if (!factors.empty()) inv[size_t(i)] /= factors[size_t(i)];
  }
  return inv;
}

}  // namespace qsweep
