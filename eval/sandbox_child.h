// The sandbox's child side (internal to eval/sandbox.cpp): the process forked by
// run_sandboxed isolates itself (uid, namespaces), forks the program's process, which
// confines itself (read-only filesystem, rlimits, no_new_privs, Landlock, no capabilities)
// and execs Python; the child reports the program's wait status.
// Between fork and exec only async-signal-safe calls are made: no allocation.
//
// Reports go to fd 3 (the status pipe), one line each, "<tag> <key> <value>\n":
//   E <stage> <errno>   setup failed at <stage>; the program did not run
//   W <stage> <errno>   a weaker fallback was taken (namespaces unavailable)
//   I <key> <value>     what was applied: "namespaces" 0/1, "landlock" <ABI>, "proc" 0/1
//   S status <wstatus>  the program's wait status (the last line of a normal run)
#pragma once

#include <linux/filter.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <cstddef>

namespace qsweep::sandbox_detail {

inline constexpr uid_t kNobody = 65534;

/// One entry of the program's minimal root (with namespaces): `path` on the host appears at
/// the same path inside, read-only (a directory or a file bound, or a symlink recreated).
struct RootEntry {
  enum Kind { dir, file, symlink };
  const char* path = nullptr;  ///< nullptr ends the list
  const char* link = nullptr;  ///< the symlink's target (kind symlink)
  Kind kind = dir;
};

/// Everything the child needs, prepared before fork (no allocation after it).
struct ChildPlan {
  const char* workdir = nullptr;
  const char* python = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* program = nullptr;        ///< program.py's file name in workdir
  const RootEntry* root = nullptr;      ///< the minimal root's entries (namespaces only)
  const char* root_tmpfs = nullptr;     ///< mount options of the root's own tmpfs
  const char* scratch_tmpfs = nullptr;  ///< mount options of the scratch tmpfs (size cap)
  const sock_filter* seccomp = nullptr;
  unsigned short seccomp_len = 0;
  bool try_namespaces = true;
  bool require_namespaces = true;
  bool drop_to_nobody = false;
  const char* uid_map = nullptr;
  const char* gid_map = nullptr;
  rlim_t memory = 0, cpu = 0, nproc = 0, fsize = 0;
  int out_w = -1, err_w = -1, status_w = -1;
};

/// The forked child's whole life: never returns (execs nothing itself; exits after
/// reporting the program's status). `parent` is the pid of the process that forked it.
[[noreturn]] void child_main(const ChildPlan& p, pid_t parent);

}  // namespace qsweep::sandbox_detail
