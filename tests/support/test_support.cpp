#include "tests/support/test_support.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace qsweep::test {

std::string shared_dir() {
  if (const char* s = std::getenv("QSWEEP_SHARED")) return s;
  return std::string(QSWEEP_SOURCE_DIR) + "/../shared";
}

std::string tinycode_dir() {
  return shared_dir() + "/models/tinycode";
}

std::string data_dir() {
  if (const char* s = std::getenv("QSWEEP_DATA")) return s;
  return shared_dir() + "/data";
}

std::string make_temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  const auto base =
      std::filesystem::temp_directory_path() /
      ("qsweep-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  return base.string();
}

uint64_t test_seed(uint64_t fallback) {
  uint64_t seed = fallback;
  if (const char* s = std::getenv("QSWEEP_TEST_SEED")) seed = std::strtoull(s, nullptr, 10);
  std::printf("testing with random seed %llu (set QSWEEP_TEST_SEED to rerun)\n",
              (unsigned long long)seed);
  return seed;
}

}  // namespace qsweep::test
