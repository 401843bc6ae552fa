// The sandbox's parent side: checks, the work directory, spawning the child (whose side is
// eval/sandbox_child.cpp), reading its output against the deadline, and what the run came to.
#include "eval/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
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
#include "eval/sandbox_child.h"
#include "eval/sandbox_policy.h"

namespace qsweep {
namespace {

namespace fs = std::filesystem;
using sandbox_detail::ChildPlan;
using sandbox_detail::kNobody;
using Clock = std::chrono::steady_clock;

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
  if (stage.rfind("mount", 0) == 0 || stage.rfind("root", 0) == 0)
    return cat("sandbox: cannot build the program's minimal read-only root (", what,
               "); needs Linux >= 5.12 (mount_setattr) and tmpfs/bind mounts in a user "
               "namespace, or use isolation best_effort");
  if (stage == "seccomp")
    return cat("sandbox: cannot install the seccomp filter (", what,
               "); needs a kernel with CONFIG_SECCOMP_FILTER");
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

// ---- run_sandboxed, step by step ------------------------------------------------------------

void check_options(const SandboxOptions& opt) {
  QS_THROW_IF_NOT(!opt.python.empty() && opt.python[0] == '/', "sandbox: python interpreter '",
                  opt.python, "' must be an absolute path");
  QS_THROW_IF_NOT(::access(opt.python.c_str(), X_OK) == 0, "sandbox: python interpreter ",
                  opt.python,
                  " not found or not executable; install python3 (scripts/setup.sh) or set the "
                  "interpreter path");
  QS_THROW_IF_NOT(opt.timeout_seconds > 0 && std::isfinite(opt.timeout_seconds),
                  "sandbox: timeout must be > 0 seconds, got ", opt.timeout_seconds);
  QS_THROW_IF_NOT(opt.memory_bytes > 0 && opt.max_processes > 0 && opt.max_file_bytes > 0 &&
                      opt.max_output_bytes > 0 && opt.cpu_seconds >= 0 && opt.scratch_bytes > 0 &&
                      opt.scratch_files > 0,
                  "sandbox: memory, process, file, scratch and output limits must be > 0");
}

/// The work directory with program.py, owned by the user the program runs as.
void make_work_dir(const SandboxOptions& opt, const std::string& program, bool root, WorkDir* wd) {
  std::string tmpl = work_root(opt) + "/qsweep-sbx-XXXXXX";
  QS_THROW_IF_NOT(::mkdtemp(tmpl.data()) != nullptr, "sandbox: cannot create a work directory ",
                  tmpl, ": ", std::strerror(errno),
                  "; set the sandbox work root (or TMPDIR) to a writable directory");
  wd->path = tmpl;
  const std::string workdir = wd->path.string();
  {
    std::ofstream f(wd->path / "program.py", std::ios::binary);
    f << program;
    QS_THROW_IF_NOT(f.good(), "sandbox: cannot write ", workdir, "/program.py (disk full?)");
  }
  if (root) {
    QS_THROW_IF_NOT(::chown(workdir.c_str(), kNobody, kNobody) == 0, "sandbox: chown ", workdir,
                    " to nobody failed: ", std::strerror(errno));
    ::chmod((workdir + "/program.py").c_str(), 0644);
  }
}

/// The child's strings (argv, environment, id maps), owned here while the child starts.
struct ChildStrings {
  std::string uid_map, gid_map, scratch_tmpfs;
  std::vector<std::string> args, env;
  std::vector<char*> argv, envp;
  sandbox_detail::RootPlan root_plan;
  ChildStrings(const SandboxOptions& opt, const std::string& workdir, bool root)
      : root_plan(opt.python) {
    scratch_tmpfs = cat("size=", opt.scratch_bytes, ",nr_inodes=", opt.scratch_files, ",mode=0700");
    const uid_t uid = root ? kNobody : ::geteuid();
    const gid_t gid = root ? kNobody : ::getegid();
    uid_map = cat(uid, " ", uid, " 1\n");
    gid_map = cat(gid, " ", gid, " 1\n");
    args = {opt.python, "-I", "-B", "program.py"};
    env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + workdir, "TMPDIR=" + workdir,
           "LANG=C.UTF-8", "PYTHONIOENCODING=utf-8"};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
  }
  ChildStrings(const ChildStrings&) = delete;
  ChildStrings& operator=(const ChildStrings&) = delete;
};

/// The pipes between parent and child: the program's stdout and stderr, the child's reports.
struct Pipes {
  Fd out_r, out_w, err_r, err_w, st_r, st_w;
  Pipes() {
    make_pipe(out_r, out_w);
    make_pipe(err_r, err_w);
    make_pipe(st_r, st_w);
  }
  void close_write_ends() {
    out_w.reset();
    err_w.reset();
    st_w.reset();
  }
};

ChildPlan make_child_plan(const SandboxOptions& opt, const std::string& workdir, bool root, int cpu,
                          const ChildStrings& s, const Pipes& pipes) {
  ChildPlan plan;
  plan.workdir = workdir.c_str();
  plan.program = "program.py";
  plan.root = s.root_plan.entries.data();
  plan.root_tmpfs = "size=1m,nr_inodes=1024,mode=0755";
  plan.scratch_tmpfs = s.scratch_tmpfs.c_str();
  const auto& filter = sandbox_detail::seccomp_program();
  plan.seccomp = filter.data();
  plan.seccomp_len = static_cast<unsigned short>(filter.size());
  plan.python = opt.python.c_str();
  plan.argv = s.argv.data();
  plan.envp = s.envp.data();
  plan.try_namespaces = opt.isolation != SandboxIsolation::no_namespaces;
  plan.require_namespaces = opt.isolation == SandboxIsolation::require_namespaces;
  plan.drop_to_nobody = root;
  plan.uid_map = s.uid_map.c_str();
  plan.gid_map = s.gid_map.c_str();
  plan.memory = static_cast<rlim_t>(opt.memory_bytes);
  plan.cpu = static_cast<rlim_t>(cpu);
  plan.nproc = static_cast<rlim_t>(opt.max_processes);
  plan.fsize = static_cast<rlim_t>(opt.max_file_bytes);
  plan.out_w = pipes.out_w.fd;
  plan.err_w = pipes.err_w.fd;
  plan.status_w = pipes.st_w.fd;
  return plan;
}

/// What came through the pipes.
struct Collected {
  std::string status_text;  ///< the child's report lines
  bool timed_out = false;
};

/// Keeps the first `cap` bytes of stdout and (about) the last `cap` of stderr.
void keep_output(const Pipes& pipes, const Fd* f, const char* buf, size_t n, size_t cap,
                 SandboxResult* res, std::string* status_text) {
  if (f == &pipes.out_r) {
    const size_t room = cap - std::min(cap, res->stdout_text.size());
    res->stdout_text.append(buf, std::min(room, n));
    if (n > room) res->output_truncated = true;
  } else if (f == &pipes.err_r) {
    res->stderr_tail.append(buf, n);
    if (res->stderr_tail.size() > 2 * cap) {
      res->stderr_tail.erase(0, res->stderr_tail.size() - cap);
      res->output_truncated = true;
    }
  } else if (status_text->size() < 4096) {
    status_text->append(buf, n);
  }
}

/// Reads until the child has exited and the program's pipes are closed, or the deadline.
Collected collect_output(Pipes& pipes, Clock::time_point deadline, size_t cap, SandboxResult* res) {
  Collected c;
  Clock::time_point status_closed{};
  char buf[65536];
  for (;;) {
    pollfd fds[3];
    int n = 0;
    for (Fd* f : {&pipes.out_r, &pipes.err_r, &pipes.st_r})
      if (f->fd >= 0) fds[n++] = {f->fd, POLLIN, 0};
    if (n == 0) break;
    const auto now = Clock::now();
    // After the child is gone only its stragglers can hold the pipes open: a short grace.
    auto limit = deadline;
    if (pipes.st_r.fd < 0)
      limit = std::min(deadline, status_closed + std::chrono::milliseconds(500));
    if (now >= limit) {
      c.timed_out = now >= deadline;
      break;
    }
    const auto wait_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(limit - now).count() + 1;
    const int pr = ::poll(fds, n, static_cast<int>(std::min<int64_t>(wait_ms, 100)));
    if (pr < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Fd* f = fds[i].fd == pipes.out_r.fd   ? &pipes.out_r
              : fds[i].fd == pipes.err_r.fd ? &pipes.err_r
                                            : &pipes.st_r;
      const ssize_t r = ::read(f->fd, buf, sizeof buf);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        if (f == &pipes.st_r) status_closed = Clock::now();
        f->reset();
        continue;
      }
      keep_output(pipes, f, buf, static_cast<size_t>(r), cap, res, &c.status_text);
    }
  }
  return c;
}

