// The artifact store: one directory per node output, named by the node's
// content key, under <out>/store/. A key is a hash of everything that
// determines the output (model file hashes, the node's configuration, its
// upstream keys and a format version), so an artifact that exists is valid and
// re-running a finished sweep does no work. Writes are atomic: a node writes a
// temporary directory and renames it into place when complete, so a run killed
// with SIGKILL leaves only temporaries, which the next run removes. A temporary's name
// carries its writer (pid, process start time, boot id), so a run removes only those of
// writers that are gone, never another live process's.
//
// One run at a time per output directory: `OutDirLock` (flock(2) on <out>/.lock) is held
// for the whole run; a second run waits for it, saying which pid holds it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace qsweep {

/// 128-bit content hash (XXH3-128, Debian's libxxhash), as 32 hex digits (high 64 bits first).
std::string hash_hex(const std::string& bytes);
/// XXH3-128 of a file's contents (memory-mapped), as 32 hex digits.
std::string hash_file(const std::string& path);

/// Hash of a set of files' contents (in the given order): hash_hex of their hash_file values
/// concatenated. Each file's hash is cached in `cache_file` under its canonical path with a
/// stamp of (device, inode, size, mtime, ctime — times to the nanosecond): a file rewritten
/// in place with its mtime restored still gets a new ctime and is rehashed. What is trusted:
/// that a file whose stamp is unchanged has unchanged content.
std::string hash_files(const std::vector<std::string>& files, const std::string& cache_file);

/// Makes `dir` an existing, writable directory (creating it and its parents), or throws
/// Error("--out 'DIR': problem") naming the path at fault: a file or device (/dev/null)
/// where a directory is needed, a path under a file, a directory that is not writable
/// or on a read-only file system. Nothing is created when the check fails.
void prepare_output_dir(const std::string& dir);

/// An exclusive lock on an output directory: flock(2) on <dir>/.lock, held for this
/// object's lifetime (the kernel drops it when the process dies, even by SIGKILL). The
/// holder's pid is written in the file; when another process (or another lock object)
/// holds it, `on_wait` gets a one-line message naming that pid and the constructor blocks
/// until the lock is free. `dir` must exist (prepare_output_dir).
class OutDirLock {
 public:
  explicit OutDirLock(const std::string& dir,
                      const std::function<void(const std::string&)>& on_wait = {});
  ~OutDirLock();
  OutDirLock(const OutDirLock&) = delete;
  OutDirLock& operator=(const OutDirLock&) = delete;

 private:
  int fd_ = -1;
};

/// Whether the process that wrote a temporary named by ArtifactStore::begin still runs:
/// the same boot, the pid exists and its start time is the one recorded (so a reused pid
/// counts as gone). `name` is the temporary's file name; a name that records no writer
/// is from no live writer.
bool temporary_writer_alive(const std::string& name);

class ArtifactStore {
 public:
  /// Read: only looks (`qsweep plan`: creates and deletes nothing). Write: creates <root>
  /// and removes the temporaries whose writer is gone (killed runs); a live writer's are
  /// kept. A run opens it for writing under its OutDirLock. Node: writes artifacts but
  /// removes no temporaries (a Slurm job on another machine cannot tell whether a writer on
  /// a third machine is alive). Every access refuses a store of another format: <root>/FORMAT
  /// names it (detail::kStoreFormat); a non-empty store without it is from before v3. The
  /// Error names the directory and the fix (remove it, or use another --out).
  enum class Access { Write, Read, Node };
  explicit ArtifactStore(std::string root, Access access = Access::Write);
  const std::string& root() const { return root_; }
  /// The final directory of `key` (exists only when complete).
  std::string path(const std::string& key) const;
  bool has(const std::string& key) const;
  /// A fresh temporary directory to build `key` in:
  /// <root>/.tmp-<key>-pid<P>-start<S>-boot<B>-<n>, naming this process as its writer.
  std::string begin(const std::string& key) const;
  /// Renames the temporary directory into place (replacing nothing: if another
  /// writer finished first, the temporary is discarded).
  void commit(const std::string& key, const std::string& tmp_dir) const;
  /// Discards a temporary directory after a failure.
  void abort(const std::string& tmp_dir) const;

 private:
  std::string root_;
};

}  // namespace qsweep
