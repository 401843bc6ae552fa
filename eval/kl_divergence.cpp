#include "eval/kl_divergence.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "backends/cpu/cpu_quant_ops.h"
#include "common/errors.h"
#include "common/half.h"
#include "common/mapped_file.h"
#include "common/progress.h"
#include "eval/window_batches.h"

namespace qsweep {
namespace {

constexpr char kMagic[8] = {'Q', 'S', 'K', 'L', 'D', 'I', 'V', '\0'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kFlagFp16 = 1u;
constexpr uint32_t kFlagIds16 = 2u;
constexpr size_t kHeaderBytes = 8 + 6 * 4 + 5 * 8;

/// The chunks protocol's windows (eval/perplexity.h): [begin, begin + len).
struct Window {
  int64_t begin = 0;
  int len = 0;
};

std::vector<Window> chunk_windows(int64_t n, int ctx) {
  std::vector<Window> w;
  if (n < ctx) {
    w.push_back({0, int(n)});  // one short chunk rather than nothing (as perplexity)
  } else {
    for (int64_t c = 0; c < n / ctx; ++c) w.push_back({c * ctx, ctx});
  }
  return w;
}

/// Calls fn(row of logits predicting position t of window wi, wi, t, output index)
/// for every scored position, forward passes batched `rows_per_batch` tokens at a
/// time and rows processed in parallel.
template <typename Fn>
void for_each_scored(const Transformer& model, const std::vector<int32_t>& tokens,
                     const std::vector<Window>& windows, int64_t rows_per_batch, bool progress_on,
                     const char* label, const Fn& fn) {
  std::vector<int64_t> out_offset(windows.size() + 1, 0);
  for (size_t i = 0; i < windows.size(); ++i)
    out_offset[i + 1] = out_offset[i] + (windows[i].len - 1);
  Progress progress(label, int64_t(windows.size()), "windows", progress_on);
  size_t w0 = 0;
  std::vector<std::vector<int>> seqs;
  while (w0 < windows.size()) {
    const size_t w1 = eval_detail::next_window_batch(tokens, windows, w0, rows_per_batch, &seqs);
    const MatrixRM logits = model.forward(seqs);
    // (row of the logits, output index, target token) of every scored position
    struct Job {
      int64_t row, out;
      int target;
    };
    std::vector<Job> jobs;
    int64_t row0 = 0;
    for (size_t wi = w0; wi < w1; ++wi) {
      const Window& w = windows[wi];
      for (int t = 1; t < w.len; ++t)
        jobs.push_back({row0 + t - 1, out_offset[wi] + t - 1, tokens[size_t(w.begin + t)]});
      row0 += w.len;
    }
    tbb::parallel_for(tbb::blocked_range<size_t>(0, jobs.size(), 16),
                      [&](const tbb::blocked_range<size_t>& r) {
                        std::vector<double> scratch;
                        for (size_t j = r.begin(); j != r.end(); ++j)
                          fn(logits.row(jobs[j].row).data(), jobs[j].out, jobs[j].target, scratch);
                      });
    progress.advance(int64_t(w1 - w0));
    w0 = w1;
  }
  progress.finish();
}

/// Rounds a stored value exactly as the file stores it.
inline float store_round(double v, bool fp16) {
  const float f = float(v);
  return fp16 ? half_to_float(float_to_half(f)) : f;
}

/// log Σ exp(z) of one row, in double.
inline double log_sum_exp(const float* z, int64_t vocab) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, z[j]);
  double s = 0;
  for (int64_t j = 0; j < vocab; ++j) s += std::exp(double(z[j]) - double(mx));
  return double(mx) + std::log(s);
}

/// The probability mass of the ids outside `ids[0..k)`, summed directly in id
/// order (no 1 − Σ cancellation); `mask` is scratch.
inline double rest_mass(const float* z, double lse, const int32_t* ids, size_t k, int vocab,
                        std::vector<double>& mask) {
  mask.assign(size_t(vocab), 1.0);
  for (size_t i = 0; i < k; ++i) mask[size_t(ids[i])] = 0.0;
  double rest = 0;
  for (int j = 0; j < vocab; ++j)
    if (mask[size_t(j)] != 0.0) rest += std::exp(double(z[j]) - lse);
  return rest;
}

std::string describe_protocol(const KlBaseline& b) {
  return cat("chunks ctx=", b.ctx, " tokens_in_text=", b.tokens_in_text,
             " tokens_used=", b.tokens_used(), " tokens_dropped=", b.tokens_dropped,
             " windows=", b.windows, " scored=", b.positions, " top_k=", b.top_k,
             " values=", b.fp16_values ? "fp16" : "fp32");
}

/// Checks what every baseline must satisfy (used after reading and before use).
void check_baseline(const KlBaseline& b, const std::string& where) {
  QS_THROW_IF_NOT(b.ctx >= 2, where, ": ctx ", b.ctx, " must be at least 2");
  QS_THROW_IF_NOT(b.vocab >= 1, where, ": vocab ", b.vocab, " must be positive");
  QS_THROW_IF_NOT(b.top_k >= 1 && b.top_k <= b.vocab, where, ": top_k ", b.top_k,
                  " must be between 1 and vocab (", b.vocab, ")");
  QS_THROW_IF_NOT(b.tokens_used() >= 2, where, ": ", b.tokens_used(),
                  " token(s) stored; at least 2 are needed");
  const std::vector<Window> w = chunk_windows(b.tokens_used(), b.ctx);
  int64_t pos = 0;
  for (const auto& x : w) pos += x.len - 1;
  QS_THROW_IF_NOT(b.tokens_used() < b.ctx || b.tokens_used() % b.ctx == 0, where, ": ",
                  b.tokens_used(), " tokens are not a whole number of ", b.ctx, "-token windows");
  QS_THROW_IF_NOT(int64_t(w.size()) == b.windows && pos == b.positions, where, ": ", b.windows,
                  " windows / ", b.positions, " positions do not match ", b.tokens_used(),
                  " tokens in windows of ", b.ctx, " (expected ", w.size(), " / ", pos, ")");
  const size_t pk = size_t(b.positions) * size_t(b.top_k);
  QS_THROW_IF_NOT(b.top_ids.size() == pk && b.top_logp.size() == pk &&
                      b.rest_logp.size() == size_t(b.positions) &&
                      b.target_logp.size() == size_t(b.positions),
                  where, ": array sizes do not match positions × top_k");
}

// ---- binary writing / reading ------------------------------------------------

struct Writer {
  std::vector<uint8_t> bytes;
  template <typename T>
  void put(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void put_bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes.insert(bytes.end(), b, b + n);
  }
};

uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

struct Reader {
  const uint8_t* data;
  size_t size;
  size_t at = 0;
  const std::string& path;
  void need(size_t n, const char* what) const {
    QS_THROW_IF_NOT(n <= size - at, path, ": KL baseline file is truncated (", what, " needs ", n,
                    " bytes at offset ", at, ", file has ", size, "); recompute the baseline");
  }
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
};

}  // namespace

