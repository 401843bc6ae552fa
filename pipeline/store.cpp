#include "pipeline/store.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <vector>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "pipeline/detail/artifacts.h"

namespace qsweep {
namespace fs = std::filesystem;

namespace {

std::string hex128(XXH128_hash_t h) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", (unsigned long long)h.high64,
                (unsigned long long)h.low64);
  return buf;
}

/// What the file-hash cache trusts: the same device, inode, size, modification time and
/// status-change time (both to the nanosecond). Rewriting a file in place changes its ctime
/// even when its mtime is set back (utimensat cannot set ctime), so such a file is rehashed.
std::string file_stamp(const struct stat& st) {
  return cat("dev", st.st_dev, "-ino", st.st_ino, "-size", st.st_size, "-mtime", st.st_mtim.tv_sec,
             ".", st.st_mtim.tv_nsec, "-ctime", st.st_ctim.tv_sec, ".", st.st_ctim.tv_nsec);
}

}  // namespace

std::string hash_hex(const std::string& bytes) {
  return hex128(XXH3_128bits(bytes.data(), bytes.size()));
}

std::string hash_file(const std::string& path) {
  // Streamed through one buffer with read(2): faster than mapping (no page fault per 4 KiB)
  // and the same hash (XXH3's streaming and one-shot forms agree).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  QS_THROW_IF_NOT(fd >= 0, path, ": cannot open for hashing (", std::strerror(errno), ")");
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> st(XXH3_createState(),
                                                                     XXH3_freeState);
  XXH3_128bits_reset(st.get());
  std::vector<char> buf(size_t(4) << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw Error(cat(path, ": read failed while hashing (", std::strerror(err), ")"));
    }
    if (n == 0) break;
    XXH3_128bits_update(st.get(), buf.data(), size_t(n));
  }
  ::close(fd);
  return hex128(XXH3_128bits_digest(st.get()));
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
  std::string all;  // the files' hashes, in order, then hashed once
  bool changed = false;
  for (const auto& f : files) {
    struct stat st {};
    QS_THROW_IF_NOT(::stat(f.c_str(), &st) == 0, f, ": cannot stat");
    const std::string abs = fs::weakly_canonical(f).string();
    const std::string stamp = file_stamp(st);
    std::string h;
    if (cache.contains(abs) && cache[abs].is_object() && cache[abs].value("stamp", "") == stamp &&
        cache[abs].value("hash", "").size() == 32) {
      h = cache[abs]["hash"].get<std::string>();
    } else {
      h = hash_file(f);
      cache[abs] = {{"stamp", stamp}, {"hash", h}};
      changed = true;
    }
    all += h;
  }
  if (changed) {
    const std::string text = cache.dump(1);
    write_file_atomic(cache_file, text.data(), text.size());
  }
  return hash_hex(all);
}

namespace {

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or ""
/// when it cannot be read (no such process, or no /proc).
std::string process_start_time(pid_t pid) {
  std::ifstream in(cat("/proc/", pid, "/stat"));
  std::string stat;
  if (!std::getline(in, stat)) return "";
  const size_t paren = stat.rfind(')');  // the command name may hold spaces and parentheses
  if (paren == std::string::npos) return "";
  std::istringstream fields(stat.substr(paren + 1));
  std::string f;
  for (int i = 3; i <= 22 && (fields >> f); ++i)
    if (i == 22) return f;
  return "";
}

/// The first 8 hex digits of this boot's id ("0" without /proc).
const std::string& boot_id() {
  static const std::string id = [] {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string s;
    std::getline(in, s);
    s.erase(std::remove(s.begin(), s.end(), '-'), s.end());
    return s.empty() ? std::string("0") : s.substr(0, 8);
  }();
  return id;
}

/// "pid<P>-start<S>-boot<B>": this process as the writer of a temporary. Computed on each
/// call (one small /proc read per node), so a forked child names itself, not its parent.
std::string writer_tag() {
  const pid_t pid = ::getpid();
  const std::string start = process_start_time(pid);
  return cat("pid", pid, "-start", start.empty() ? "0" : start, "-boot", boot_id());
}

bool pid_exists(long pid) {
  return pid > 0 && (::kill(pid_t(pid), 0) == 0 || errno == EPERM);
}

}  // namespace

bool temporary_writer_alive(const std::string& name) {
  static const std::regex tagged(R"(^\.tmp-.*-pid([0-9]+)-start([0-9]+)-boot([0-9a-f]+)-[0-9]+$)");
  static const std::regex legacy(R"(^\.tmp-[0-9a-f]+-([0-9]+)-[0-9]+$)");  // before the tag
  std::smatch m;
  if (std::regex_match(name, m, tagged)) {
    const long pid = std::stol(m[1].str().substr(0, 9));
    if (m[3].str() != boot_id() || !pid_exists(pid)) return false;
    const std::string start = process_start_time(pid_t(pid));
    return start.empty() || start == m[2].str();  // unreadable: assume alive, keep it
  }
  if (std::regex_match(name, m, legacy)) return pid_exists(std::stol(m[1].str().substr(0, 9)));
  return false;
}

