// pipeline/store: the content hash (golden values computed independently, in Python, from
// the documented construction: FNV-1a 64 then the splitmix64 finaliser), the file-hash cache
// keyed by (path, size, mtime), and the artifact store's atomic begin/commit/abort and its
// clean-up of temporaries left by killed runs.
#include "pipeline/store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
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
  EXPECT_EQ(hash_hex(""), "552d3fb62b3c344f");
  EXPECT_EQ(hash_hex("qsweep"), "b89917909eabec38");
  EXPECT_EQ(hash_hex("qsweeq"), "915fb81e23a7ec6d");
}

TEST(StoreHash, HashHexIsSensitiveToEveryByteAndToLength) {
  const std::string base = "quantize:gptq-b4-g128-code {\"bits\":4}";
  const std::string h = hash_hex(base);
  EXPECT_EQ(h.size(), 16u);
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
  write(dir + "/a", "hello, world\n");  // one 8-byte word + a 5-byte tail
  write(dir + "/b", "second file");
  const std::string cache = dir + "/cache.json";
  EXPECT_EQ(hash_files({dir + "/a", dir + "/b"}, cache), "f4e91a9557692cbb");
  EXPECT_EQ(hash_files({dir + "/a"}, cache), "5014d5f5725401b2");
  EXPECT_NE(hash_files({dir + "/b", dir + "/a"}, cache), "f4e91a9557692cbb");
  // The same answers with a cold cache and with the cache file gone.
  fs::remove(cache);
  EXPECT_EQ(hash_files({dir + "/a", dir + "/b"}, dir + "/other-cache.json"), "f4e91a9557692cbb");
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
  const ino_t cache_inode = inode(cache);
  // Same size, same mtime, other bytes: only a read could notice. A hit must not read
  // (that is the point of the cache for multi-gigabyte checkpoints) ...
  const auto mtime = fs::last_write_time(f);
  write(f, "weights v2");
  fs::last_write_time(f, mtime);
  EXPECT_EQ(hash_files({f}, cache), h1);
  // ... nor rewrite the cache (write_file_atomic would replace its inode).
  EXPECT_EQ(inode(cache), cache_inode);
  // Without the cache the file is read and the new content shows.
  EXPECT_NE(hash_files({f}, dir + "/fresh-cache.json"), h1);
}

TEST(StoreHashFiles, ATornCacheIsOnlyACache) {
  const std::string dir = test::make_temp_dir("store-hf-torn");
  const std::string f = dir + "/a", cache = dir + "/cache.json";
  write(f, "hello, world\n");
  write(cache, "{\"truncated");
  EXPECT_EQ(hash_files({f}, cache), "5014d5f5725401b2");
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

}  // namespace
}  // namespace qsweep
