// The sandbox's child side: see eval/sandbox_child.h. Only async-signal-safe calls here.
#include "eval/sandbox_child.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace qsweep::sandbox_detail {
namespace {

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
constexpr uint64_t kLlExecute = 1 << 0, kLlReadFile = 1 << 2, kLlReadDir = 1 << 3;
constexpr uint64_t kLlWriteFile = 1 << 1, kLlRemoveDir = 1 << 4, kLlRemoveFile = 1 << 5,
                   kLlMakeChar = 1 << 6, kLlMakeDir = 1 << 7, kLlMakeReg = 1 << 8,
                   kLlMakeSock = 1 << 9, kLlMakeFifo = 1 << 10, kLlMakeBlock = 1 << 11,
                   kLlMakeSym = 1 << 12, kLlRefer = 1 << 13, kLlTruncate = 1 << 14;
constexpr uint64_t kLlNetBindTcp = 1 << 0, kLlNetConnectTcp = 1 << 1;
constexpr uint64_t kLlScopeAbstractUnix = 1 << 0, kLlScopeSignal = 1 << 1;

// ---- reporting on fd 3 --------------------------------------------------------------------

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

// ---- the program's process: confinement, then exec ----------------------------------------

void set_limit(int resource, rlim_t soft, rlim_t hard, const char* stage) {
  const struct rlimit rl { soft, hard };
  if (::setrlimit(resource, &rl) != 0) fail(stage);
}

void apply_rlimits(const ChildPlan& p) {
  set_limit(RLIMIT_AS, p.memory, p.memory, "rlimit-as");
  set_limit(RLIMIT_CPU, p.cpu, p.cpu + 1, "rlimit-cpu");
  set_limit(RLIMIT_NPROC, p.nproc, p.nproc, "rlimit-nproc");
  set_limit(RLIMIT_FSIZE, p.fsize, p.fsize, "rlimit-fsize");
  set_limit(RLIMIT_CORE, 0, 0, "rlimit-core");
  set_limit(RLIMIT_NOFILE, 256, 256, "rlimit-nofile");
}

/// Adds a path-beneath rule for `path` (opened O_PATH, symlinks followed) to ruleset `rs`;
/// on a file only the file rights of `access` apply. A path that cannot be opened is an error
/// only when `required`.
void add_landlock_path(int rs, const char* path, uint64_t access, bool required) {
  constexpr uint64_t kFileRights = kLlExecute | kLlWriteFile | kLlReadFile | kLlTruncate;
  LandlockPathBeneath rule{access, ::open(path, O_PATH | O_CLOEXEC)};
  if (rule.parent_fd < 0) {
    if (required) fail("landlock-open-workdir");
    return;
  }
  struct stat st {};
  if (::fstat(rule.parent_fd, &st) != 0) fail("landlock-stat");
  if (!S_ISDIR(st.st_mode)) rule.allowed_access &= kFileRights;
  if (::syscall(SYS_landlock_add_rule, rs, kLandlockRulePathBeneath, &rule, 0) != 0)
    fail("landlock-rule");
  ::close(rule.parent_fd);
}

bool starts_with(const char* s, const char* prefix) {
  while (*prefix)
    if (*s++ != *prefix++) return false;
  return true;
}

/// Landlock: reads only of the root's entries (and, with namespaces, listing the minimal root's
/// directories and the pid namespace's /proc), writes only
/// below the work dir and to the devices, no TCP bind/connect, no abstract unix sockets or
/// signals outside the sandbox. Returns the ABI used (0 = none).
long apply_landlock(const ChildPlan& p, bool ns) {
  const long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, kLandlockVersion);
  if (abi < 1) return 0;
  LandlockRulesetAttr attr{};
  attr.handled_access_fs = kLlExecute | kLlReadFile | kLlReadDir | kLlWriteFile | kLlRemoveDir |
                           kLlRemoveFile | kLlMakeChar | kLlMakeDir | kLlMakeReg | kLlMakeSock |
                           kLlMakeFifo | kLlMakeBlock | kLlMakeSym;
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
  const uint64_t read = kLlExecute | kLlReadFile | kLlReadDir;
  const uint64_t write_dev = kLlWriteFile | (abi >= 3 ? kLlTruncate : 0);
  add_landlock_path(rs, p.workdir, attr.handled_access_fs, /*required=*/true);
  for (const RootEntry* e = p.root; e && e->path; ++e)
    add_landlock_path(rs, e->path, read | (starts_with(e->path, "/dev/") ? write_dev : 0),
                      /*required=*/false);
  if (ns) {  // the minimal root: its directories may be listed, /proc is the pid namespace's
    add_landlock_path(rs, "/", kLlReadDir, /*required=*/true);
    add_landlock_path(rs, "/proc", read, /*required=*/false);
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

constexpr size_t kPathMax = 4096;

/// dst = a + b + c (fails the setup when too long).
void join(char* dst, const char* a, const char* b, const char* c = "") {
  if (str_len(a) + str_len(b) + str_len(c) >= kPathMax) {
    errno = ENAMETOOLONG;
    fail("root-path");
  }
  size_t pos = 0;
  put(dst, kPathMax, &pos, a);
  put(dst, kPathMax, &pos, b);
  put(dst, kPathMax, &pos, c);
  dst[pos] = 0;
}

void make_dir(const char* path) {
  if (::mkdir(path, 0755) != 0 && errno != EEXIST) fail("root-mkdir");
}

/// mkdir -p of the directories above `path` (and `path` itself when `self`).
void make_dirs(char* path, bool self) {
  for (char* c = path + 1; *c; ++c) {
    if (*c != '/') continue;
    *c = 0;
    make_dir(path);
    *c = '/';
  }
  if (self) make_dir(path);
}

/// One entry of the minimal root, at `at` (its path below the new root).
void add_root_entry(const RootEntry& e, char* at) {
  make_dirs(at, false);
  if (e.kind == RootEntry::symlink) {
    if (::symlink(e.link, at) != 0) fail("root-symlink");
    return;
  }
  if (e.kind == RootEntry::dir) {
    make_dir(at);
  } else {
    const int fd = ::open(at, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fail("root-file");
    ::close(fd);
  }
  // Recursive: a subtree with mounts locked by the user namespace cannot be bound alone.
  if (::mount(e.path, at, nullptr, MS_BIND | MS_REC, nullptr) != 0) fail("mount-bind-system");
}

/// Copies the open program file to `path` (in the scratch tmpfs).
void copy_program(int from, const char* path) {
  const int to = ::open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (to < 0) fail("copy-program");
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(from, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("copy-program");
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = ::write(to, buf + done, static_cast<size_t>(n - done));
      if (w < 0 && errno != EINTR) fail("copy-program");
      if (w > 0) done += w;
    }
  }
  ::close(to);
  ::close(from);
}

/// In the new mount namespace: a minimal root (a small tmpfs mounted over the work dir) that
/// holds only the read-only entries of p.root, a /proc of the new pid namespace, and the
/// scratch dir (a tmpfs with a size cap at the work dir's own path, holding program.py);
/// pivot_root into it, then everything read-only except the scratch dir.
void enter_minimal_root(const ChildPlan& p) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("mount-private");
  char path[kPathMax], program[kPathMax];
  join(program, p.workdir, "/", p.program);
  const int prog = ::open(program, O_RDONLY | O_CLOEXEC);
  if (prog < 0) fail("open-program");
  const char* root = p.workdir;
  if (::mount("qsweep-root", root, "tmpfs", MS_NOSUID | MS_NODEV, p.root_tmpfs) != 0)
    fail("mount-root-tmpfs");
  for (const RootEntry* e = p.root; e->path; ++e) {
    join(path, root, e->path);
    add_root_entry(*e, path);
  }
  // A /proc of the new pid namespace; none where the kernel refuses (containers with masked
  // /proc paths).
  join(path, root, "/proc");
  make_dir(path);
  const bool proc = ::mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0;
  record('I', "proc", proc ? 1 : 0);
  join(path, root, p.workdir);
  make_dirs(path, true);
  if (::mount("qsweep-scratch", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, p.scratch_tmpfs) !=
      0)
    fail("mount-scratch-tmpfs");
  join(program, path, "/", p.program);
  copy_program(prog, program);

  if (::chdir(root) != 0) fail("chdir-new-root");
  if (::syscall(SYS_pivot_root, ".", ".") != 0) fail("mount-pivot-root");
  if (::umount2(".", MNT_DETACH) != 0) fail("mount-detach-old-root");
  if (::chdir("/") != 0) fail("chdir-new-root");
  MountAttr ro{kMountAttrRdonly | kMountAttrNosuid, 0, 0, 0};
  if (::syscall(SYS_mount_setattr, AT_FDCWD, "/", kAtRecursive, &ro, sizeof ro) != 0)
    fail("mount-readonly");
  MountAttr rw{0, kMountAttrRdonly, 0, 0};
  if (::syscall(SYS_mount_setattr, AT_FDCWD, p.workdir, 0, &rw, sizeof rw) != 0)
    fail("mount-writable-workdir");
}

/// No socket of any family, no io_uring, namespaces, mounts, keyrings, bpf (see
/// eval/sandbox_policy.h). After no_new_privs; inherited by everything the program starts.
void apply_seccomp(const ChildPlan& p) {
  sock_fprog prog{p.seccomp_len, const_cast<sock_filter*>(p.seccomp)};
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) fail("seccomp");
}