KlBaseline compute_kl_baseline(const Transformer& base, const std::vector<int>& all_tokens,
                               const KlBaselineOptions& opt) {
  const int vocab = int(base.spec().vocab_size);
  QS_THROW_IF_NOT(opt.ctx >= 2, "KL baseline: ctx must be at least 2 (got ", opt.ctx, ")");
  QS_THROW_IF_NOT(opt.top_k >= 1 && opt.top_k <= vocab, "KL baseline: top_k ", opt.top_k,
                  " must be between 1 and the vocabulary size (", vocab, ")");
  QS_THROW_IF_NOT(opt.max_tokens >= 0, "KL baseline: max_tokens must be >= 0");
  KlBaseline b;
  b.ctx = opt.ctx;
  b.top_k = opt.top_k;
  b.vocab = vocab;
  b.fp16_values = opt.fp16_values;
  b.tokens_in_text = int64_t(all_tokens.size());
  const int64_t n =
      opt.max_tokens > 0 ? std::min<int64_t>(opt.max_tokens, b.tokens_in_text) : b.tokens_in_text;
  QS_THROW_IF_NOT(n >= 2, "KL baseline: the text has ", n,
                  " token(s); at least 2 are needed to score anything");
  const std::vector<Window> windows = chunk_windows(n, opt.ctx);
  b.windows = int64_t(windows.size());
  const int64_t used = windows.back().begin + windows.back().len;
  b.tokens_dropped = n - used;
  b.tokens.assign(all_tokens.begin(), all_tokens.begin() + used);
  for (int32_t t : b.tokens)
    QS_THROW_IF_NOT(t >= 0 && t < vocab, "KL baseline: token id ", t, " outside the vocabulary (",
                    vocab, ")");
  b.positions = used - b.windows;
  const size_t k = size_t(opt.top_k);
  b.top_ids.assign(size_t(b.positions) * k, 0);
  b.top_logp.assign(size_t(b.positions) * k, 0.0f);
  b.rest_logp.assign(size_t(b.positions), 0.0f);
  b.target_logp.assign(size_t(b.positions), 0.0f);

  for_each_scored(base, b.tokens, windows,
                  eval_detail::rows_per_batch(opt.batch_rows, opt.ctx, vocab), opt.progress,
                  "kl baseline",
                  [&](const float* z, int64_t out, int target, std::vector<double>& mask) {
                    // Top-k ids and log Σ exp: Backend::topk_logsumexp's CPU twin (its CUDA twin is
                    // tested against it in tests/backends/quant_ops_test.cpp).
                    thread_local std::vector<int> idx;
                    int32_t* ids = &b.top_ids[size_t(out) * k];
                    double lse = 0;
                    cpu_topk_logsumexp_row(z, vocab, int(k), ids, &lse, idx);
                    float* lp = &b.top_logp[size_t(out) * k];
                    for (size_t i = 0; i < k; ++i)
                      lp[i] = store_round(double(z[ids[i]]) - lse, opt.fp16_values);
                    const double rest = rest_mass(z, lse, ids, k, vocab, mask);
                    b.rest_logp[size_t(out)] =
                        rest > 0 ? float(std::log(rest)) : -std::numeric_limits<float>::infinity();
                    b.target_logp[size_t(out)] = float(double(z[target]) - lse);
                  });
  b.protocol = describe_protocol(b);
  return b;
}

