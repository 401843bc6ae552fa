#include "pipeline/store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/errors.h"
#include "common/mapped_file.h"

namespace qsweep {
namespace fs = std::filesystem;

namespace {

struct Hasher {
  uint64_t h = 1469598103934665603ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
  }
  // Word-at-a-time variant for large files (FNV per byte is ~1 GB/s too slow).
  void add_words(const uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      h = (h ^ w) * 0x9E3779B97F4A7C15ull;
      h ^= h >> 29;
    }
    add(p + i, n - i);
  }
  std::string hex() const {
    uint64_t x = h;  // splitmix64 finaliser
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)x);
    return buf;
  }
};

}  // namespace

std::string hash_hex(const std::string& bytes) {
  Hasher h;
  h.add(bytes.data(), bytes.size());
  return h.hex();
}

std::string hash_files(const std::vector<std::string>& files, const std::string& cache_file) {
  nlohmann::json cache = nlohmann::json::object();
  if (fs::exists(cache_file)) {
    try {
      cache = nlohmann::json::parse(read_text_file(cache_file));
    } catch (...) {
      cache = nlohmann::json::object();  // a torn cache is only a cache
    }
  }
  Hasher all;
  bool changed = false;
  for (const auto& f : files) {
    struct stat st {};
    QS_THROW_IF_NOT(::stat(f.c_str(), &st) == 0, f, ": cannot stat");
    const std::string abs = fs::weakly_canonical(f).string();
    const std::string stamp = cat(st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
    std::string h;
    if (cache.contains(abs) && cache[abs].value("stamp", "") == stamp) {
      h = cache[abs]["hash"].get<std::string>();
    } else {
      MappedFile m(f);
      Hasher fh;
      fh.add_words(m.data(), m.size());
      h = fh.hex();
      cache[abs] = {{"stamp", stamp}, {"hash", h}};
      changed = true;
    }
    all.add(h.data(), h.size());
  }
  if (changed) {
    const std::string text = cache.dump(1);
    write_file_atomic(cache_file, text.data(), text.size());
  }
  return all.hex();
}

ArtifactStore::ArtifactStore(std::string root) : root_(std::move(root)) {
  fs::create_directories(root_);
  for (const auto& e : fs::directory_iterator(root_))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path());
}

std::string ArtifactStore::path(const std::string& key) const {
  return root_ + "/" + key;
}

bool ArtifactStore::has(const std::string& key) const {
  return fs::is_directory(path(key));
}

std::string ArtifactStore::begin(const std::string& key) const {
  static std::atomic<int> counter{0};
  const std::string tmp = cat(root_, "/.tmp-", key, "-", ::getpid(), "-", counter.fetch_add(1));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  return tmp;
}

void ArtifactStore::commit(const std::string& key, const std::string& tmp) const {
  std::error_code ec;
  fs::rename(tmp, path(key), ec);
  if (ec) {
    // Another writer completed the same key first (identical content by construction).
    QS_THROW_IF_NOT(has(key), path(key), ": cannot commit artifact (", ec.message(), ")");
    fs::remove_all(tmp);
  }
}

void ArtifactStore::abort(const std::string& tmp) const {
  fs::remove_all(tmp);
}

}  // namespace qsweep
