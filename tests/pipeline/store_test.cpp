// pipeline/store: the content hash (golden values computed independently with the xxhash
// package's CLI, `xxhsum -H2`: XXH3-128, canonical hex), the file-hash cache keyed by
// (path, device, inode, size, mtime, ctime), the store's format check, and the artifact store's
// atomic begin/commit/abort and its clean-up of temporaries left by killed runs.
#include "pipeline/store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::vector<std::string> temporaries(const std::string& root) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(root))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) out.push_back(e.path().string());
  return out;
}

ino_t inode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

// ---- hash_hex -------------------------------------------------------------------------

TEST(StoreHash, HashHexMatchesGoldenValues) {
  // Keys name artifacts on disk: a change here silently invalidates every store.
  // printf '' | xxhsum -H2, printf qsweep | xxhsum -H2, ...
  EXPECT_EQ(hash_hex(""), "99aa06d3014798d86001c324468d497f");
  EXPECT_EQ(hash_hex("qsweep"), "5113d8b60d62c56572cf6c4903ee4827");
  EXPECT_EQ(hash_hex("qsweeq"), "4eefc295567c523063f3519500035ae0");
}

TEST(StoreHash, HashHexIsSensitiveToEveryByteAndToLength) {
  const std::string base = "quantize:gptq-b4-g128-code {\"bits\":4}";
  const std::string h = hash_hex(base);
  EXPECT_EQ(h.size(), 32u);
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
  for (size_t i = 0; i < base.size(); ++i) {
    std::string s = base;
    s[i] = char(s[i] ^ 1);
    EXPECT_NE(hash_hex(s), h) << "byte " << i;
  }
  EXPECT_NE(hash_hex(base + std::string(1, '\0')), h);
  EXPECT_NE(hash_hex(base.substr(0, base.size() - 1)), h);
}

// ---- hash_files -----------------------------------------------------------------------

TEST(StoreHashFiles, MatchesGoldenValueAndDependsOnOrder) {
  const std::string dir = test::make_temp_dir("store-hf-golden");
  // xxhsum -H2 a b: aef7d733..., 2d974a6d...; the set's hash is xxhsum -H2 of the two hex
  // digests concatenated (a's, then b's).
  write(dir + "/a", "hello, world\n");
  write(dir + "/b", "second file");
  const std::string cache = dir + "/cache.json";
  EXPECT_EQ(hash_files({dir + "/a", dir + "/b"}, cache), "4f75ef2980f6051182ba60cd84319f1c");
  EXPECT_EQ(hash_files({dir + "/a"}, cache), "3bdf9cb16b46d697428d4f15deed8f2d");
  EXPECT_NE(hash_files({dir + "/b", dir + "/a"}, cache), "4f75ef2980f6051182ba60cd84319f1c");
  // The same answers with a cold cache and with the cache file gone.
  fs::remove(cache);
  EXPECT_EQ(hash_files({dir + "/a", dir + "/b"}, dir + "/other-cache.json"),
            "4f75ef2980f6051182ba60cd84319f1c");
  EXPECT_THROW(hash_files({dir + "/missing"}, cache), Error);
}

TEST(StoreHashFiles, ContentChangeWithNewSizeChangesTheHash) {
  const std::string dir = test::make_temp_dir("store-hf-size");
  const std::string f = dir + "/model.safetensors", cache = dir + "/cache.json";
  write(f, "weights v1");
  const std::string h1 = hash_files({f}, cache);
  const auto mtime = fs::last_write_time(f);
  write(f, "weights v1 plus more");
  fs::last_write_time(f, mtime);  // only the size tells them apart
  EXPECT_NE(hash_files({f}, cache), h1);
}

