#include <random>

#include "calibration/calibration.h"
#include "common/errors.h"

namespace qsweep {

namespace {

// Uniform integer in [0, n) from raw 64-bit draws by rejection: unlike
// std::uniform_int_distribution, identical on every standard library.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return x % n;
}

}  // namespace

CalibrationSet sample_calibration(const std::vector<int>& tokens, const SamplingOptions& opt,
                                  const std::string& source, const std::string& domain,
                                  int bos_id) {
  QS_THROW_IF_NOT(opt.n_samples >= 1, "calibration '", source, "': n_samples must be >= 1");
  QS_THROW_IF_NOT(opt.seqlen >= 2, "calibration '", source, "': seqlen must be >= 2");
  QS_THROW_IF_NOT(!opt.add_bos || bos_id >= 0, "calibration '", source,
                  "': add_bos was asked but the tokenizer has no BOS");
  CalibrationSet set;
  set.source = source;
  set.domain = domain;
  set.options = opt;
  set.tokens_in_source = int64_t(tokens.size());
  const int body = opt.add_bos ? opt.seqlen - 1 : opt.seqlen;
  const int64_t n = int64_t(tokens.size());
  if (opt.mode == SamplingMode::Random) {
    QS_THROW_IF_NOT(n > body, "calibration source '", source, "' has ", n,
                    " tokens; random windows of ", body, " tokens need more than that");
    std::mt19937_64 rng(opt.seed);
    for (int i = 0; i < opt.n_samples; ++i)
      set.offsets.push_back(int64_t(uniform_below(rng, uint64_t(n - body + 1))));
  } else {
    const int64_t need = int64_t(opt.n_samples) * body;
    QS_THROW_IF_NOT(n >= need, "calibration source '", source, "' has ", n, " tokens; ",
                    opt.n_samples, " contiguous windows of ", body, " need ", need);
    for (int i = 0; i < opt.n_samples; ++i) set.offsets.push_back(int64_t(i) * body);
  }
  for (int64_t off : set.offsets) {
    std::vector<int> w;
    w.reserve(size_t(opt.seqlen));
    if (opt.add_bos) w.push_back(bos_id);
    w.insert(w.end(), tokens.begin() + off, tokens.begin() + off + body);
    set.windows.push_back(std::move(w));
  }
  return set;
}

CalibrationSet held_out_windows(const std::vector<int>& tokens,
                                const std::vector<int64_t>& exclude_offsets, int exclude_len,
                                int n_samples, int seqlen, const std::string& source,
                                const std::string& domain) {
  QS_THROW_IF_NOT(n_samples >= 1, "held-out windows of '", source, "': n_samples must be >= 1");
  QS_THROW_IF_NOT(seqlen >= 2, "held-out windows of '", source, "': seqlen must be >= 2");
  const int64_t n = int64_t(tokens.size());
  std::vector<int64_t> kept;
  for (int64_t s = 0; s + seqlen <= n; s += seqlen) {
    bool overlaps = false;
    for (int64_t o : exclude_offsets)
      overlaps = overlaps || (o < s + seqlen && s < o + exclude_len);
    if (!overlaps) kept.push_back(s);
  }
  QS_THROW_IF_NOT(int64_t(kept.size()) >= n_samples, "calibration source '", source, "' has ", n,
                  " tokens: ", kept.size(), " windows of ", seqlen,
                  " tokens lie outside its calibration windows, and ", n_samples,
                  " are needed; lower the sensitivity section's n_samples or seqlen, or the "
                  "calibration set's n_samples");
  CalibrationSet set;
  set.source = source;
  set.domain = domain;
  set.options.n_samples = n_samples;
  set.options.seqlen = seqlen;
  set.options.mode = SamplingMode::Contiguous;
  set.tokens_in_source = n;
  for (int i = 0; i < n_samples; ++i) {
    const int64_t off = kept[size_t(int64_t(i) * int64_t(kept.size()) / n_samples)];
    set.offsets.push_back(off);
    set.windows.emplace_back(tokens.begin() + off, tokens.begin() + off + seqlen);
  }
  return set;
}

CalibrationSet build_calibration_set(const std::string& spec, const std::string& data_dir,
                                     const Tokenizer& tok, const SamplingOptions& opt,
                                     const std::string& domain) {
  const CalibrationSource src = resolve_calibration_source(spec, data_dir, domain);
  const std::vector<int> tokens = tok.encode(read_calibration_text(src), /*add_bos=*/false);
  return sample_calibration(tokens, opt, src.name, src.domain, tok.bos_id());
}

}  // namespace qsweep
