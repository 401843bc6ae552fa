#include "eval/sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <vector>

#include "common/errors.h"

namespace qsweep {
namespace {

namespace fs = std::filesystem;

constexpr uid_t kNobody = 65534;

// ---- kernel interfaces, defined here because the installed headers lag the kernel -----------

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

struct MountAttr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};
constexpr uint64_t kMountAttrRdonly = 0x1;
constexpr uint64_t kMountAttrNosuid = 0x2;
constexpr unsigned kAtRecursive = 0x8000;

struct LandlockRulesetAttr {
  uint64_t handled_access_fs, handled_access_net, scoped;
};
struct __attribute__((packed)) LandlockPathBeneath {
  uint64_t allowed_access;
  int32_t parent_fd;
};
constexpr uint32_t kLandlockVersion = 1;  // LANDLOCK_CREATE_RULESET_VERSION
constexpr int kLandlockRulePathBeneath = 1;
constexpr uint64_t kLlWriteFile = 1 << 1, kLlRemoveDir = 1 << 4, kLlRemoveFile = 1 << 5,
                   kLlMakeChar = 1 << 6, kLlMakeDir = 1 << 7, kLlMakeReg = 1 << 8,
                   kLlMakeSock = 1 << 9, kLlMakeFifo = 1 << 10, kLlMakeBlock = 1 << 11,
                   kLlMakeSym = 1 << 12, kLlRefer = 1 << 13, kLlTruncate = 1 << 14;
constexpr uint64_t kLlNetBindTcp = 1 << 0, kLlNetConnectTcp = 1 << 1;
constexpr uint64_t kLlScopeAbstractUnix = 1 << 0, kLlScopeSignal = 1 << 1;

// ---- the child side: only async-signal-safe calls between fork and exec ---------------------

/// Everything the child needs, prepared before fork (no allocation after it).
struct ChildPlan {
  const char* workdir = nullptr;
  const char* python = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  bool try_namespaces = true;
  bool require_namespaces = true;
  bool drop_to_nobody = false;
  const char* uid_map = nullptr;
  const char* gid_map = nullptr;
  rlim_t memory = 0, cpu = 0, nproc = 0, fsize = 0;
  int out_w = -1, err_w = -1, status_w = -1;
};

size_t str_len(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  return n;
}

/// Appends `s` to buf at *pos (bounded).
void put(char* buf, size_t cap, size_t* pos, const char* s) {
  while (*s && *pos + 1 < cap) buf[(*pos)++] = *s++;
}
void put_long(char* buf, size_t cap, size_t* pos, long v) {
  char tmp[24];
  int n = 0;
  const bool neg = v < 0;
  unsigned long u = neg ? 0UL - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
  do {
    tmp[n++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u && n < 22);
  if (neg) tmp[n++] = '-';
  while (n > 0 && *pos + 1 < cap) buf[(*pos)++] = tmp[--n];
}

/// One status line on fd 3: "<tag> <key> <value>\n".
void record(char tag, const char* key, long value) {
  char buf[96];
  size_t pos = 0;
  buf[pos++] = tag;
  put(buf, sizeof buf, &pos, " ");
  put(buf, sizeof buf, &pos, key);
  put(buf, sizeof buf, &pos, " ");
  put_long(buf, sizeof buf, &pos, value);
  put(buf, sizeof buf, &pos, "\n");
  ssize_t r;
  do r = ::write(3, buf, pos);
  while (r < 0 && errno == EINTR);
}

[[noreturn]] void fail(const char* stage) {
  record('E', stage, errno);
  _exit(127);
}

bool write_file(const char* path, const char* text) {
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const size_t n = str_len(text);
  const bool ok = ::write(fd, text, n) == static_cast<ssize_t>(n);
  ::close(fd);
  return ok;
}

void set_limit(int resource, rlim_t soft, rlim_t hard, const char* stage) {
  const struct rlimit rl { soft, hard };
  if (::setrlimit(resource, &rl) != 0) fail(stage);
}

/// Landlock: writes only below the work dir (and to /dev/null), no TCP bind/connect, no
/// abstract unix sockets or signals outside the sandbox. Returns the ABI used (0 = none).
long apply_landlock(const char* workdir) {
  const long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, kLandlockVersion);
  if (abi < 1) return 0;
  LandlockRulesetAttr attr{};
  attr.handled_access_fs = kLlWriteFile | kLlRemoveDir | kLlRemoveFile | kLlMakeChar | kLlMakeDir |
                           kLlMakeReg | kLlMakeSock | kLlMakeFifo | kLlMakeBlock | kLlMakeSym;
  if (abi >= 2) attr.handled_access_fs |= kLlRefer;
  if (abi >= 3) attr.handled_access_fs |= kLlTruncate;
  size_t size = sizeof(uint64_t);
  if (abi >= 4) {
    attr.handled_access_net = kLlNetBindTcp | kLlNetConnectTcp;
    size = 2 * sizeof(uint64_t);
  }
  if (abi >= 6) {
    attr.scoped = kLlScopeAbstractUnix | kLlScopeSignal;
    size = sizeof attr;
  }
  const int rs = static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, size, 0));
  if (rs < 0) fail("landlock-ruleset");
  LandlockPathBeneath dir{attr.handled_access_fs, ::open(workdir, O_PATH | O_CLOEXEC)};
  if (dir.parent_fd < 0) fail("landlock-open-workdir");
  if (::syscall(SYS_landlock_add_rule, rs, kLandlockRulePathBeneath, &dir, 0) != 0)
    fail("landlock-rule");
  ::close(dir.parent_fd);
  LandlockPathBeneath null{kLlWriteFile | (abi >= 3 ? kLlTruncate : 0),
                           ::open("/dev/null", O_PATH | O_CLOEXEC)};
  if (null.parent_fd >= 0) {
    if (::syscall(SYS_landlock_add_rule, rs, kLandlockRulePathBeneath, &null, 0) != 0)
      fail("landlock-rule");
    ::close(null.parent_fd);
  }
  if (::syscall(SYS_landlock_restrict_self, rs, 0) != 0) fail("landlock-restrict");
  ::close(rs);
  return abi;
}

