// A tiny command-line parser: --flag value, --flag=value, --switch, positionals.
// Unknown flags are errors that suggest the closest known one.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

namespace qsweep::cli {

class Args {
 public:
  /// `value_flags` take a value; `switches` do not. Throws Error on unknown flags.
  Args(const std::vector<std::string>& argv, const std::set<std::string>& value_flags,
       const std::set<std::string>& switches);
  bool has(const std::string& flag) const { return values_.count(flag) || set_.count(flag); }
  std::string get(const std::string& flag, const std::string& fallback = "") const;
  /// The flag's value, or Error "missing --flag" when absent.
  std::string require(const std::string& flag) const;
  long long get_int(const std::string& flag, long long fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> set_;
  std::vector<std::string> positional_;
};

/// The known name closest to `word` by edit distance (for "did you mean").
std::string closest(const std::string& word, const std::set<std::string>& known);

}  // namespace qsweep::cli