void write_kl_baseline(const std::string& path, const KlBaseline& b) {
  check_baseline(b, path);
  const bool ids16 = b.vocab <= 65536;
  Writer w;
  w.put_bytes(kMagic, sizeof(kMagic));
  w.put(kVersion);
  w.put(uint32_t((b.fp16_values ? kFlagFp16 : 0u) | (ids16 ? kFlagIds16 : 0u)));
  w.put(uint32_t(b.ctx));
  w.put(uint32_t(b.top_k));
  w.put(uint32_t(b.vocab));
  w.put(uint32_t(b.protocol.size()));
  for (int64_t v : {b.tokens_in_text, b.tokens_used(), b.tokens_dropped, b.windows, b.positions})
    w.put(v);
  w.put_bytes(b.protocol.data(), b.protocol.size());
  w.put_bytes(b.tokens.data(), b.tokens.size() * 4);
  for (int32_t id : b.top_ids) {
    if (ids16)
      w.put(uint16_t(id));
    else
      w.put(id);
  }
  for (float v : b.top_logp) {
    if (b.fp16_values)
      w.put(float_to_half(v));
    else
      w.put(v);
  }
  w.put_bytes(b.rest_logp.data(), b.rest_logp.size() * 4);
  w.put_bytes(b.target_logp.data(), b.target_logp.size() * 4);
  w.put(fnv1a(w.bytes.data(), w.bytes.size()));
  write_file_atomic(path, w.bytes.data(), w.bytes.size());
}

