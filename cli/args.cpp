#include "cli/args.h"

#include <algorithm>
#include <cstdlib>

#include "common/errors.h"

namespace qsweep::cli {

std::string closest(const std::string& word, const std::set<std::string>& known) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& k : known) {
    std::vector<size_t> prev(k.size() + 1), cur(k.size() + 1);
    for (size_t j = 0; j <= k.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= k.size(); ++j)
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (word[i - 1] != k[j - 1])});
      std::swap(prev, cur);
    }
    if (prev[k.size()] < best_d) {
      best_d = prev[k.size()];
      best = k;
    }
  }
  return best_d <= std::max<size_t>(2, word.size() / 3) ? best : "";
}

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& value_flags,
           const std::set<std::string>& switches) {
  std::set<std::string> all = value_flags;
  all.insert(switches.begin(), switches.end());
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    std::string flag = a.substr(2), value;
    const size_t eq = flag.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    if (value_flags.count(flag)) {
      if (!inline_value) {
        QS_THROW_IF_NOT(i + 1 < argv.size(), "--", flag, " needs a value");
        value = argv[++i];
      }
      values_[flag] = value;
    } else if (switches.count(flag)) {
      QS_THROW_IF_NOT(!inline_value, "--", flag, " takes no value");
      set_.insert(flag);
    } else {
      const std::string guess = closest(flag, all);
      throw Error(cat("unknown option --", flag,
                      guess.empty() ? std::string() : cat("; did you mean --", guess, "?")));
    }
  }
}

std::string Args::get(const std::string& flag, const std::string& fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback : it->second;
}

std::string Args::require(const std::string& flag) const {
  auto it = values_.find(flag);
  QS_THROW_IF_NOT(it != values_.end(), "missing --", flag);
  return it->second;
}

long long Args::get_int(const std::string& flag, long long fallback) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  QS_THROW_IF_NOT(!it->second.empty() && end && *end == '\0', "--", flag,
                  " expects an integer, got '", it->second, "'");
  return v;
}

}  // namespace qsweep::cli