/// Kills whatever is left of the child's process group, reaps the child (the run's wall clock
/// stops there) and reads what it reported just before it died. Returns its wait status.
int finish_child(pid_t pid, Pipes& pipes, Clock::time_point start, SandboxResult* res,
                 std::string* status_text) {
  // The child is not reaped yet, so its process group id is still ours; with a pid namespace
  // the program is killed through its parent's death signal as well.
  ::kill(-pid, SIGKILL);
  int wst = 0;
  while (::waitpid(pid, &wst, 0) < 0 && errno == EINTR) {
  }
  res->seconds = std::chrono::duration<double>(Clock::now() - start).count();
  char buf[4096];
  for (;;) {
    const ssize_t r = pipes.st_r.fd >= 0 ? ::read(pipes.st_r.fd, buf, sizeof buf) : 0;
    if (r <= 0) break;
    status_text->append(buf, static_cast<size_t>(r));
  }
  return wst;
}

/// The child's report lines (eval/sandbox_child.h), parsed.
struct ChildReport {
  bool have_status = false, ns = false;
  int status = 0;
  long landlock = 0;
  std::string error_stage, warning;
  int error_errno = 0;
};

ChildReport parse_report(const std::string& status_text) {
  ChildReport rep;
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
        rep.error_stage = key;
        rep.error_errno = static_cast<int>(value);
        break;
      case 'W':
        rep.warning = cat(key, ": ", std::strerror(static_cast<int>(value)));
        break;
      case 'S':
        rep.have_status = true;
        rep.status = static_cast<int>(value);
        break;
      case 'I':
        if (key == "namespaces") rep.ns = value != 0;
        if (key == "landlock") rep.landlock = value;
        break;
    }
  }
  return rep;
}