void prepare_output_dir(const std::string& dir) {
  const auto fail = [&](const std::string& problem) {
    throw Error(cat("--out '", dir, "': ", problem));
  };
  if (dir.empty()) fail("empty path; give a directory");
  // The nearest existing ancestor decides: a directory we can write into, or a problem.
  fs::path p = fs::path(dir).lexically_normal();
  std::error_code ec;
  fs::path existing = p;
  while (!existing.empty() && !fs::exists(fs::symlink_status(existing, ec)) &&
         existing != existing.parent_path())
    existing = existing.parent_path();
  if (existing.empty()) existing = ".";
  struct stat st {};
  if (::stat(existing.c_str(), &st) != 0)
    fail(cat("cannot inspect '", existing.string(), "' (", std::strerror(errno), ")"));
  const bool is_self = existing == p;
  if (!S_ISDIR(st.st_mode)) {
    const std::string kind = S_ISREG(st.st_mode)    ? "a file"
                             : S_ISCHR(st.st_mode)  ? "a character device"
                             : S_ISBLK(st.st_mode)  ? "a block device"
                             : S_ISFIFO(st.st_mode) ? "a FIFO"
                             : S_ISSOCK(st.st_mode) ? "a socket"
                                                    : "not a directory";
    if (is_self) fail(cat("is ", kind, ", not a directory; give a directory path"));
    fail(cat("cannot be created: '", existing.string(), "' is ", kind,
             ", not a directory; give a directory path"));
  }
  if (::access(existing.c_str(), W_OK | X_OK) != 0) {
    const std::string why = errno == EROFS ? "on a read-only file system" : "not writable";
    if (is_self) fail(cat("the directory is ", why, "; give a writable directory"));
    fail(cat("cannot be created: '", existing.string(), "' is ", why,
             "; give a writable directory"));
  }
  fs::create_directories(p, ec);
  if (ec) fail(cat("cannot be created (", ec.message(), ")"));
  // What the run writes inside must be able to be what it is.
  for (const char* sub : {"store", ".lock"}) {
    const fs::path inner = p / sub;
    const fs::file_status st_in = fs::status(inner, ec);
    const bool want_dir = std::string(sub) == "store";
    if (fs::exists(st_in) && (want_dir ? !fs::is_directory(st_in) : !fs::is_regular_file(st_in)))
      fail(cat("'", inner.string(), "' is in the way: it should be ",
               want_dir ? "the store directory" : "the lock file", "; remove it"));
  }
}

OutDirLock::OutDirLock(const std::string& dir,
                       const std::function<void(const std::string&)>& on_wait) {
  const std::string file = dir + "/.lock";
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(cat(file, ": cannot open the lock file (", std::strerror(errno), ")"));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) {
      ::close(fd_);
      throw Error(cat(file, ": cannot lock (", std::strerror(errno), ")"));
    }
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    const std::string holder = n > 0 ? std::string(buf, size_t(n)) : "?";
    if (on_wait)
      on_wait(cat(dir, " is in use by another qsweep run (pid ", holder,
                  "); waiting for it to finish"));
    while (::flock(fd_, LOCK_EX) != 0)
      if (errno != EINTR) {
        ::close(fd_);
        throw Error(cat(file, ": cannot lock (", std::strerror(errno), ")"));
      }
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    // Only the waiting message loses its pid; the lock itself holds.
  }
}

OutDirLock::~OutDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

namespace {

/// Throws when `root` holds a store of another format; writes the FORMAT file of a new one.
void check_store_format(const std::string& root, bool write) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return;
  const std::string file = root + "/FORMAT";
  std::string found;
  if (fs::exists(file, ec)) {
    found = read_text_file(file);
    while (!found.empty() && (found.back() == '\n' || found.back() == ' ')) found.pop_back();
  } else {
    bool empty = true;
    for (const auto& e : fs::directory_iterator(root, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(".tmp-", 0) != 0) empty = false;
    }
    if (empty) {
      if (write) {
        const std::string text = std::string(detail::kStoreFormat) + "\n";
        write_file_atomic(file, text.data(), text.size());
      }
      return;
    }
    found = "qsweep-store-v2 or older (no FORMAT file)";
  }
  if (found != detail::kStoreFormat)
    throw Error(cat(root, ": a store written by another qsweep version (", found,
                    "); this qsweep reads ", detail::kStoreFormat,
                    " only. Remove that directory to recompute into it, or give another --out"));
}

}  // namespace

ArtifactStore::ArtifactStore(std::string root, Access access) : root_(std::move(root)) {
  check_store_format(root_, false);
  if (access == Access::Read) return;
  fs::create_directories(root_);
  check_store_format(root_, true);
  if (access == Access::Node) return;
  for (const auto& e : fs::directory_iterator(root_)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".tmp-", 0) == 0 && !temporary_writer_alive(name)) fs::remove_all(e.path());
  }
}

std::string ArtifactStore::path(const std::string& key) const {
  return root_ + "/" + key;
}

bool ArtifactStore::has(const std::string& key) const {
  return fs::is_directory(path(key));
}

std::string ArtifactStore::begin(const std::string& key) const {
  static std::atomic<int> counter{0};
  const std::string tmp = cat(root_, "/.tmp-", key, "-", writer_tag(), "-", counter.fetch_add(1));
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
