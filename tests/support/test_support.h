// Helpers shared by every test executable: where ../shared is, a printed seed.
#pragma once

#include <cstdint>
#include <string>

namespace qsweep::test {

/// The shared/ folder (QSWEEP_SHARED, else ../shared beside the source tree).
std::string shared_dir();
/// shared_dir() + "/models/tinycode".
std::string tinycode_dir();
/// The data directory (QSWEEP_DATA, else shared_dir() + "/data").
std::string data_dir();
/// A fresh empty temporary directory, unique per call; removed when the process exits normally
/// (set QSWEEP_KEEP_TEST_DIRS to keep it).
std::string make_temp_dir(const std::string& tag);
/// Seed for random tests: QSWEEP_TEST_SEED or `fallback`; printed so a failure can be rerun.
uint64_t test_seed(uint64_t fallback);

}  // namespace qsweep::test
