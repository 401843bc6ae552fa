#include "eval/generation.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "common/errors.h"

namespace qsweep {

namespace {

// A uniform double in [0, 1) from the top 53 bits of one draw. Written out rather
// than std::uniform_real_distribution, whose algorithm differs between standard
// libraries: a seed must give the same text everywhere.
double uniform01(std::mt19937_64& rng) {
  return double(rng() >> 11) * 0x1.0p-53;
}

int argmax(const float* logits, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;  // strict: ties keep the lowest id
  return best;
}

// softmax(logits / T), restricted to the nucleus when top_p < 1, then one draw.
int sample(const float* logits, int n, double temperature, double top_p, std::mt19937_64& rng) {
  const float mx = *std::max_element(logits, logits + n);
  std::vector<double> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p[size_t(i)] = std::exp(double(logits[i] - mx) / temperature);
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  size_t keep = order.size();
  if (top_p < 1.0) {
    // Most likely first, ties by lower id (so a tiny top_p is exactly greedy).
    std::sort(order.begin(), order.end(), [&](int a, int b) {
      return p[size_t(a)] != p[size_t(b)] ? p[size_t(a)] > p[size_t(b)] : a < b;
    });
    const double total = std::accumulate(p.begin(), p.end(), 0.0);
    double mass = 0;
    keep = 0;
    while (keep < order.size()) {
      mass += p[size_t(order[keep++])];
      if (mass >= top_p * total) break;
    }
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += p[size_t(order[i])];
  const double u = uniform01(rng) * kept;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += p[size_t(order[i])];
    if (u < acc) return order[i];
  }
  return order[keep - 1];  // u rounded up to the total
}

// Position of the earliest stop string in `text`, or npos.
size_t earliest_stop(const std::string& text, const std::vector<std::string>& stops) {
  size_t best = std::string::npos;
  for (const auto& s : stops) best = std::min(best, text.find(s));
  return best;
}

}  // namespace

Generation generate(const Transformer& model, const Tokenizer& tokenizer, const std::string& prompt,
                    const GenerationOptions& opt) {
  QS_THROW_IF_NOT(opt.max_new_tokens >= 0, "max_new_tokens must be ≥ 0, got ", opt.max_new_tokens);
  QS_THROW_IF_NOT(opt.temperature >= 0 && std::isfinite(opt.temperature),
                  "temperature must be ≥ 0 (0 = greedy), got ", opt.temperature);
  QS_THROW_IF_NOT(opt.top_p > 0 && opt.top_p <= 1, "top_p must be in (0, 1], got ", opt.top_p);
  for (const auto& s : opt.stop)
    QS_THROW_IF_NOT(!s.empty(), "an empty stop sequence would stop before the first token");
  const int ctx = model.spec().max_position_embeddings;
  const int vocab = model.spec().vocab_size;

  std::vector<int> ids = tokenizer.encode(prompt, tokenizer.add_bos_token());
  QS_THROW_IF_NOT(!ids.empty(), "the prompt is empty and the tokenizer adds no BOS: ",
                  "there is nothing to continue from");
  // Too long for the window: keep the end, which is what the continuation depends on.
  if (int64_t(ids.size()) > ctx) ids.erase(ids.begin(), ids.end() - ctx);

  Generation g;
  g.finish_reason = "length";
  if (opt.max_new_tokens == 0) return g;

  // The continuation's text is decode(prompt + new) minus decode(prompt): decoding
  // the new ids alone would lose the space a sentencepiece "▁x" piece carries at
  // the start (the decoder strips it as a dummy prefix).
  const std::string prompt_text = tokenizer.decode(ids);
  auto continuation = [&] {
    std::vector<int> all = ids;
    all.insert(all.end(), g.tokens.begin(), g.tokens.end());
    const std::string full = tokenizer.decode(all);
    if (full.compare(0, prompt_text.size(), prompt_text) == 0)
      return full.substr(prompt_text.size());
    return tokenizer.decode(g.tokens);  // prompt ended inside a multi-byte character
  };

  std::mt19937_64 rng(opt.seed);
  KvCache cache;
  MatrixRM logits = model.decode(cache, ids);
  const int eos = tokenizer.eos_id();
  for (;;) {
    const float* last = logits.row(logits.rows() - 1).data();
    const int next = opt.temperature == 0 ? argmax(last, vocab)
                                          : sample(last, vocab, opt.temperature, opt.top_p, rng);
    g.tokens.push_back(next);
    if (next == eos) {
      g.tokens.pop_back();
      g.text = continuation();
      g.tokens.push_back(next);
      g.finish_reason = "eos";
      return g;
    }
    g.text = continuation();
    const size_t cut = earliest_stop(g.text, opt.stop);
    if (cut != std::string::npos) {
      g.text.resize(cut);
      g.finish_reason = "stop";
      return g;
    }
    if (int(g.tokens.size()) >= opt.max_new_tokens) return g;  // "length"
    if (cache.length() >= ctx) {
      g.finish_reason = "context";
      return g;
    }
    logits = model.decode(cache, {next});
  }
}

GenerateFn make_generate_fn(const Transformer& model, const Tokenizer& tokenizer) {
  return [&model, &tokenizer](const std::string& prompt, const GenerationOptions& opt) {
    return generate(model, tokenizer, prompt, opt);
  };
}

}  // namespace qsweep
