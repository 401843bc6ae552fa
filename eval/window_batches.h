// How perplexity and KL divergence group their windows of the token stream into forward
// batches (eval/perplexity.cpp, eval/kl_divergence.cpp): one piece of code, so both score the
// same windows in the same batches.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qsweep::eval_detail {

/// Tokens per forward batch: `batch_rows` when > 0, else enough that a batch's fp32 logits stay
/// around 256 MiB (at most 16,384 rows), and never less than one window of `ctx`.
inline int64_t rows_per_batch(int64_t batch_rows, int ctx, int64_t vocab) {
  return batch_rows > 0
             ? batch_rows
             : std::max<int64_t>(ctx, std::min<int64_t>(16384, (int64_t(64) << 20) /
                                                                   std::max<int64_t>(1, vocab)));
}

/// The next forward batch from window w0 on: windows are taken in order while their tokens fit
/// in `max_rows` (the first always), and each one's tokens [begin, begin + len) appended to
/// `seqs` (cleared first). Returns the index past the last window taken. `W` has `begin` and
/// `len`.
template <typename W>
size_t next_window_batch(const std::vector<int>& tokens, const std::vector<W>& windows, size_t w0,
                         int64_t max_rows, std::vector<std::vector<int>>* seqs) {
  seqs->clear();
  size_t w1 = w0;
  int64_t rows = 0;
  while (w1 < windows.size() && (seqs->empty() || rows + windows[w1].len <= max_rows)) {
    const W& w = windows[w1];
    seqs->emplace_back(tokens.begin() + w.begin, tokens.begin() + w.begin + w.len);
    rows += w.len;
    ++w1;
  }
  return w1;
}

}  // namespace qsweep::eval_detail
