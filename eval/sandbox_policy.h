// What a sandboxed program may see and call (internal to eval/sandbox.cpp), computed in the
// parent before fork so that the child only copies pointers:
//  * the entries of its minimal root: the interpreter's directories read-only (/usr, /lib*,
//    /bin, /sbin, the interpreter's own prefix when it lies elsewhere), the few /etc files the
//    dynamic loader and Python read, /dev/null, /dev/zero, /dev/random, /dev/urandom;
//  * the seccomp filter (libseccomp, exported once as BPF): no socket()/socketpair() of any
//    family (EACCES), no io_uring (it can open sockets itself), no new namespaces or mounts
//    (a nested user namespace could mount an unbounded tmpfs), no keyrings, bpf, perf,
//    userfaultfd; clone3 answers ENOSYS so that glibc falls back to clone, whose flags are
//    checked.
#pragma once

#include <string>
#include <vector>

#include "eval/sandbox_child.h"

namespace qsweep::sandbox_detail {

/// The root entries for `python` (an absolute path), with their strings.
struct RootPlan {
  std::vector<std::string> paths, links;
  std::vector<RootEntry> entries;  ///< points into paths/links: do not copy a RootPlan
  explicit RootPlan(const std::string& python);
  RootPlan(const RootPlan&) = delete;
  RootPlan& operator=(const RootPlan&) = delete;
};

/// The BPF program (built once, shared by every sandbox); throws Error if libseccomp fails.
const std::vector<sock_filter>& seccomp_program();

}  // namespace qsweep::sandbox_detail
