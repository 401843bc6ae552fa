// Runs one untrusted Python program (generated code plus its tests) in a separate,
// isolated process and reports how it ended. Used by the code tasks (HumanEval, MBPP).
//
// Isolation (Linux):
//  * a fresh throw-away working directory (removed afterwards) holding program.py;
//  * new user, mount, network, pid, IPC and UTS namespaces: no network at all (only a
//    loopback that is down); the program is pid 1 of its own pid namespace so everything it
//    forks dies with it;
//  * it sees only a minimal root (pivot_root into a small tmpfs): its interpreter and standard
//    library read-only (/usr, /lib*, /bin, /sbin, the interpreter's prefix when elsewhere,
//    /etc/python3, /etc/ld.so.cache, /etc/localtime), /dev/{null,zero,random,urandom}, a /proc
//    of its pid namespace, and its scratch dir: a private tmpfs of at most `scratch_bytes`
//    and `scratch_files` inodes, mounted at the work directory's path and holding a copy of
//    program.py (so nothing it writes reaches the host disk). No project file, data, $HOME
//    or other /tmp entry exists there (eval/sandbox_policy.h lists the entries);
//  * when the caller is root the program runs as nobody (65534); all capabilities dropped,
//    no_new_privs; Landlock (where the kernel has it) also limits reads to those entries and
//    writes to the scratch dir, and forbids TCP bind/connect; a seccomp filter refuses
//    socket()/socketpair() of every family (EACCES; so no path-based unix socket either),
//    io_uring, new namespaces and mounts (eval/sandbox_policy.h);
//  * rlimits: address space, CPU seconds, processes, file size, open files, no core dumps;
//  * a wall-clock timeout that kills the whole process tree; stdout/stderr are captured with
//    bounded size. The caller never hangs: pipes are polled against the deadline.
//
// Where namespaces are unavailable (e.g. a container without CAP_SYS_ADMIN whose seccomp
// profile forbids unshare), the default `SandboxIsolation::require_namespaces` refuses to run
// (status setup_error, message says why and what to change); `best_effort` then runs with
// what is left (nobody + Landlock + seccomp + rlimits + process group kill), which is weaker:
// the work dir is on the host disk (only RLIMIT_FSIZE per file, no total cap), reads and
// writes are confined only when Landlock is there, and processes that leave the process group
// can outlive the timeout.
//
// Thread-safe: several sandboxes may run at once from different threads.
#pragma once

#include <cstdint>
#include <string>

namespace qsweep {

enum class SandboxStatus {
  ok,           ///< exited with status 0
  failed,       ///< exited with a nonzero status (an assertion, an exception, a syntax error)
  timeout,      ///< wall-clock timeout or CPU limit
  memory,       ///< ran out of its address-space limit (MemoryError or killed allocating)
  crashed,      ///< killed by a signal (segfault, abort, ...)
  setup_error,  ///< the sandbox could not be set up; the program did not run
};
const char* to_string(SandboxStatus s);

enum class SandboxIsolation {
  require_namespaces,  ///< default: refuse (setup_error) when namespaces are unavailable
  best_effort,         ///< use namespaces when possible, else the weaker fallback
  no_namespaces,       ///< always the weaker fallback (for tests of that path)
};

struct SandboxOptions {
  std::string python = "/usr/bin/python3";     ///< absolute path of the interpreter
  double timeout_seconds = 10;                 ///< wall clock, interpreter start included
  int64_t memory_bytes = int64_t{1} << 30;     ///< RLIMIT_AS
  int cpu_seconds = 0;                         ///< RLIMIT_CPU; 0 = ceil(timeout) + 1
  int max_processes = 32;                      ///< RLIMIT_NPROC (per sandbox with namespaces)
  int64_t max_file_bytes = int64_t{64} << 20;  ///< RLIMIT_FSIZE
  int64_t max_output_bytes = 64 << 10;         ///< stdout head and stderr tail kept
  /// The scratch dir's total size (its tmpfs size=; with namespaces). Writing past it fails
  /// with ENOSPC (OSError in Python): the run is reported failed.
  int64_t scratch_bytes = int64_t{64} << 20;
  int64_t scratch_files = 4096;  ///< inodes in the scratch dir (tmpfs nr_inodes=)
  std::string work_root;         ///< parent of the work dirs; "" = $TMPDIR or /tmp
  SandboxIsolation isolation = SandboxIsolation::require_namespaces;
};

struct SandboxResult {
  SandboxStatus status = SandboxStatus::setup_error;
  int exit_code = -1;       ///< when the program exited
  int signal = 0;           ///< when it was killed by a signal (SIGKILL after a timeout)
  double seconds = 0;       ///< wall clock
  std::string stdout_text;  ///< the first max_output_bytes of stdout
  std::string stderr_tail;  ///< the last max_output_bytes of stderr
  bool output_truncated = false;
  /// What was applied: "namespaces+landlock", "namespaces", "landlock", "rlimits".
  std::string isolation;
  std::string message;  ///< for setup_error: what failed and what to do
  bool passed() const { return status == SandboxStatus::ok; }
};

/// Runs `program` (Python source, written to program.py in the work dir) and waits for it.
/// Throws Error only for bad options or when no work directory can be created; everything
/// the program does is reported in the result.
SandboxResult run_sandboxed(const std::string& program, const SandboxOptions& opt = {});

struct SandboxProbe {
  bool usable = false;
  std::string isolation;  ///< what a run gets (see SandboxResult::isolation)
  std::string message;    ///< why it is not usable
};
/// Runs a trivial program once per (python, isolation) and caches the answer.
SandboxProbe probe_sandbox(const SandboxOptions& opt = {});

}  // namespace qsweep
