// The sandbox's child side: see eval/sandbox_child.h. Only async-signal-safe calls here.
#include "eval/sandbox_child.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
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

/// Adds a path-beneath rule for `path` (opened O_PATH) to ruleset `rs`. A path that cannot
/// be opened is an error only when `required`.
void add_landlock_path(int rs, const char* path, uint64_t access, bool required) {
  LandlockPathBeneath rule{access, ::open(path, O_PATH | O_CLOEXEC)};
  if (rule.parent_fd < 0) {
    if (required) fail("landlock-open-workdir");
    return;
  }
  if (::syscall(SYS_landlock_add_rule, rs, kLandlockRulePathBeneath, &rule, 0) != 0)
    fail("landlock-rule");
  ::close(rule.parent_fd);
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
  add_landlock_path(rs, workdir, attr.handled_access_fs, /*required=*/true);
  add_landlock_path(rs, "/dev/null", kLlWriteFile | (abi >= 3 ? kLlTruncate : 0),
                    /*required=*/false);
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

/// In the new mount namespace: everything read-only except the work directory.
void make_filesystem_readonly(const ChildPlan& p) {
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

/// The program's process: pid 1 of its own pid namespace when namespaces are in use.
[[noreturn]] void grandchild_main(const ChildPlan& p, bool ns) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (ns) make_filesystem_readonly(p);
  if (::chdir(p.workdir) != 0) fail("chdir-workdir");
  apply_rlimits(p);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no-new-privs");
  const long landlock = apply_landlock(p.workdir);
  drop_capabilities();
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
