#include "eval/perplexity.h"

#include <tbb/parallel_for.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#include "common/errors.h"
#include "common/progress.h"
#include "eval/window_batches.h"

namespace qsweep {

const char* protocol_name(PerplexityProtocol p) {
  return p == PerplexityProtocol::Chunks ? "chunks" : "strided";
}

PerplexityProtocol parse_protocol(const std::string& s) {
  if (s == "chunks") return PerplexityProtocol::Chunks;
  if (s == "strided") return PerplexityProtocol::Strided;
  throw Error(cat("unknown perplexity protocol '", s, "': expected chunks or strided"));
}

namespace {

/// One window of the token stream and which of its positions are scored.
struct Window {
  int64_t begin = 0;     ///< first token of the window in the stream
  int len = 0;           ///< tokens in the window
  int first_scored = 1;  ///< window index of the first scored token (≥ 1)
};

std::vector<Window> plan_windows(int64_t n, const PerplexityOptions& opt, int stride,
                                 PerplexityResult* r) {
  std::vector<Window> w;
  if (opt.protocol == PerplexityProtocol::Chunks) {
    if (n < opt.ctx) {
      w.push_back({0, int(n), 1});  // one short chunk rather than nothing
    } else {
      const int64_t chunks = n / opt.ctx;
      for (int64_t c = 0; c < chunks; ++c) w.push_back({c * opt.ctx, opt.ctx, 1});
      r->tokens_dropped = n - chunks * opt.ctx;
    }
  } else {
    // Hugging Face's loop: windows every `stride`; each scores [prev_end, end).
    int64_t prev_end = 0;
    for (int64_t begin = 0; begin < n; begin += stride) {
      const int64_t end = std::min<int64_t>(begin + opt.ctx, n);
      const int64_t trg = end - prev_end;
      const int len = int(end - begin);
      w.push_back({begin, len, std::max<int>(1, len - int(trg))});
      prev_end = end;
      if (end == n) break;
    }
  }
  return w;
}

}  // namespace

PerplexityResult evaluate_perplexity(const Transformer& model, const std::vector<int>& all_tokens,
                                     const PerplexityOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  QS_THROW_IF_NOT(opt.ctx >= 2, "perplexity: ctx must be at least 2 (got ", opt.ctx, ")");
  const int stride =
      opt.protocol == PerplexityProtocol::Strided ? (opt.stride > 0 ? opt.stride : opt.ctx / 2) : 0;
  QS_THROW_IF_NOT(opt.protocol == PerplexityProtocol::Chunks || (stride >= 1 && stride <= opt.ctx),
                  "perplexity: stride ", stride, " must be between 1 and ctx (", opt.ctx, ")");
  QS_THROW_IF_NOT(opt.max_tokens >= 0, "perplexity: max_tokens must be >= 0");
  PerplexityResult r;
  r.protocol = protocol_name(opt.protocol);
  r.ctx = opt.ctx;
  r.stride = stride;
  r.tokens_in_text = int64_t(all_tokens.size());
  const int64_t n =
      opt.max_tokens > 0 ? std::min<int64_t>(opt.max_tokens, r.tokens_in_text) : r.tokens_in_text;
  QS_THROW_IF_NOT(n >= 2, "perplexity: the text has ", n,
                  " token(s); at least 2 are needed to score anything");
  const std::vector<Window> windows = plan_windows(n, opt, stride, &r);
  r.windows = int64_t(windows.size());
  r.tokens_used = n - r.tokens_dropped;

  // Each window's scored tokens land at a fixed place in token_nll: results are
  // in text order whatever the batching.
  std::vector<int64_t> out_offset(windows.size() + 1, 0);
  for (size_t i = 0; i < windows.size(); ++i)
    out_offset[i + 1] = out_offset[i] + (windows[i].len - windows[i].first_scored);
  r.scored_tokens = out_offset.back();
  r.token_nll.assign(size_t(r.scored_tokens), 0.0f);

  // Batch windows so that the logits of one batch stay around 256 MiB.
  const int64_t vocab = model.spec().vocab_size;
  const int64_t rows_per_batch = eval_detail::rows_per_batch(opt.batch_rows, opt.ctx, vocab);
  // On another backend: the same weights (shared storage, not copied) run there.
  std::unique_ptr<Transformer> resident;
  if (opt.backend)
    resident = std::make_unique<Transformer>(model.spec(), model.weights(), *opt.backend);
  Progress progress("perplexity", int64_t(windows.size()), "windows", opt.progress);
  size_t w0 = 0;
  std::vector<std::vector<int>> seqs;
  while (w0 < windows.size()) {
    const size_t w1 =
        eval_detail::next_window_batch(all_tokens, windows, w0, rows_per_batch, &seqs);
    if (resident) {
      // NLL of position p + 1 of each window, concatenated (len − 1 per window).
      const std::vector<float> nll = resident->next_token_nll(seqs);
      int64_t at = 0;
      for (size_t wi = w0; wi < w1; ++wi) {
        const Window& w = windows[wi];
        for (int t = w.first_scored; t < w.len; ++t)
          r.token_nll[size_t(out_offset[wi] + (t - w.first_scored))] = nll[size_t(at + t - 1)];
        at += w.len - 1;
      }
      progress.advance(int64_t(w1 - w0));
      w0 = w1;
      continue;
    }
    const MatrixRM logits = model.forward(seqs);
    int64_t row0 = 0;
    for (size_t wi = w0; wi < w1; ++wi) {
      const Window& w = windows[wi];
      tbb::parallel_for(w.first_scored, w.len, [&](int t) {
        // token t is predicted by the logits at position t-1
        const float* z = logits.row(row0 + t - 1).data();
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, z[j]);
        double sum = 0;
        for (int64_t j = 0; j < vocab; ++j) sum += std::exp(double(z[j] - mx));
        const int target = all_tokens[size_t(w.begin + t)];
        const double nll = double(mx) + std::log(sum) - double(z[target]);
        r.token_nll[size_t(out_offset[wi] + (t - w.first_scored))] = float(nll);
      });
      row0 += w.len;
    }
    progress.advance(int64_t(w1 - w0));
    w0 = w1;
  }
  // A non-finite NLL (NaN/Inf logits: corrupt weights, out-of-range config numbers) is
  // never averaged into a reported perplexity: name the first bad position instead.
  for (size_t wi = 0; wi < windows.size(); ++wi)
    for (int64_t i = out_offset[wi]; i < out_offset[wi + 1]; ++i)
      if (!std::isfinite(r.token_nll[size_t(i)])) {
        progress.abandon();  // the error is the last line
        throw NonFiniteMetric(
            cat("perplexity: the NLL of token ",
                windows[wi].begin + windows[wi].first_scored + (i - out_offset[wi]),
                " of the text (scored token ", i, ", window ", wi, ") is ", r.token_nll[size_t(i)],
                "; the model produces non-finite logits (corrupt weights or out-of-range config "
                "numbers), no perplexity is reported"));
      }
  progress.finish();

  double sum = 0;
  for (float v : r.token_nll) sum += v;
  r.mean_nll = sum / double(r.scored_tokens);
  double ss = 0;
  for (float v : r.token_nll) ss += (v - r.mean_nll) * (v - r.mean_nll);
  const double var = r.scored_tokens > 1 ? ss / double(r.scored_tokens - 1) : 0.0;
  r.nll_standard_error = std::sqrt(var / double(r.scored_tokens));
  r.perplexity = std::exp(r.mean_nll);
  if (!std::isfinite(r.perplexity))
    throw NonFiniteMetric(cat("perplexity: mean NLL ", r.mean_nll,
                              " overflows exp(); the model's predictions are degenerate"));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t fed = 0;
  for (const auto& w : windows) fed += w.len;
  r.tokens_per_second = r.seconds > 0 ? double(fed) / r.seconds : 0;
  return r;
}

}  // namespace qsweep
