// The artifact store: one directory per node output, named by the node's
// content key, under <out>/store/. A key is a hash of everything that
// determines the output (model file hashes, the node's configuration, its
// upstream keys and a format version), so an artifact that exists is valid and
// re-running a finished sweep does no work. Writes are atomic: a node writes a
// temporary directory and renames it into place when complete, so a run killed
// with SIGKILL leaves only temporaries, which the next run removes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qsweep {

/// 64-bit content hash (FNV-1a over bytes, then a final avalanche), as 16 hex digits.
std::string hash_hex(const std::string& bytes);

/// Hash of a set of files' contents (in the given order), cached by (path, size,
/// mtime) in `cache_file` so that a multi-gigabyte checkpoint is read once.
std::string hash_files(const std::vector<std::string>& files, const std::string& cache_file);

class ArtifactStore {
 public:
  /// Opens (creating) <root>; removes temporaries left by killed runs.
  explicit ArtifactStore(std::string root);
  const std::string& root() const { return root_; }
  /// The final directory of `key` (exists only when complete).
  std::string path(const std::string& key) const;
  bool has(const std::string& key) const;
  /// A fresh temporary directory to build `key` in.
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
