// What a sandboxed program may see and call: see eval/sandbox_policy.h.
#include "eval/sandbox_policy.h"

#include <sched.h>
#include <seccomp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>

#include "common/errors.h"

namespace qsweep::sandbox_detail {
namespace {

namespace fs = std::filesystem;

/// Directories (or symlinks to them, as with a merged /usr) the interpreter lives in.
constexpr const char* kSystemDirs[] = {"/usr",   "/bin",   "/sbin",  "/lib",
                                       "/lib32", "/lib64", "/libx32"};
/// Files the dynamic loader and Python read (absent ones are left out), and devices.
constexpr const char* kFiles[] = {"/etc/ld.so.cache", "/etc/localtime", "/dev/null",
                                  "/dev/zero",        "/dev/random",    "/dev/urandom"};
/// Debian's sitecustomize.py lives here (a symlink from /usr/lib/python3.X points in).
constexpr const char* kEtcDirs[] = {"/etc/python3"};

bool under_system_dir(const fs::path& p) {
  for (const char* d : kSystemDirs) {
    std::error_code ec;
    const fs::path real = fs::canonical(d, ec);
    if (ec) continue;
    const auto rel = p.lexically_relative(real);
    if (!rel.empty() && *rel.begin() != "..") return true;
  }
  return false;
}

/// The prefix of an interpreter outside the system directories (…/bin/python → …).
fs::path interpreter_prefix(const fs::path& python) {
  fs::path dir = python.parent_path();
  if (dir.filename() == "bin") dir = dir.parent_path();
  return dir;
}

}  // namespace

RootPlan::RootPlan(const std::string& python) {
  std::vector<std::pair<std::string, RootEntry::Kind>> want;
  auto add = [&](const fs::path& p, bool dir_expected) {
    std::error_code ec;
    const auto st = fs::symlink_status(p, ec);
    if (ec || !fs::exists(st)) return;
    for (const auto& [q, k] : want)
      if (q == p.string()) return;
    if (fs::is_symlink(st)) {
      paths.push_back(p.string());
      links.push_back(fs::read_symlink(p, ec).string());
      if (ec) {
        paths.pop_back();
        links.pop_back();
        return;
      }
      want.emplace_back(p.string(), RootEntry::symlink);
    } else {
      paths.push_back(p.string());
      links.emplace_back();
      want.emplace_back(p.string(),
                        dir_expected && fs::is_directory(st) ? RootEntry::dir : RootEntry::file);
    }
  };
  for (const char* d : kSystemDirs) add(d, true);
  for (const char* d : kEtcDirs) add(d, true);
  for (const char* f : kFiles) add(f, false);
  // The interpreter, as named and as resolved: its prefix when it is not a system one
  // (a venv's pyvenv.cfg and site-packages, a pyenv build).
  std::error_code ec;
  for (const fs::path& p : {fs::path(python), fs::canonical(python, ec)}) {
    if (p.empty()) continue;
    const fs::path real_dir = fs::weakly_canonical(p.parent_path(), ec);
    if (!ec && !under_system_dir(real_dir)) add(interpreter_prefix(p), true);
  }
  for (size_t i = 0; i < want.size(); ++i)
    entries.push_back({paths[i].c_str(), links[i].c_str(), want[i].second});
  entries.push_back({nullptr, nullptr, RootEntry::dir});
}

const std::vector<sock_filter>& seccomp_program() {
  static std::once_flag once;
  static std::vector<sock_filter> program;
  static std::string failure;
  std::call_once(once, [] {
    std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(seccomp_init(SCMP_ACT_ALLOW),
                                                         seccomp_release);
    int rc = ctx ? 0 : -ENOMEM;
    auto deny = [&](int err, int nr, unsigned n = 0, const scmp_arg_cmp* a = nullptr) {
      if (rc == 0) rc = seccomp_rule_add_array(ctx.get(), SCMP_ACT_ERRNO(err), nr, n, a);
    };
    deny(EACCES, SCMP_SYS(socket));
    deny(EACCES, SCMP_SYS(socketpair));
    for (int nr : {SCMP_SYS(io_uring_setup),
                   SCMP_SYS(io_uring_enter),
                   SCMP_SYS(io_uring_register),
                   SCMP_SYS(unshare),
                   SCMP_SYS(setns),
                   SCMP_SYS(mount),
                   SCMP_SYS(umount2),
                   SCMP_SYS(pivot_root),
                   SCMP_SYS(mount_setattr),
                   SCMP_SYS(fsopen),
                   SCMP_SYS(fsconfig),
                   SCMP_SYS(fsmount),
                   SCMP_SYS(fspick),
                   SCMP_SYS(move_mount),
                   SCMP_SYS(open_tree),
                   SCMP_SYS(keyctl),
                   SCMP_SYS(add_key),
                   SCMP_SYS(request_key),
                   SCMP_SYS(bpf),
                   SCMP_SYS(perf_event_open),
                   SCMP_SYS(userfaultfd)})
      deny(EPERM, nr);
    deny(ENOSYS, SCMP_SYS(clone3));
    for (const scmp_datum_t flag : {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID,
                                    CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP, CLONE_NEWTIME}) {
      const scmp_arg_cmp a = SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag);
      deny(EPERM, SCMP_SYS(clone), 1, &a);
    }
    int fds[2] = {-1, -1};
    if (rc == 0 && ::pipe(fds) != 0) rc = -errno;
    if (rc == 0) rc = seccomp_export_bpf(ctx.get(), fds[1]);
    if (fds[1] >= 0) ::close(fds[1]);
    std::string bytes;
    char buf[4096];
    for (ssize_t n; rc == 0 && fds[0] >= 0 && (n = ::read(fds[0], buf, sizeof buf)) > 0;)
      bytes.append(buf, static_cast<size_t>(n));
    if (fds[0] >= 0) ::close(fds[0]);
    if (rc != 0 || bytes.empty() || bytes.size() % sizeof(sock_filter) != 0) {
      failure = cat("sandbox: building the seccomp filter failed (libseccomp: ",
                    std::strerror(rc < 0 ? -rc : EINVAL), ")");
      return;
    }
    program.resize(bytes.size() / sizeof(sock_filter));
    std::memcpy(program.data(), bytes.data(), bytes.size());
  });
  QS_THROW_IF_NOT(failure.empty(), failure);
  return program;
}

}  // namespace qsweep::sandbox_detail