TEST(StoreHashFiles, ContentChangeWithSameSizeButNewMtimeChangesTheHash) {
  const std::string dir = test::make_temp_dir("store-hf-mtime");
  const std::string f = dir + "/model.safetensors", cache = dir + "/cache.json";
  write(f, "weights v1");
  const std::string h1 = hash_files({f}, cache);
  const auto mtime = fs::last_write_time(f);
  write(f, "weights v2");
  fs::last_write_time(f, mtime + std::chrono::seconds(1));
  const std::string h2 = hash_files({f}, cache);
  EXPECT_NE(h2, h1);
  EXPECT_EQ(h2, hash_files({f}, dir + "/fresh-cache.json"));  // the new content's hash
}

TEST(StoreHashFiles, ACacheHitDoesNotReadTheFile) {
  const std::string dir = test::make_temp_dir("store-hf-hit");
  const std::string f = dir + "/model.safetensors", cache = dir + "/cache.json";
  write(f, "weights v1");
  const std::string h1 = hash_files({f}, cache);
  ASSERT_TRUE(fs::exists(cache));
  // A hit takes the cached hash without reading the file (the point of the cache for
  // multi-gigabyte checkpoints): plant another hash under the same stamp and get it back.
  nlohmann::json c = nlohmann::json::parse(read_text_file(cache));
  const std::string planted = "0123456789abcdef0123456789abcdef";
  for (auto& [path, entry] : c.items()) entry["hash"] = planted;
  write(cache, c.dump());
  const ino_t cache_inode = inode(cache);
  EXPECT_EQ(hash_files({f}, cache), hash_files({f}, cache));
  EXPECT_NE(hash_files({f}, cache), h1);  // the planted entry was used: nothing was read
  EXPECT_EQ(inode(cache), cache_inode);   // nor was the cache rewritten
  EXPECT_EQ(hash_files({f}, dir + "/fresh-cache.json"), h1);
}

TEST(StoreHashFiles, AFileRewrittenInPlaceWithSizeAndMtimeRestoredIsRehashed) {
  // Same path, same size, same mtime (to the nanosecond), other bytes: what a careless copy
  // tool or `touch -r` leaves. The stamp's ctime (which utimensat cannot set) catches it.
  const std::string dir = test::make_temp_dir("store-hf-inplace");
  const std::string f = dir + "/model.safetensors", cache = dir + "/cache.json";
  write(f, "weights v1");
  const std::string h1 = hash_files({f}, cache);
  const auto mtime = fs::last_write_time(f);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a later ctime
  {
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);  // in place: same inode
    io.seekp(9);
    io << '2';
  }
  fs::last_write_time(f, mtime);
  ASSERT_EQ(fs::file_size(f), 10u);
  ASSERT_EQ(read_text_file(f), "weights v2");
  const std::string h2 = hash_files({f}, cache);
  EXPECT_NE(h2, h1);
  EXPECT_EQ(h2, hash_files({f}, dir + "/fresh-cache.json"));
}

TEST(StoreHashFiles, ATornCacheIsOnlyACache) {
  const std::string dir = test::make_temp_dir("store-hf-torn");
  const std::string f = dir + "/a", cache = dir + "/cache.json";
  write(f, "hello, world\n");
  write(cache, "{\"truncated");
  EXPECT_EQ(hash_files({f}, cache), "3bdf9cb16b46d697428d4f15deed8f2d");
}

// ---- ArtifactStore --------------------------------------------------------------------

TEST(ArtifactStore, BeginCommitHasPath) {
  const std::string root = test::make_temp_dir("store-commit") + "/store";
  const ArtifactStore s(root);
  EXPECT_TRUE(fs::is_directory(root));
  EXPECT_EQ(s.path("k1"), root + "/k1");
  EXPECT_FALSE(s.has("k1"));
  const std::string tmp = s.begin("k1");
  EXPECT_EQ(fs::path(tmp).parent_path(), fs::path(root));
  EXPECT_EQ(fs::path(tmp).filename().string().rfind(".tmp-", 0), 0u) << tmp;
  EXPECT_TRUE(fs::is_directory(tmp));
  // A temporary with content, even complete, is not the artifact until committed.
  write(tmp + "/metrics.json", "{\"ppl\": 1}");
  EXPECT_FALSE(s.has("k1"));
  EXPECT_FALSE(fs::exists(s.path("k1")));
  s.commit("k1", tmp);
  EXPECT_TRUE(s.has("k1"));
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_EQ(read_text_file(s.path("k1") + "/metrics.json"), "{\"ppl\": 1}");
  EXPECT_FALSE(s.has("k2"));
  // Two begins for one key never share a directory.
  const std::string a = s.begin("k2"), b = s.begin("k2");
  EXPECT_NE(a, b);
}