/// The program's own end (it ran and the child reported its wait status).
void classify_program_status(const ChildReport& rep, int cpu, SandboxResult* res) {
  if (!rep.warning.empty()) res->message = cat("weaker isolation (", rep.warning, ")");
  const bool oom_text = contains(res->stderr_tail, "MemoryError") ||
                        contains(res->stderr_tail, "Cannot allocate memory") ||
                        contains(res->stderr_tail, "std::bad_alloc");
  const int status = rep.status;
  if (WIFEXITED(status)) {
    res->exit_code = WEXITSTATUS(status);
    res->status = res->exit_code == 0 ? SandboxStatus::ok
                  : oom_text          ? SandboxStatus::memory
                                      : SandboxStatus::failed;
  } else if (WIFSIGNALED(status)) {
    res->signal = WTERMSIG(status);
    if (res->signal == SIGXCPU || (res->signal == SIGKILL && res->seconds >= cpu))
      res->status = SandboxStatus::timeout;
    else
      res->status = oom_text ? SandboxStatus::memory : SandboxStatus::crashed;
  } else {
    res->status = SandboxStatus::crashed;
  }
}

/// How the run ended: a setup error, the timeout, a lost child, or the program's own status.
void classify(const ChildReport& rep, bool timed_out, int wst, int cpu, const SandboxOptions& opt,
              SandboxResult* res) {
  res->isolation = rep.ns ? (rep.landlock ? "namespaces+landlock" : "namespaces")
                          : (rep.landlock ? "landlock" : "rlimits");
  if (!rep.error_stage.empty()) {
    res->status = SandboxStatus::setup_error;
    res->message = explain(rep.error_stage, rep.error_errno);
  } else if (timed_out) {
    res->status = SandboxStatus::timeout;
    res->signal = SIGKILL;
    res->message = cat("wall-clock timeout after ", opt.timeout_seconds, " s");
  } else if (!rep.have_status) {
    res->status = SandboxStatus::setup_error;
    res->message =
        WIFSIGNALED(wst)
            ? cat("sandbox: the supervising process was killed by signal ", WTERMSIG(wst))
            : cat("sandbox: the supervising process exited with status ",
                  WIFEXITED(wst) ? WEXITSTATUS(wst) : -1, " without a report");
  } else {
    classify_program_status(rep, cpu, res);
  }
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
  check_options(opt);
  const bool root = ::geteuid() == 0;
  WorkDir wd;
  make_work_dir(opt, program, root, &wd);
  const std::string workdir = wd.path.string();

  // Everything the child uses, built before fork.
  const ChildStrings strings(opt, workdir, root);
  const int cpu =
      opt.cpu_seconds > 0 ? opt.cpu_seconds : static_cast<int>(std::ceil(opt.timeout_seconds)) + 1;
  Pipes pipes;
  const ChildPlan plan = make_child_plan(opt, workdir, root, cpu, strings, pipes);

  SandboxResult res;
  const auto start = Clock::now();
  const pid_t self = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    res.message = cat("sandbox: fork failed: ", std::strerror(errno));
    return res;
  }
  if (pid == 0) sandbox_detail::child_main(plan, self);
  ::setpgid(pid, pid);  // also done by the child; whichever runs first
  pipes.close_write_ends();

  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(opt.timeout_seconds));
  const size_t cap = static_cast<size_t>(opt.max_output_bytes);
  Collected c = collect_output(pipes, deadline, cap, &res);
  const int wst = finish_child(pid, pipes, start, &res, &c.status_text);
  if (res.stderr_tail.size() > cap) {
    res.stderr_tail.erase(0, res.stderr_tail.size() - cap);
    res.output_truncated = true;
  }
  classify(parse_report(c.status_text), c.timed_out, wst, cpu, opt, &res);
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