KlBaseline read_kl_baseline(const std::string& path) {
  const MappedFile f(path);
  Reader r{f.data(), f.size(), 0, path};
  r.need(sizeof(kMagic), "the magic");
  QS_THROW_IF_NOT(std::memcmp(f.data(), kMagic, sizeof(kMagic)) == 0, path,
                  ": not a qsweep KL baseline file (bad magic)");
  r.at = sizeof(kMagic);
  const uint32_t version = r.get<uint32_t>("the version");
  QS_THROW_IF_NOT(version == kVersion, path, ": KL baseline version ", version,
                  " is not supported (this build reads version ", kVersion,
                  "); recompute the baseline");
  const uint32_t flags = r.get<uint32_t>("the flags");
  QS_THROW_IF_NOT((flags & ~(kFlagFp16 | kFlagIds16)) == 0, path, ": unknown flags 0x", std::hex,
                  flags);
  KlBaseline b;
  b.fp16_values = (flags & kFlagFp16) != 0;
  const bool ids16 = (flags & kFlagIds16) != 0;
  const uint32_t ctx = r.get<uint32_t>("ctx");
  const uint32_t top_k = r.get<uint32_t>("top_k");
  const uint32_t vocab = r.get<uint32_t>("vocab");
  const uint32_t proto_bytes = r.get<uint32_t>("the protocol length");
  QS_THROW_IF_NOT(ctx >= 2 && ctx <= (1u << 24), path, ": ctx ", ctx, " is out of range");
  QS_THROW_IF_NOT(vocab >= 1 && vocab <= (1u << 24), path, ": vocab ", vocab, " is out of range");
  QS_THROW_IF_NOT(top_k >= 1 && top_k <= vocab, path, ": top_k ", top_k,
                  " must be between 1 and vocab (", vocab, ")");
  QS_THROW_IF_NOT(!ids16 || vocab <= 65536, path, ": 16-bit ids with vocab ", vocab);
  b.ctx = int(ctx);
  b.top_k = int(top_k);
  b.vocab = int(vocab);
  b.tokens_in_text = r.get<int64_t>("tokens_in_text");
  const int64_t used = r.get<int64_t>("tokens_used");
  b.tokens_dropped = r.get<int64_t>("tokens_dropped");
  b.windows = r.get<int64_t>("windows");
  b.positions = r.get<int64_t>("positions");
  QS_THROW_IF_NOT(r.at == kHeaderBytes, "internal: header size");
  for (int64_t v : {b.tokens_in_text, used, b.tokens_dropped, b.windows, b.positions})
    QS_THROW_IF_NOT(v >= 0, path, ": negative count in the header");
  // Every length is checked against the file size before anything is allocated.
  const std::string ctx_msg = path + ": KL baseline sizes";
  const int64_t pk = mul_checked(b.positions, int64_t(top_k), ctx_msg);
  int64_t expect = int64_t(kHeaderBytes) + int64_t(proto_bytes);
  expect = add_checked(expect, mul_checked(used, 4, ctx_msg), ctx_msg);
  expect = add_checked(expect, mul_checked(pk, ids16 ? 2 : 4, ctx_msg), ctx_msg);
  expect = add_checked(expect, mul_checked(pk, b.fp16_values ? 2 : 4, ctx_msg), ctx_msg);
  expect = add_checked(expect, mul_checked(b.positions, 8, ctx_msg), ctx_msg);
  expect = add_checked(expect, 8, ctx_msg);
  QS_THROW_IF_NOT(uint64_t(expect) == f.size(), path, ": KL baseline file is ",
                  uint64_t(expect) > f.size() ? "truncated" : "longer than its header says", " (",
                  f.size(), " bytes, header implies ", expect, "); recompute the baseline");
  uint64_t stored_hash;
  std::memcpy(&stored_hash, f.data() + f.size() - 8, 8);
  QS_THROW_IF_NOT(stored_hash == fnv1a(f.data(), f.size() - 8), path,
                  ": KL baseline checksum mismatch (the file is corrupt); recompute the baseline");

  b.protocol.assign(reinterpret_cast<const char*>(f.data() + r.at), proto_bytes);
  r.at += proto_bytes;
  b.tokens.resize(static_cast<size_t>(used));
  std::memcpy(b.tokens.data(), f.data() + r.at, size_t(used) * 4);
  r.at += size_t(used) * 4;
  b.top_ids.resize(static_cast<size_t>(pk));
  b.top_logp.resize(static_cast<size_t>(pk));
  for (int64_t i = 0; i < pk; ++i)
    b.top_ids[size_t(i)] = ids16 ? int32_t(r.get<uint16_t>("ids")) : r.get<int32_t>("ids");
  for (int64_t i = 0; i < pk; ++i)
    b.top_logp[size_t(i)] =
        b.fp16_values ? half_to_float(r.get<uint16_t>("values")) : r.get<float>("values");
  b.rest_logp.resize(static_cast<size_t>(b.positions));
  b.target_logp.resize(static_cast<size_t>(b.positions));
  std::memcpy(b.rest_logp.data(), f.data() + r.at, size_t(b.positions) * 4);
  r.at += size_t(b.positions) * 4;
  std::memcpy(b.target_logp.data(), f.data() + r.at, size_t(b.positions) * 4);
  r.at += size_t(b.positions) * 4;

  check_baseline(b, path);
  for (int32_t t : b.tokens)
    QS_THROW_IF_NOT(t >= 0 && t < b.vocab, path, ": token id ", t, " outside vocab ", b.vocab);
  for (int32_t id : b.top_ids)
    QS_THROW_IF_NOT(id >= 0 && id < b.vocab, path, ": top-k id ", id, " outside vocab ", b.vocab);
  for (float v : b.top_logp)
    QS_THROW_IF_NOT(std::isfinite(v) && v <= 0, path, ": top-k log-prob ", v,
                    " is not a finite value <= 0");
  for (size_t i = 0; i < b.rest_logp.size(); ++i)
    QS_THROW_IF_NOT(!std::isnan(b.rest_logp[i]) && b.rest_logp[i] <= 0 &&
                        std::isfinite(b.target_logp[i]) && b.target_logp[i] <= 0,
                    path, ": log-prob at position ", i, " is out of range");
  return b;
}

