#include "common/errors.h"

#include <cstdio>
#include <cstdlib>
#include <limits>

namespace qsweep {

int64_t mul_checked(int64_t a, int64_t b, const std::string& context) {
  int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    throw Error(cat(context, ": size overflow (", a, " x ", b, ")"));
  return r;
}

int64_t add_checked(int64_t a, int64_t b, const std::string& context) {
  int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r))
    throw Error(cat(context, ": size overflow (", a, " + ", b, ")"));
  return r;
}

void assert_failed(const char* expr, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "qsweep internal error: %s:%d: assertion `%s` failed %s\n", file, line, expr,
               msg.c_str());
  std::abort();
}

}  // namespace qsweep