TEST(ArtifactStore, AbortDiscardsTheTemporary) {
  const std::string root = test::make_temp_dir("store-abort");
  const ArtifactStore s(root);
  const std::string tmp = s.begin("k");
  write(tmp + "/half", "partial");
  s.abort(tmp);
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_FALSE(s.has("k"));
  EXPECT_TRUE(temporaries(root).empty());
}

TEST(ArtifactStore, CommitAfterAnotherWriterFinishedFirstKeepsTheFirstAndDiscardsTheTemporary) {
  const std::string root = test::make_temp_dir("store-race");
  const ArtifactStore s(root);
  const std::string first = s.begin("k"), second = s.begin("k");
  write(first + "/out", "first");
  write(second + "/out", "second");
  s.commit("k", first);
  EXPECT_NO_THROW(s.commit("k", second));
  EXPECT_TRUE(s.has("k"));
  EXPECT_EQ(read_text_file(s.path("k") + "/out"), "first");
  EXPECT_FALSE(fs::exists(second));
  EXPECT_TRUE(temporaries(root).empty());
}

TEST(ArtifactStore, TheNextStoreRemovesTemporariesOfAKilledRun) {
  const std::string root = test::make_temp_dir("store-kill");
  {
    const ArtifactStore s(root);
    const std::string done = s.begin("done");
    write(done + "/out", "complete");
    s.commit("done", done);
  }
  // A writer killed with SIGKILL halfway through its temporary.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const ArtifactStore s(root);
    const std::string tmp = s.begin("half");
    write(tmp + "/model.safetensors", "partial bytes");
    ::raise(SIGKILL);
    ::_exit(0);  // not reached
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  ASSERT_EQ(temporaries(root).size(), 1u);   // the killed writer's leftover
  EXPECT_FALSE(fs::exists(root + "/half"));  // never an artifact, even before the clean-up
  const ArtifactStore next(root);
  EXPECT_TRUE(temporaries(root).empty());
  EXPECT_FALSE(next.has("half"));
  EXPECT_TRUE(next.has("done"));  // finished artifacts are kept
  EXPECT_EQ(read_text_file(next.path("done") + "/out"), "complete");
}

// ---- Concurrent runs (issue #13): writers in temporary names, the out-dir lock ---------

/// This boot's id as the store's temporaries record it: the first 8 hex digits.
std::string this_boot() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string s;
  std::getline(in, s);
  s.erase(std::remove(s.begin(), s.end(), '-'), s.end());
  return s.substr(0, 8);
}