void drop_capabilities() {
  for (int cap = 0; cap < 64; ++cap) ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);  // EPERM: none held
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capset, &header, data) != 0) fail("capset");
}

/// The program's process: pid 1 of its own pid namespace when namespaces are in use.
[[noreturn]] void grandchild_main(const ChildPlan& p, bool ns) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (ns) {
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("mount-private");
    if (::mount(p.workdir, p.workdir, nullptr, MS_BIND, nullptr) != 0) fail("mount-bind-workdir");
    // A /proc of the new pid namespace; kept the old one where the kernel refuses (containers
    // with masked /proc paths). Either way it ends up read-only below.
    const bool proc =
        ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0;
    record('I', "proc", proc ? 1 : 0);
    MountAttr ro{kMountAttrRdonly | kMountAttrNosuid, 0, 0, 0};
    if (::syscall(SYS_mount_setattr, AT_FDCWD, "/", kAtRecursive, &ro, sizeof ro) != 0)
      fail("mount-readonly");
    MountAttr rw{0, kMountAttrRdonly, 0, 0};
    if (::syscall(SYS_mount_setattr, AT_FDCWD, p.workdir, 0, &rw, sizeof rw) != 0)
      fail("mount-writable-workdir");
  }
  if (::chdir(p.workdir) != 0) fail("chdir-workdir");
  set_limit(RLIMIT_AS, p.memory, p.memory, "rlimit-as");
  set_limit(RLIMIT_CPU, p.cpu, p.cpu + 1, "rlimit-cpu");
  set_limit(RLIMIT_NPROC, p.nproc, p.nproc, "rlimit-nproc");
  set_limit(RLIMIT_FSIZE, p.fsize, p.fsize, "rlimit-fsize");
  set_limit(RLIMIT_CORE, 0, 0, "rlimit-core");
  set_limit(RLIMIT_NOFILE, 256, 256, "rlimit-nofile");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no-new-privs");
  const long landlock = apply_landlock(p.workdir);
  drop_capabilities();
  record('I', "namespaces", ns ? 1 : 0);
  record('I', "landlock", landlock);
  if (::fcntl(3, F_SETFD, FD_CLOEXEC) != 0) fail("cloexec");
  ::execve(p.python, p.argv, p.envp);
  fail("exec");
}