KlResult evaluate_kl_divergence(const Transformer& variant, const KlBaseline& b,
                                const KlOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  check_baseline(b, "KL baseline");
  const int vocab = int(variant.spec().vocab_size);
  QS_THROW_IF_NOT(vocab == b.vocab, "KL divergence: the variant's vocabulary (", vocab,
                  ") differs from the baseline's (", b.vocab, ")");
  const std::vector<Window> windows = chunk_windows(b.tokens_used(), b.ctx);
  const size_t k = size_t(b.top_k);
  std::vector<float> kl(static_cast<size_t>(b.positions)), dlogp(static_cast<size_t>(b.positions));
  std::vector<uint8_t> agree(static_cast<size_t>(b.positions));
  for_each_scored(
      variant, b.tokens, windows, eval_detail::rows_per_batch(opt.batch_rows, b.ctx, vocab),
      opt.progress, "kl divergence",
      [&](const float* z, int64_t out, int target, std::vector<double>& mask) {
        const double lse = log_sum_exp(z, vocab);
        // argmax, ties → lowest id (as the baseline's ordering)
        int arg = 0;
        for (int j = 1; j < vocab; ++j)
          if (z[j] > z[arg]) arg = j;
        const int32_t* ids = &b.top_ids[size_t(out) * k];
        const float* lp = &b.top_logp[size_t(out) * k];
        // q_rest: the mass of every id outside the baseline's top-k (same sum as the baseline's)
        const double q_rest = rest_mass(z, lse, ids, k, vocab, mask);
        double d = 0;
        for (size_t i = 0; i < k; ++i) {
          const double log_p = lp[i];
          const double log_q = store_round(double(z[ids[i]]) - lse, b.fp16_values);
          d += std::exp(log_p) * (log_p - log_q);
        }
        const double log_p_rest = b.rest_logp[size_t(out)];
        if (std::isfinite(log_p_rest)) {
          const double log_q_rest = double(float(std::log(q_rest)));
          d += std::exp(log_p_rest) * (log_p_rest - log_q_rest);
        }
        kl[size_t(out)] = float(d);
        agree[size_t(out)] = arg == ids[0] ? 1 : 0;
        dlogp[size_t(out)] =
            float(double(float(double(z[target]) - lse)) - double(b.target_logp[size_t(out)]));
      });

  KlResult r;
  r.top_k = b.top_k;
  r.exact = b.top_k == b.vocab;
  r.protocol = b.protocol + (r.exact ? " kl=exact" : " kl=top-k+rest (lower bound)");
  r.tokens = b.positions;
  const double n = double(r.tokens);
  const auto mean_se = [n](const std::vector<float>& v, double* se) {
    double s = 0;
    for (float x : v) s += x;
    const double m = s / n;
    double ss = 0;
    for (float x : v) ss += (x - m) * (x - m);
    *se = n > 1 ? std::sqrt(ss / (n - 1) / n) : 0.0;
    return m;
  };
  r.mean_kld = mean_se(kl, &r.kld_standard_error);
  r.mean_delta_logp = mean_se(dlogp, &r.delta_logp_standard_error);
  std::vector<float> sorted = kl;
  std::sort(sorted.begin(), sorted.end());
  const auto quantile = [&sorted](double q) {
    const double pos = q * double(sorted.size() - 1);
    const size_t lo = size_t(std::floor(pos));
    const size_t hi = std::min(lo + 1, sorted.size() - 1);
    return double(sorted[lo]) + (pos - double(lo)) * (double(sorted[hi]) - double(sorted[lo]));
  };
  r.median_kld = quantile(0.5);
  r.p99_kld = quantile(0.99);
  r.max_kld = sorted.back();
  int64_t agreed = 0;
  for (uint8_t a : agree) agreed += a;
  const double p = double(agreed) / n;
  r.top1_agreement = 100.0 * p;
  r.top1_agreement_standard_error = 100.0 * std::sqrt(p * (1 - p) / n);
  if (opt.keep_token_kl) r.token_kl = std::move(kl);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qsweep
