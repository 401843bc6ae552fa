// How fast the store hashes a checkpoint: XXH3-128 (hash_file, memory-mapped) over a file of
// the given size, cold in the page cache where the kernel allows dropping it, then warm; and
// the hash alone over bytes in memory.
//   bench_hash [GiB=1] [FILE=/tmp/qsweep-hash-bench.bin]
// The file is written once (random bytes) and kept for the next run.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "pipeline/store.h"

int main(int argc, char** argv) {
  const double gib = argc > 1 ? std::atof(argv[1]) : 1.0;
  const std::string file = argc > 2 ? argv[2] : "/tmp/qsweep-hash-bench.bin";
  const auto bytes = static_cast<uintmax_t>(gib * double(1ull << 30));
  std::error_code ec;
  if (std::filesystem::file_size(file, ec) != bytes) {
    std::FILE* f = std::fopen(file.c_str(), "wb");
    if (!f) return std::fprintf(stderr, "cannot write %s\n", file.c_str()), 1;
    std::mt19937_64 rng(1);
    std::vector<uint64_t> buf(1 << 17);
    for (uintmax_t done = 0; done < bytes;) {
      for (auto& w : buf) w = rng();
      const size_t n = size_t(std::min<uintmax_t>(bytes - done, buf.size() * 8));
      std::fwrite(buf.data(), 1, n, f);
      done += n;
    }
    std::fclose(f);
  }
  const auto time_once = [&](const char* what) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string h = qsweep::hash_file(file);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-6s %.2f GiB in %.3f s = %.2f GB/s  (%s)\n", what, gib, s,
                double(bytes) / s / 1e9, h.c_str());
  };
  const int fd = ::open(file.c_str(), O_RDONLY);
  const bool dropped =
      fd >= 0 && ::fdatasync(fd) == 0 && ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
  if (fd >= 0) ::close(fd);
  time_once(dropped ? "cold" : "first");
  time_once("warm");
  time_once("warm");
  // The hash alone, on bytes already in memory (hash_hex: one-shot XXH3-128 over a string).
  const std::string mem(size_t(256) << 20, 'q');
  const auto t0 = std::chrono::steady_clock::now();
  const std::string h = qsweep::hash_hex(mem);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("memory 0.25 GiB in %.3f s = %.2f GB/s  (%s)\n", s, double(mem.size()) / s / 1e9,
              h.substr(0, 8).c_str());
  return 0;
}