/// The program's process: pid 1 of its own pid namespace when namespaces are in use.
[[noreturn]] void grandchild_main(const ChildPlan& p, bool ns) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (ns) enter_minimal_root(p);
  if (::chdir(p.workdir) != 0) fail("chdir-workdir");
  apply_rlimits(p);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no-new-privs");
  const long landlock = apply_landlock(p, ns);
  drop_capabilities();
  apply_seccomp(p);
  record('I', "namespaces", ns ? 1 : 0);
  record('I', "landlock", landlock);
  if (::fcntl(3, F_SETFD, FD_CLOEXEC) != 0) fail("cloexec");
  ::execve(p.python, p.argv, p.envp);
  fail("exec");
}

// ---- the forked child: isolation, then the program's process ------------------------------

/// stdout, stderr and the status pipe on fds 1, 2 and 3; stdin from /dev/null; nothing else.
void redirect_fds(const ChildPlan& p) {
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
}

/// No blocked signals and default dispositions, whatever the parent process had.
void reset_signals() {
  sigset_t all;
  ::sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) ::sigaction(s, &dfl, nullptr);  // EINVAL for KILL/STOP
}

void become_nobody() {
  if (::setgroups(0, nullptr) != 0) fail("setgroups");
  if (::setresgid(kNobody, kNobody, kNobody) != 0) fail("setgid-nobody");
  if (::setresuid(kNobody, kNobody, kNobody) != 0) fail("setuid-nobody");
  ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);  // else /proc/self/uid_map belongs to root
}

/// New user, mount, network, pid, IPC and UTS namespaces. Returns whether they are in use.
bool enter_namespaces(const ChildPlan& p) {
  if (!p.try_namespaces) return false;
  const int flags =
      CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  if (::unshare(flags) == 0) {
    if (!write_file("/proc/self/setgroups", "deny")) fail("setgroups-deny");
    if (!write_file("/proc/self/uid_map", p.uid_map)) fail("uid-map");
    if (!write_file("/proc/self/gid_map", p.gid_map)) fail("gid-map");
    return true;
  }
  if (p.require_namespaces) fail("unshare");
  record('W', "unshare", errno);
  return false;
}

}  // namespace

[[noreturn]] void child_main(const ChildPlan& p, pid_t parent) {
  redirect_fds(p);
  reset_signals();
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (::getppid() != parent) _exit(125);

  if (p.drop_to_nobody) become_nobody();
  const bool ns = enter_namespaces(p);
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

}  // namespace qsweep::sandbox_detail
