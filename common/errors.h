// One error style for the whole project (docs/architecture.md, "Errors").
//
//  * qsweep::Error      — bad input a user can fix (a file, a flag, a YAML key).
//                         The message names the file / place and says what to do.
//                         The CLI prints it on one line and exits with status 2.
//  * QS_ASSERT          — an internal invariant; a failure is a bug in qsweep.
//
// Every size read from a file goes through mul_checked / add_checked so that a
// corrupted header produces an Error, never an overflow or a huge allocation.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace qsweep {

/// A user-facing error: invalid input, missing file, unsupported option.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// Concatenates anything streamable into one string: cat("layer ", 3, ": ", msg).
template <typename... Args>
std::string cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

/// The words separated by `sep`: join({"rtn", "gptq"}) == "rtn, gptq" (lists in messages).
inline std::string join(const std::vector<std::string>& words, const std::string& sep = ", ") {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) out += (i ? sep : "") + words[i];
  return out;
}

/// a * b, throwing Error(context) on overflow or negative operands.
int64_t mul_checked(int64_t a, int64_t b, const std::string& context);
/// a + b, throwing Error(context) on overflow or negative operands.
int64_t add_checked(int64_t a, int64_t b, const std::string& context);

[[noreturn]] void assert_failed(const char* expr, const char* file, int line,
                                const std::string& msg);

}  // namespace qsweep

/// Throws qsweep::Error with the streamed message when cond is false.
#define QS_THROW_IF_NOT(cond, ...)                                  \
  do {                                                              \
    if (!(cond)) throw ::qsweep::Error(::qsweep::cat(__VA_ARGS__)); \
  } while (0)

/// Internal invariant: aborts with file:line (a qsweep bug, not a user error).
#define QS_ASSERT(cond, ...)                                                 \
  do {                                                                       \
    if (!(cond))                                                             \
      ::qsweep::assert_failed(#cond, __FILE__, __LINE__,                     \
                              ::qsweep::cat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)
