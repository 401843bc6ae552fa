#include "eval/line_completion.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "common/errors.h"

namespace qsweep {

namespace {

// Uniform integer in [0, n) by rejection from whole 64-bit draws: unlike
// std::uniform_int_distribution / std::shuffle it is the same in every standard
// library, so a seed picks the same lines everywhere.
uint64_t bounded(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = std::numeric_limits<uint64_t>::max() -
                         std::numeric_limits<uint64_t>::max() % n;  // a multiple of n
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return x % n;
}

std::string rstrip(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' ||
                        s.back() == '\n' || s.back() == '\f' || s.back() == '\v'))
    s.pop_back();
  return s;
}

bool blank(const std::string& text, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i)
    if (!std::isspace(static_cast<unsigned char>(text[i]))) return false;
  return true;
}

struct MeanSe {
  double mean = 0, se = 0;
};

// Mean and its standard error (sample standard deviation / √n; 0 below two items).
MeanSe mean_se(const std::vector<double>& x) {
  MeanSe r;
  if (x.empty()) return r;
  for (double v : x) r.mean += v;
  r.mean /= double(x.size());
  if (x.size() < 2) return r;
  double ss = 0;
  for (double v : x) ss += (v - r.mean) * (v - r.mean);
  r.se = std::sqrt(ss / double(x.size() - 1)) / std::sqrt(double(x.size()));
  return r;
}

}  // namespace

int64_t levenshtein(const std::string& a, const std::string& b) {
  // Two rows of the classic dynamic programme over prefixes.
  std::vector<int64_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = int64_t(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = int64_t(i);
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

double edit_similarity(const std::string& a, const std::string& b) {
  const size_t m = std::max(a.size(), b.size());
  return m == 0 ? 1.0 : 1.0 - double(levenshtein(a, b)) / double(m);
}

LineCompletionResult run_line_completion(const std::string& text, const Tokenizer& tokenizer,
                                         const GenerateFn& generate,
                                         const LineCompletionOptions& opt) {
  QS_THROW_IF_NOT(opt.limit >= 1, "line completion: limit must be ≥ 1, got ", opt.limit);
  QS_THROW_IF_NOT(opt.max_new_tokens >= 1, "line completion: max_new_tokens must be ≥ 1, got ",
                  opt.max_new_tokens);
  QS_THROW_IF_NOT(opt.context_tokens > opt.max_new_tokens,
                  "line completion: context_tokens (the model's context, got ", opt.context_tokens,
                  ") must exceed max_new_tokens (", opt.max_new_tokens, ")");
  const int budget = opt.context_tokens - opt.max_new_tokens;
  QS_THROW_IF_NOT(opt.min_prefix_tokens >= 0 && opt.min_prefix_tokens <= budget,
                  "line completion: min_prefix_tokens (", opt.min_prefix_tokens,
                  ") must be in [0, context_tokens − max_new_tokens = ", budget, "]");

  std::vector<size_t> starts{0};
  for (size_t i = 0; i < text.size(); ++i)
    if (text[i] == '\n' && i + 1 < text.size()) starts.push_back(i + 1);
  auto line_end = [&](size_t s) {
    const size_t e = text.find('\n', s);
    return e == std::string::npos ? text.size() : e;
  };

  // Candidates: non-blank lines with at least one line before them.
  std::vector<size_t> cand;
  for (size_t k = 1; k < starts.size(); ++k)
    if (!blank(text, starts[k], line_end(starts[k]))) cand.push_back(k);
  std::mt19937_64 rng(opt.seed);
  for (size_t i = cand.size(); i > 1; --i) std::swap(cand[i - 1], cand[bounded(rng, i)]);

  const bool bos = tokenizer.add_bos_token();
  GenerationOptions gen;
  gen.max_new_tokens = opt.max_new_tokens;
  gen.temperature = 0;
  gen.seed = opt.seed;
  gen.stop = {"\n"};

  std::vector<double> exact, sim;
  double prompt_tokens_sum = 0;
  for (size_t k : cand) {
    if (int(exact.size()) >= opt.limit) break;
    const size_t pos = starts[k];
    // The prompt is the `back` lines before the line; find the most that fit the
    // budget: doubling, then bisection (token counts grow with `back`, so this is
    // a handful of encodes of at most ~2× the budget each, never the whole text).
    auto tokens_of = [&](size_t back) {
      return int64_t(
          tokenizer.encode(text.substr(starts[k - back], pos - starts[k - back]), bos).size());
    };
    size_t good = 0, bad = 0;  // bad == 0: no upper bound found yet
    int64_t good_tokens = 0;
    for (size_t back = 1;; back *= 2) {
      back = std::min(back, k);
      const int64_t t = tokens_of(back);
      if (t > budget) {
        bad = back;
        break;
      }
      good = back;
      good_tokens = t;
      if (back == k) break;
    }
    while (bad != 0 && bad - good > 1) {
      const size_t mid = good + (bad - good) / 2;
      const int64_t t = tokens_of(mid);
      if (t <= budget) {
        good = mid;
        good_tokens = t;
      } else {
        bad = mid;
      }
    }
    if (good == 0 || good_tokens < opt.min_prefix_tokens) continue;

    const std::string prompt = text.substr(starts[k - good], pos - starts[k - good]);
    const std::string truth = rstrip(text.substr(pos, line_end(pos) - pos));
    std::string pred = generate(prompt, gen).text;
    pred = rstrip(pred.substr(0, pred.find('\n')));  // a generator that ignores the stop
    exact.push_back(pred == truth ? 1.0 : 0.0);
    sim.push_back(edit_similarity(pred, truth));
    prompt_tokens_sum += double(good_tokens);
  }
  QS_THROW_IF_NOT(!exact.empty(), "line completion: no non-blank line has a prompt of ≥ ",
                  opt.min_prefix_tokens, " tokens within ", budget,
                  " tokens; the text is too short or min_prefix_tokens too large");

  LineCompletionResult r;
  r.items = int(exact.size());
  const MeanSe em = mean_se(exact), es = mean_se(sim);
  r.exact_match = em.mean;
  r.exact_match_se = em.se;
  r.edit_similarity = es.mean;
  r.edit_similarity_se = es.se;
  r.protocol =
      cat("line completion: ", r.items, " non-blank line starts drawn with seed ", opt.seed,
          " (mt19937_64 shuffle) among those with a prompt of >= ", opt.min_prefix_tokens,
          " tokens; prompt = the longest line-aligned text before the line of <= ", budget,
          " tokens (context ", opt.context_tokens, " - max_new_tokens ", opt.max_new_tokens,
          "; mean ", std::lround(prompt_tokens_sum / r.items),
          " tokens); greedy, stop at newline; exact match and 1 - Levenshtein/max length, "
          "trailing whitespace stripped");
  return r;
}

}  // namespace qsweep