TEST(ArtifactStore, OnlyTemporariesOfWritersThatAreGoneAreRemoved) {
  const std::string root = test::make_temp_dir("store-live");
  // A live writer in another process: it begins a temporary and waits on a pipe.
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t live = ::fork();
  ASSERT_GE(live, 0);
  if (live == 0) {
    ::close(go[1]);  // a parent that dies lets the child's read end
    const ArtifactStore s(root);
    write(s.begin("livekey") + "/half", "writing");
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    (void)!::read(go[0], &c, 1);
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  // A writer that is gone (exited without cleaning up).
  const pid_t dead = ::fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) {
    const ArtifactStore s(root);
    s.begin("deadkey");
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(dead, &status, 0), dead);
  // This process's own temporary, and forged ones: its pid with another start time (a
  // reused pid), its pid and start time on another boot, and the old name without a writer.
  const ArtifactStore me(root, ArtifactStore::Access::Read);  // removes nothing yet
  const std::string mine = me.begin("minekey");
  const std::string tag =
      fs::path(mine).filename().string();  // .tmp-minekey-pid..-start..-boot..-N
  const std::string pid = std::to_string(::getpid());
  ASSERT_NE(tag.find("-pid" + pid + "-start"), std::string::npos) << tag;
  ASSERT_NE(tag.find("-boot" + this_boot() + "-"), std::string::npos) << tag;
  const std::string start =
      tag.substr(tag.find("-start") + 6, tag.find("-boot") - tag.find("-start") - 6);
  fs::create_directories(root + "/.tmp-reused-pid" + pid + "-start" + start + "1-boot" +
                         this_boot() + "-0");
  fs::create_directories(root + "/.tmp-reboot-pid" + pid + "-start" + start + "-boot" +
                         (this_boot() == "00000000" ? "11111111" : "00000000") + "-0");
  fs::create_directories(root + "/.tmp-abc-" + pid + "-3");  // old name, live pid
  fs::create_directories(root + "/.tmp-def-999999999-3");    // old name, no such pid
  EXPECT_EQ(temporaries(root).size(), 7u);

  const ArtifactStore next(root);
  std::vector<std::string> left;
  for (const auto& t : temporaries(root)) left.push_back(fs::path(t).filename().string());
  std::sort(left.begin(), left.end());
  ASSERT_EQ(left.size(), 3u) << ::testing::PrintToString(left);
  EXPECT_EQ(left[0], ".tmp-abc-" + pid + "-3");
  EXPECT_EQ(left[1].rfind(".tmp-livekey-pid" + std::to_string(live) + "-", 0), 0u) << left[1];
  EXPECT_EQ(left[2], tag);
  EXPECT_EQ(read_text_file(root + "/" + left[1] + "/half"), "writing");

  // When the live writer ends, its temporary is a dead writer's.
  (void)!::write(go[1], &c, 1);
  ASSERT_EQ(::waitpid(live, &status, 0), live);
  const ArtifactStore after(root);
  EXPECT_EQ(temporaries(root).size(), 2u);
}

TEST(ArtifactStore, ReadAccessCreatesAndDeletesNothing) {
  const std::string dir = test::make_temp_dir("store-read");
  const ArtifactStore none(dir + "/store", ArtifactStore::Access::Read);
  EXPECT_FALSE(none.has("k"));
  EXPECT_FALSE(fs::exists(dir + "/store"));
  fs::create_directories(dir + "/store/.tmp-k-pid999999999-start1-boot0-0");
  const ArtifactStore read(dir + "/store", ArtifactStore::Access::Read);
  EXPECT_EQ(temporaries(dir + "/store").size(), 1u);
  const ArtifactStore write(dir + "/store");
  EXPECT_EQ(temporaries(dir + "/store").size(), 0u);
}

TEST(ArtifactStore, ANewStoreRecordsItsFormatAndAnOlderStoreIsRefused) {
  const std::string dir = test::make_temp_dir("store-format");
  {
    const ArtifactStore fresh(dir + "/store");
    EXPECT_EQ(read_text_file(dir + "/store/FORMAT"), "qsweep-store-v3\n");
  }
  EXPECT_NO_THROW(ArtifactStore(dir + "/store"));
  // A v2 store: artifacts, no FORMAT file. Refused by every access, the message naming the
  // directory and the fix; nothing in it is touched.
  fs::create_directories(dir + "/old/store/calib-552d3fb62b3c344f");
  for (auto access :
       {ArtifactStore::Access::Write, ArtifactStore::Access::Read, ArtifactStore::Access::Node}) {
    try {
      ArtifactStore old(dir + "/old/store", access);
      ADD_FAILURE() << "an old store was accepted";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(dir + "/old/store"), std::string::npos) << m;
      EXPECT_NE(m.find("qsweep-store-v2"), std::string::npos) << m;
      EXPECT_NE(m.find("Remove that directory"), std::string::npos) << m;
    }
  }
  EXPECT_FALSE(fs::exists(dir + "/old/store/FORMAT"));
  // Another format named in FORMAT: refused the same way.
  write(dir + "/store/FORMAT", "qsweep-store-v9\n");
  EXPECT_THROW(ArtifactStore(dir + "/store", ArtifactStore::Access::Read), Error);
}