/// The forked child: isolates itself, forks the program and reports its wait status.
[[noreturn]] void child_main(const ChildPlan& p, pid_t parent) {
  // Fresh copies first so that the dup2s below cannot overwrite one another.
  const int out = ::fcntl(p.out_w, F_DUPFD, 3);
  const int err = ::fcntl(p.err_w, F_DUPFD, 3);
  const int status = ::fcntl(p.status_w, F_DUPFD, 3);
  if (out < 0 || err < 0 || status < 0) _exit(126);
  if (::dup2(out, 1) < 0 || ::dup2(err, 2) < 0 || ::dup2(status, 3) < 0) _exit(126);
  const int null = ::open("/dev/null", O_RDONLY);
  if (null < 0 || ::dup2(null, 0) < 0) _exit(126);
  if (::syscall(SYS_close_range, 4U, ~0U, 0U) != 0) {
    for (int fd = 4; fd < 65536; ++fd) ::close(fd);
  }
  sigset_t all;
  ::sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) ::sigaction(s, &dfl, nullptr);  // EINVAL for KILL/STOP
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (::getppid() != parent) _exit(125);

  if (p.drop_to_nobody) {
    if (::setgroups(0, nullptr) != 0) fail("setgroups");
    if (::setresgid(kNobody, kNobody, kNobody) != 0) fail("setgid-nobody");
    if (::setresuid(kNobody, kNobody, kNobody) != 0) fail("setuid-nobody");
    ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);  // else /proc/self/uid_map belongs to root
  }
  bool ns = false;
  if (p.try_namespaces) {
    const int flags =
        CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
    if (::unshare(flags) == 0) {
      ns = true;
      if (!write_file("/proc/self/setgroups", "deny")) fail("setgroups-deny");
      if (!write_file("/proc/self/uid_map", p.uid_map)) fail("uid-map");
      if (!write_file("/proc/self/gid_map", p.gid_map)) fail("gid-map");
    } else if (p.require_namespaces) {
      fail("unshare");
    } else {
      record('W', "unshare", errno);
    }
  }
  const pid_t g = ::fork();
  if (g < 0) fail("fork");
  if (g == 0) grandchild_main(p, ns);
  ::close(0);
  ::close(1);
  ::close(2);
  int st = 0;
  while (::waitpid(g, &st, 0) < 0) {
    if (errno != EINTR) fail("waitpid");
  }
  record('S', "status", st);
  _exit(0);
}

// ---- the parent side --------------------------------------------------------------------------

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

void make_pipe(Fd& r, Fd& w) {
  int fds[2];
  QS_THROW_IF_NOT(::pipe2(fds, O_CLOEXEC) == 0, "sandbox: pipe2 failed: ", std::strerror(errno),
                  " (too many open files? raise `ulimit -n`)");
  r.fd = fds[0];
  w.fd = fds[1];
  ::fcntl(r.fd, F_SETFL, O_NONBLOCK);
}

/// Removes the work directory even if the program made parts of it unreadable.
void remove_tree(const fs::path& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (!ec || !fs::exists(dir)) return;
  for (auto it =
           fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec)) ::chmod(it->path().c_str(), 0700);
  }
  ::chmod(dir.c_str(), 0700);
  fs::remove_all(dir, ec);
}

struct WorkDir {
  fs::path path;
  ~WorkDir() {
    if (!path.empty()) remove_tree(path);
  }
};

std::string work_root(const SandboxOptions& opt) {
  if (!opt.work_root.empty()) return opt.work_root;
  if (const char* t = std::getenv("TMPDIR"); t && *t) return t;
  return "/tmp";
}

