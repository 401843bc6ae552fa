// The shared models' reference logits (../shared/models/*/reference: prompts.json with token ids
// and the positions in `rows`, logits.safetensors with fp32 logits of those rows, from an
// independent fp32 implementation of the Hugging Face semantics) and one comparison report,
// for bench/peers/{llama_cpp,qsweep}_ref_logits.cpp. Header-only (nlohmann/json only) so that
// the llama.cpp driver needs nothing from qsweep.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace ref_logits {

struct Prompt {
  std::string name;
  std::vector<int> ids;
  std::vector<int> rows;
  std::vector<float> logits;  ///< rows.size() × vocab, from logits.safetensors
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return {std::istreambuf_iterator<char>(in), {}};
}

inline std::vector<Prompt> load(const std::string& model_dir, int64_t* vocab) {
  using nlohmann::json;
  const json p = json::parse(slurp(model_dir + "/reference/prompts.json"));
  const std::string st = slurp(model_dir + "/reference/logits.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, st.data(), 8);
  const json h = json::parse(st.substr(8, n));
  std::vector<Prompt> out;
  for (const json& q : p["prompts"]) {
    Prompt r{
        q["name"], q["token_ids"].get<std::vector<int>>(), q["rows"].get<std::vector<int>>(), {}};
    const json& t = h[r.name];
    *vocab = t["shape"][1].get<int64_t>();
    const uint64_t b = t["data_offsets"][0], e = t["data_offsets"][1];
    r.logits.resize((e - b) / 4);
    std::memcpy(r.logits.data(), st.data() + 8 + n + b, e - b);
    out.push_back(std::move(r));
  }
  return out;
}

inline double nll(const float* z, int64_t vocab, int target) {
  double m = -1e300, s = 0;
  for (int64_t v = 0; v < vocab; ++v) m = std::max(m, double(z[v]));
  for (int64_t v = 0; v < vocab; ++v) s += std::exp(double(z[v]) - m);
  return m + std::log(s) - double(z[target]);
}

/// Prints one line per prompt and a summary: max |logit − reference| over the rows, and the
/// NLL of the next token at every row that has one (theirs vs the reference's). Returns the
/// largest |dNLL|.
inline double report(const char* who, const std::vector<Prompt>& prompts, int64_t vocab,
                     const std::function<const float*(size_t prompt, size_t row)>& logits) {
  double worst_nll = 0, worst_logit = 0, sum_ref = 0, sum_got = 0;
  int scored = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    const Prompt& q = prompts[p];
    double dl = 0, dn = 0;
    for (size_t r = 0; r < q.rows.size(); ++r) {
      const float* got = logits(p, r);
      const float* ref = q.logits.data() + r * size_t(vocab);
      for (int64_t v = 0; v < vocab; ++v) dl = std::max(dl, std::fabs(double(got[v]) - ref[v]));
      const size_t pos = size_t(q.rows[r]);
      if (pos + 1 >= q.ids.size()) continue;
      const double a = nll(got, vocab, q.ids[pos + 1]), b = nll(ref, vocab, q.ids[pos + 1]);
      dn = std::max(dn, std::fabs(a - b));
      sum_got += a, sum_ref += b, ++scored;
    }
    std::printf("%-10s %s: %zu tokens, %zu rows: max |dlogit| %.2e, max |dNLL| %.2e\n", who,
                q.name.c_str(), q.ids.size(), q.rows.size(), dl, dn);
    worst_nll = std::max(worst_nll, dn), worst_logit = std::max(worst_logit, dl);
  }
  std::printf(
      "%-10s all: %d scored rows, mean NLL %.6f (reference %.6f), max |dNLL| %.2e, "
      "max |dlogit| %.2e\n",
      who, scored, sum_got / scored, sum_ref / scored, worst_nll, worst_logit);
  return worst_nll;
}

}  // namespace ref_logits