TEST(OutDirLock, ASecondHolderWaitsNamingTheFirstsPid) {
  const std::string dir = test::make_temp_dir("lock");
  std::optional<OutDirLock> first;
  first.emplace(dir);
  EXPECT_EQ(read_text_file(dir + "/.lock"), std::to_string(::getpid()));
  std::atomic<bool> acquired{false};
  std::string message;
  std::thread second([&] {
    const OutDirLock l(dir, [&](const std::string& m) { message = m; });
    acquired = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(acquired);  // waits while the first is held
  first.reset();
  second.join();
  EXPECT_TRUE(acquired);
  EXPECT_EQ(message, dir + " is in use by another qsweep run (pid " + std::to_string(::getpid()) +
                         "); waiting for it to finish");
  // Free again: no wait, no message.
  message.clear();
  {
    const OutDirLock again(dir, [&](const std::string& m) { message = m; });
  }
  EXPECT_EQ(message, "");
}

/// The message prepare_output_dir throws for `dir`, or "(no error)".
std::string out_error(const std::string& dir) {
  try {
    prepare_output_dir(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(PrepareOutputDir, NamesThePathAndTheProblem) {
  const std::string dir = test::make_temp_dir("outdir");
  write(dir + "/file", "x");
  EXPECT_EQ(out_error(dir + "/file"),
            "--out '" + dir + "/file': is a file, not a directory; give a directory path");
  EXPECT_EQ(out_error(dir + "/file/sub/out"),
            "--out '" + dir + "/file/sub/out': cannot be created: '" + dir +
                "/file' is a file, not a directory; give a directory path");
  EXPECT_EQ(out_error("/dev/null"),
            "--out '/dev/null': is a character device, not a directory; give a directory path");
  EXPECT_EQ(out_error("/dev/null/x"),
            "--out '/dev/null/x': cannot be created: '/dev/null' is a "
            "character device, not a directory; give a directory path");
  EXPECT_EQ(out_error(dir + "/new/nested"), "(no error)");
  fs::create_directories(dir + "/blocked");
  write(dir + "/blocked/store", "not a directory");
  EXPECT_EQ(out_error(dir + "/blocked"), "--out '" + dir + "/blocked': '" + dir +
                                             "/blocked/store' is in the way: it should be the "
                                             "store directory; remove it");
  fs::create_directories(dir + "/locked/.lock");
  EXPECT_EQ(out_error(dir + "/locked"), "--out '" + dir + "/locked': '" + dir +
                                            "/locked/.lock' is in the way: it should be the lock "
                                            "file; remove it");
  EXPECT_TRUE(fs::is_directory(dir + "/new/nested"));
  fs::create_directories(dir + "/ro");
  fs::permissions(dir + "/ro", fs::perms(0555));
  // Root writes anywhere: then the check runs in a child that dropped to nobody.
  const auto ro_checks = [&] {
    int bad = 0;
    bad += out_error(dir + "/ro") !=
           "--out '" + dir + "/ro': the directory is not writable; give a writable directory";
    bad += out_error(dir + "/ro/a/b") != "--out '" + dir + "/ro/a/b': cannot be created: '" + dir +
                                             "/ro' is not writable; give a writable directory";
    bad += fs::exists(dir + "/ro/a");
    return bad;
  };
  if (::geteuid() != 0) {
    EXPECT_EQ(ro_checks(), 0) << out_error(dir + "/ro");
  } else {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(100);
      if (::access((dir + "/ro").c_str(), W_OK) == 0) ::_exit(101);
      ::_exit(ro_checks());
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) >= 100) GTEST_SKIP() << "cannot drop to an unprivileged user here";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "read-only directory checks failed as nobody";
  }
  fs::permissions(dir + "/ro", fs::perms(0755));
}

}  // namespace
}  // namespace qsweep