std::string explain(const std::string& stage, int err) {
  const std::string what = cat(stage, ": ", std::strerror(err));
  if (stage == "unshare")
    return cat("sandbox: cannot create user/mount/network/pid namespaces (", what,
               "). Enable unprivileged user namespaces (sysctl user.max_user_namespaces > 0; "
               "kernel.unprivileged_userns_clone=1 where it exists), or in a container allow "
               "unshare (e.g. docker --security-opt seccomp=unconfined --cap-add SYS_ADMIN); or "
               "accept weaker isolation with sandbox isolation best_effort");
  if (stage.rfind("mount", 0) == 0)
    return cat("sandbox: cannot make the filesystem read-only (", what,
               "); needs Linux >= 5.12 (mount_setattr), or use isolation best_effort");
  if (stage == "chdir-workdir")
    return cat("sandbox: the program cannot enter its work directory (", what,
               "); choose a work root that user nobody (65534) can traverse, e.g. /tmp");
  if (stage == "exec")
    return cat("sandbox: cannot execute the Python interpreter (", what,
               "); install python3 (scripts/setup.sh) or set the interpreter path");
  return cat("sandbox: setting up the isolated process failed (", what, ")");
}

bool contains(const std::string& s, const char* needle) {
  return s.find(needle) != std::string::npos;
}

}  // namespace

const char* to_string(SandboxStatus s) {
  switch (s) {
    case SandboxStatus::ok:
      return "ok";
    case SandboxStatus::failed:
      return "failed";
    case SandboxStatus::timeout:
      return "timeout";
    case SandboxStatus::memory:
      return "memory";
    case SandboxStatus::crashed:
      return "crashed";
    case SandboxStatus::setup_error:
      return "setup_error";
  }
  return "?";
}

