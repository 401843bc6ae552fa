#include "tests/support/test_support.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <vector>

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

namespace {

// Every directory make_temp_dir() handed out, removed when the test process exits normally, so a
// test run does not leave thousands of qsweep-test-* folders behind (they once filled the disk).
// QSWEEP_KEEP_TEST_DIRS=1 keeps them for debugging. Only the process that created them removes
// them: a forked death-test child that calls exit() must not delete its parent's directories.
class TempDirRegistry {
 public:
  void add(const std::filesystem::path& p) {
    std::lock_guard<std::mutex> lock(mutex_);
    dirs_.push_back(p);
  }
  ~TempDirRegistry() {
    if (::getpid() != owner_ || std::getenv("QSWEEP_KEEP_TEST_DIRS")) return;
    for (const auto& d : dirs_) {
      std::error_code ec;  // best effort: a failed removal must not fail the test run
      std::filesystem::remove_all(d, ec);
    }
  }

 private:
  std::mutex mutex_;
  std::vector<std::filesystem::path> dirs_;
  const pid_t owner_ = ::getpid();
};

TempDirRegistry& temp_dirs() {
  static TempDirRegistry registry;
  return registry;
}

}  // namespace

std::string make_temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  const auto base =
      std::filesystem::temp_directory_path() /
      ("qsweep-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  temp_dirs().add(base);
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
