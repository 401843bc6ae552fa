// Progress for long work: a one-line bar redrawn in place on a terminal, plain
// periodic lines ("eval: 12/64 chunks (18%) 3.1s") otherwise, so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace qsweep {

class Progress {
 public:
  /// `label` prefixes every line, `total` is the number of units, `unit` their name.
  Progress(std::string label, int64_t total, std::string unit, bool enabled = true,
           std::FILE* out = stderr);
  ~Progress();
  /// Adds `n` finished units (thread-safe).
  void advance(int64_t n = 1);
  /// Prints the final line (called by the destructor if not called before).
  void finish();
  /// Stops without a final line (the work failed; the error is the last line). On a
  /// terminal the bar drawn so far is ended with a newline.
  void abandon();

 private:
  void draw(bool final_line);
  std::string label_, unit_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::FILE* out_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mu_;
};

}  // namespace qsweep