SandboxResult run_sandboxed(const std::string& program, const SandboxOptions& opt) {
  QS_THROW_IF_NOT(!opt.python.empty() && opt.python[0] == '/', "sandbox: python interpreter '",
                  opt.python, "' must be an absolute path");
  QS_THROW_IF_NOT(::access(opt.python.c_str(), X_OK) == 0, "sandbox: python interpreter ",
                  opt.python,
                  " not found or not executable; install python3 (scripts/setup.sh) or set the "
                  "interpreter path");
  QS_THROW_IF_NOT(opt.timeout_seconds > 0 && std::isfinite(opt.timeout_seconds),
                  "sandbox: timeout must be > 0 seconds, got ", opt.timeout_seconds);
  QS_THROW_IF_NOT(opt.memory_bytes > 0 && opt.max_processes > 0 && opt.max_file_bytes > 0 &&
                      opt.max_output_bytes > 0 && opt.cpu_seconds >= 0,
                  "sandbox: memory, process, file and output limits must be > 0");

  // The work directory, owned by the user the program runs as.
  WorkDir wd;
  {
    std::string tmpl = work_root(opt) + "/qsweep-sbx-XXXXXX";
    QS_THROW_IF_NOT(::mkdtemp(tmpl.data()) != nullptr, "sandbox: cannot create a work directory ",
                    tmpl, ": ", std::strerror(errno),
                    "; set the sandbox work root (or TMPDIR) to a writable directory");
    wd.path = tmpl;
  }
  const std::string workdir = wd.path.string();
  {
    std::ofstream f(wd.path / "program.py", std::ios::binary);
    f << program;
    QS_THROW_IF_NOT(f.good(), "sandbox: cannot write ", workdir, "/program.py (disk full?)");
  }
  const bool root = ::geteuid() == 0;
  if (root) {
    QS_THROW_IF_NOT(::chown(workdir.c_str(), kNobody, kNobody) == 0, "sandbox: chown ", workdir,
                    " to nobody failed: ", std::strerror(errno));
    ::chmod((workdir + "/program.py").c_str(), 0644);
  }

  // Everything the child uses, built before fork.
  const uid_t uid = root ? kNobody : ::geteuid();
  const gid_t gid = root ? kNobody : ::getegid();
  const std::string uid_map = cat(uid, " ", uid, " 1\n");
  const std::string gid_map = cat(gid, " ", gid, " 1\n");
  std::vector<std::string> args = {opt.python, "-I", "-B", "program.py"};
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + workdir,
                                  "TMPDIR=" + workdir, "LANG=C.UTF-8", "PYTHONIOENCODING=utf-8"};
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  const int cpu =
      opt.cpu_seconds > 0 ? opt.cpu_seconds : static_cast<int>(std::ceil(opt.timeout_seconds)) + 1;
  Fd out_r, out_w, err_r, err_w, st_r, st_w;
  make_pipe(out_r, out_w);
  make_pipe(err_r, err_w);
  make_pipe(st_r, st_w);

  ChildPlan plan;
  plan.workdir = workdir.c_str();
  plan.python = opt.python.c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.try_namespaces = opt.isolation != SandboxIsolation::no_namespaces;
  plan.require_namespaces = opt.isolation == SandboxIsolation::require_namespaces;
  plan.drop_to_nobody = root;
  plan.uid_map = uid_map.c_str();
  plan.gid_map = gid_map.c_str();
  plan.memory = static_cast<rlim_t>(opt.memory_bytes);
  plan.cpu = static_cast<rlim_t>(cpu);
  plan.nproc = static_cast<rlim_t>(opt.max_processes);
  plan.fsize = static_cast<rlim_t>(opt.max_file_bytes);
  plan.out_w = out_w.fd;
  plan.err_w = err_w.fd;
  plan.status_w = st_w.fd;

  SandboxResult res;
  const auto start = std::chrono::steady_clock::now();
  const pid_t self = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    res.message = cat("sandbox: fork failed: ", std::strerror(errno));
    return res;
  }
  if (pid == 0) child_main(plan, self);
  ::setpgid(pid, pid);  // also done by the child; whichever runs first
  out_w.reset();
  err_w.reset();
  st_w.reset();

  // Read until the child has exited and the program's pipes are closed, or the deadline.
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(opt.timeout_seconds));
  const size_t cap = static_cast<size_t>(opt.max_output_bytes);
  std::string status_text;
  bool timed_out = false;
  std::chrono::steady_clock::time_point status_closed{};
  char buf[65536];
  for (;;) {
    pollfd fds[3];
    int n = 0;
    for (Fd* f : {&out_r, &err_r, &st_r})
      if (f->fd >= 0) fds[n++] = {f->fd, POLLIN, 0};
    if (n == 0) break;
    const auto now = std::chrono::steady_clock::now();
    // After the child is gone only its stragglers can hold the pipes open: a short grace.
    auto limit = deadline;
    if (st_r.fd < 0) limit = std::min(deadline, status_closed + std::chrono::milliseconds(500));
    if (now >= limit) {
      timed_out = now >= deadline;
      break;
    }
    const auto wait_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(limit - now).count() + 1;
    const int pr = ::poll(fds, n, static_cast<int>(std::min<int64_t>(wait_ms, 100)));
    if (pr < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Fd* f = fds[i].fd == out_r.fd ? &out_r : fds[i].fd == err_r.fd ? &err_r : &st_r;
      const ssize_t r = ::read(f->fd, buf, sizeof buf);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        if (f == &st_r) status_closed = std::chrono::steady_clock::now();
        f->reset();
        continue;
      }
      if (f == &out_r) {
        const size_t room = cap - std::min(cap, res.stdout_text.size());
        res.stdout_text.append(buf, std::min(room, static_cast<size_t>(r)));
        if (static_cast<size_t>(r) > room) res.output_truncated = true;
      } else if (f == &err_r) {
        res.stderr_tail.append(buf, static_cast<size_t>(r));
        if (res.stderr_tail.size() > 2 * cap) {
          res.stderr_tail.erase(0, res.stderr_tail.size() - cap);
          res.output_truncated = true;
        }
      } else if (status_text.size() < 4096) {
        status_text.append(buf, static_cast<size_t>(r));
      }
    }
  }
  // Kill whatever is left (the child is not reaped yet, so its process group id is still ours);
  // with a pid namespace the program is killed through its parent's death signal as well.
  ::kill(-pid, SIGKILL);
  int wst = 0;
  while (::waitpid(pid, &wst, 0) < 0 && errno == EINTR) {
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Anything the child wrote just before it died.
  for (;;) {
    const ssize_t r = st_r.fd >= 0 ? ::read(st_r.fd, buf, sizeof buf) : 0;
    if (r <= 0) break;
    status_text.append(buf, static_cast<size_t>(r));
  }
  if (res.stderr_tail.size() > cap) {
    res.stderr_tail.erase(0, res.stderr_tail.size() - cap);
    res.output_truncated = true;
  }

  // Parse the child's records.
  bool have_status = false, ns = false;
  int status = 0;
  long landlock = 0;
  std::string error_stage, warning;
  int error_errno = 0;
  size_t pos = 0;
  while (pos < status_text.size()) {
    const size_t nl = status_text.find('\n', pos);
    if (nl == std::string::npos) break;
    const std::string line = status_text.substr(pos, nl - pos);
    pos = nl + 1;
    const size_t a = line.find(' '), b = line.rfind(' ');
    if (line.size() < 5 || a != 1 || b <= a) continue;
    const std::string key = line.substr(a + 1, b - a - 1);
    const long value = std::strtol(line.c_str() + b + 1, nullptr, 10);
    switch (line[0]) {
      case 'E':
        error_stage = key;
        error_errno = static_cast<int>(value);
        break;
      case 'W':
        warning = cat(key, ": ", std::strerror(static_cast<int>(value)));
        break;
      case 'S':
        have_status = true;
        status = static_cast<int>(value);
        break;
      case 'I':
        if (key == "namespaces") ns = value != 0;
        if (key == "landlock") landlock = value;
        break;
    }
  }
  res.isolation =
      ns ? (landlock ? "namespaces+landlock" : "namespaces") : (landlock ? "landlock" : "rlimits");
  if (!error_stage.empty()) {
    res.status = SandboxStatus::setup_error;
    res.message = explain(error_stage, error_errno);
    return res;
  }
  if (timed_out) {
    res.status = SandboxStatus::timeout;
    res.signal = SIGKILL;
    res.message = cat("wall-clock timeout after ", opt.timeout_seconds, " s");
    return res;
  }
  if (!have_status) {
    res.status = SandboxStatus::setup_error;
    res.message = WIFSIGNALED(wst)
                      ? cat("sandbox: the supervising process was killed by signal ", WTERMSIG(wst))
                      : cat("sandbox: the supervising process exited with status ",
                            WIFEXITED(wst) ? WEXITSTATUS(wst) : -1, " without a report");
    return res;
  }
  if (!warning.empty()) res.message = cat("weaker isolation (", warning, ")");
  const bool oom_text = contains(res.stderr_tail, "MemoryError") ||
                        contains(res.stderr_tail, "Cannot allocate memory") ||
                        contains(res.stderr_tail, "std::bad_alloc");
  if (WIFEXITED(status)) {
    res.exit_code = WEXITSTATUS(status);
    res.status = res.exit_code == 0 ? SandboxStatus::ok
                 : oom_text         ? SandboxStatus::memory
                                    : SandboxStatus::failed;
  } else if (WIFSIGNALED(status)) {
    res.signal = WTERMSIG(status);
    if (res.signal == SIGXCPU || (res.signal == SIGKILL && res.seconds >= cpu))
      res.status = SandboxStatus::timeout;
    else
      res.status = oom_text ? SandboxStatus::memory : SandboxStatus::crashed;
  } else {
    res.status = SandboxStatus::crashed;
  }
  return res;
}

SandboxProbe probe_sandbox(const SandboxOptions& opt) {
  static std::mutex mu;
  static std::map<std::string, SandboxProbe> cache;
  const std::string key =
      cat(opt.python, '\n', static_cast<int>(opt.isolation), '\n', work_root(opt));
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
  }
  SandboxProbe p;
  try {
    SandboxOptions o = opt;
    o.timeout_seconds = std::max(opt.timeout_seconds, 30.0);
    const SandboxResult r = run_sandboxed("import sys\nsys.exit(0)\n", o);
    p.usable = r.passed();
    p.isolation = r.isolation;
    if (!p.usable)
      p.message = r.status == SandboxStatus::setup_error
                      ? r.message
                      : cat("sandbox: a trivial program did not pass (", to_string(r.status),
                            "): ", r.stderr_tail);
  } catch (const Error& e) {
    p.message = e.what();
  }
  std::lock_guard<std::mutex> lock(mu);
  cache[key] = p;
  return p;
}

}  // namespace qsweep
