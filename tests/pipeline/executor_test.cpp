// The DAG executor with a fake workload: dependency order, the job limit, the
// memory budget, and failure isolation (ninja's habit: assert how much work ran).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "common/errors.h"
#include "pipeline/executor.h"

namespace qsweep {
namespace {

struct Tracker {
  std::mutex mu;
  int running = 0, max_running = 0;
  int64_t mem = 0, max_mem = 0;
  std::vector<int> order;
};

std::function<void(int)> work(const std::vector<DagNode>& nodes, Tracker& t,
                              std::set<int> failing = {}) {
  return [&nodes, &t, failing](int i) {
    {
      std::lock_guard<std::mutex> g(t.mu);
      ++t.running;
      t.mem += nodes[size_t(i)].memory_bytes;
      t.max_running = std::max(t.max_running, t.running);
      t.max_mem = std::max(t.max_mem, t.mem);
      t.order.push_back(i);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::lock_guard<std::mutex> g(t.mu);
    --t.running;
    t.mem -= nodes[size_t(i)].memory_bytes;
    if (failing.count(i)) throw std::runtime_error("boom");
  };
}

// 0 → {1, 2}; 1 → 3; 2 → 4; 5 independent and cached.
std::vector<DagNode> diamond(int64_t mem) {
  return {{"a", {}, false, mem},  {"b", {0}, false, mem}, {"c", {0}, false, mem},
          {"d", {1}, false, mem}, {"e", {2}, false, mem}, {"f", {}, true, mem}};
}

TEST(Executor, RunsInDependencyOrderWithinTheJobLimit) {
  const auto nodes = diamond(1);
  Tracker t;
  ExecutorOptions o;
  o.jobs = 2;
  o.progress = false;
  const auto r = execute_dag(nodes, work(nodes, t), o);
  EXPECT_EQ(t.order.size(), 5u);  // the cached node never runs
  EXPECT_EQ(r[5].status, NodeStatus::Cached);
  EXPECT_EQ(t.order[0], 0);
  EXPECT_LE(t.max_running, 2);
  EXPECT_EQ(t.max_running, 2);  // b and c (then d and e) do run side by side
  for (int i = 0; i < 5; ++i) EXPECT_EQ(r[size_t(i)].status, NodeStatus::Done);
}

TEST(Executor, MemoryBudgetSerializes) {
  const auto nodes = diamond(600);
  Tracker t;
  ExecutorOptions o;
  o.jobs = 4;
  o.max_memory_bytes = 1000;  // two 600-byte nodes do not fit together
  o.progress = false;
  execute_dag(nodes, work(nodes, t), o);
  EXPECT_EQ(t.max_running, 1);
  EXPECT_LE(t.max_mem, 1000);
}

// Three GPU nodes and three CPU nodes, all independent, six jobs and one GPU: the GPU nodes
// run one at a time, the CPU nodes side by side (and beside the GPU node).
TEST(Executor, NeverMoreGpuNodesAtOnceThanGpus) {
  std::vector<DagNode> nodes;
  for (int i = 0; i < 6; ++i) nodes.push_back({cat(i < 3 ? "gpu" : "cpu", i), {}, false, 1, i < 3});
  std::mutex mu;
  int gpu_now = 0, gpu_max = 0, cpu_now = 0, cpu_max = 0;
  auto run = [&](int i) {
    const bool gpu = nodes[size_t(i)].gpus > 0;
    {
      std::lock_guard<std::mutex> g(mu);
      int& now = gpu ? gpu_now : cpu_now;
      int& mx = gpu ? gpu_max : cpu_max;
      mx = std::max(mx, ++now);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    std::lock_guard<std::mutex> g(mu);
    --(gpu ? gpu_now : cpu_now);
  };
  ExecutorOptions o;
  o.jobs = 6;
  o.gpus = 1;
  o.progress = false;
  const auto r = execute_dag(nodes, run, o);
  for (const auto& x : r) EXPECT_EQ(x.status, NodeStatus::Done);
  EXPECT_EQ(gpu_max, 1);
  EXPECT_EQ(cpu_max, 3);
}

// No GPU: the GPU node fails unrun with the reason, its dependent is skipped, the rest runs.
TEST(Executor, AGpuNodeWithoutAGpuFailsSayingWhy) {
  std::vector<DagNode> nodes = {
      {"quantize:x", {}, false, 1, 1}, {"eval:x", {0}, false, 1, 0}, {"calib", {}, false, 1, 0}};
  std::atomic<int> ran{0};
  ExecutorOptions o;
  o.jobs = 2;
  o.progress = false;
  const auto r = execute_dag(
      nodes, [&](int) { ++ran; }, o);
  EXPECT_EQ(r[0].status, NodeStatus::Failed);
  EXPECT_NE(r[0].error.find("quantize:x needs a CUDA device and none is usable"), std::string::npos)
      << r[0].error;
  EXPECT_EQ(r[1].status, NodeStatus::Skipped);
  EXPECT_EQ(r[2].status, NodeStatus::Done);
  EXPECT_EQ(ran.load(), 1);
}

TEST(Executor, AFailureSkipsOnlyDescendants) {
  const auto nodes = diamond(1);
  Tracker t;
  ExecutorOptions o;
  o.jobs = 2;
  o.progress = false;
  const auto r = execute_dag(nodes, work(nodes, t, {1}), o);
  EXPECT_EQ(r[1].status, NodeStatus::Failed);
  EXPECT_EQ(r[1].error, "boom");
  EXPECT_EQ(r[3].status, NodeStatus::Skipped);
  EXPECT_NE(r[3].error.find("b"), std::string::npos);
  EXPECT_EQ(r[2].status, NodeStatus::Done);
  EXPECT_EQ(r[4].status, NodeStatus::Done);
  EXPECT_EQ(t.order.size(), 4u);
}

// ---- what runs after an edit, after a kill, around a failure: calls counted per node ----

// A runner that counts how often each node ran (ninja's tests count commands).
struct Counter {
  std::mutex mu;
  std::map<int, int> calls;
  std::function<void(int)> runner(std::set<int> failing = {}) {
    return [this, failing](int i) {
      {
        std::lock_guard<std::mutex> g(mu);
        ++calls[i];
      }
      if (failing.count(i)) throw std::runtime_error("boom");
    };
  }
};

ExecutorOptions quiet(int jobs) {
  ExecutorOptions o;
  o.jobs = jobs;
  o.progress = false;
  return o;
}

// The sweep's shape: calib (0) → quantize a (1), quantize b (2); eval a×2 (3, 4), eval b×2 (5, 6);
// the baseline's evals (7, 8) depend on nothing. Cached = the artifact of that key exists.
std::vector<DagNode> sweep_shape(const std::set<int>& cached) {
  std::vector<DagNode> n = {{"calib:code", {}},  {"quantize:a", {0}},   {"quantize:b", {0}},
                            {"eval:a:ppl", {1}}, {"eval:a:kld", {1}},   {"eval:b:ppl", {2}},
                            {"eval:b:kld", {2}}, {"eval:fp16:ppl", {}}, {"eval:fp16:kld", {}}};
  for (int i : cached) n[size_t(i)].cached = true;
  return n;
}

std::map<int, int> once(std::set<int> nodes) {
  std::map<int, int> m;
  for (int i : nodes) m[i] = 1;
  return m;
}

TEST(ExecutorWork, AFreshRunRunsEveryNodeExactlyOnce) {
  const auto nodes = sweep_shape({});
  Counter c;
  const auto r = execute_dag(nodes, c.runner(), quiet(3));
  EXPECT_EQ(c.calls, once({0, 1, 2, 3, 4, 5, 6, 7, 8}));
  for (const auto& x : r) EXPECT_EQ(x.status, NodeStatus::Done);
}

TEST(ExecutorWork, AFinishedRunRunsNothing) {
  const auto nodes = sweep_shape({0, 1, 2, 3, 4, 5, 6, 7, 8});
  Counter c;
  const auto r = execute_dag(nodes, c.runner(), quiet(3));
  EXPECT_TRUE(c.calls.empty());
  for (const auto& x : r) EXPECT_EQ(x.status, NodeStatus::Cached);
}

// An edit to variant a's config changes quantize:a's key and so its evals' keys (not
// cached); everything else keeps its key. Only a's subtree runs, each node once.
TEST(ExecutorWork, AfterAnEditOnlyTheUncachedNodesRun) {
  const auto nodes = sweep_shape({0, 2, 5, 6, 7, 8});
  Counter c;
  const auto r = execute_dag(nodes, c.runner(), quiet(2));
  EXPECT_EQ(c.calls, once({1, 3, 4}));
  for (int i : {0, 2, 5, 6, 7, 8}) EXPECT_EQ(r[size_t(i)].status, NodeStatus::Cached) << i;
  for (int i : {1, 3, 4}) EXPECT_EQ(r[size_t(i)].status, NodeStatus::Done) << i;
}

// An edit that only adds an eval: the new node's upstream is cached and is not re-run.
TEST(ExecutorWork, ADependentOfACachedNodeRunsWithoutItsUpstream) {
  const auto nodes = sweep_shape({0, 1, 2, 3, 5, 6, 7, 8});
  Counter c;
  execute_dag(nodes, c.runner(), quiet(2));
  EXPECT_EQ(c.calls, once({4}));
}

// A node re-runs while a dependent whose artifact exists does not (its key did not change).
TEST(ExecutorWork, ACachedDependentOfARerunNodeIsNotRun) {
  const auto nodes = sweep_shape({2, 3, 4, 5, 6, 7, 8});
  Counter c;
  const auto r = execute_dag(nodes, c.runner(), quiet(2));
  EXPECT_EQ(c.calls, once({0, 1}));
  EXPECT_EQ(r[3].status, NodeStatus::Cached);
  EXPECT_EQ(r[4].status, NodeStatus::Cached);
}

// Killed after calib, quantize:a, one eval of a and one baseline eval had committed: the
// resumed run does the rest, each once, and none of what was finished.
TEST(ExecutorWork, AfterAKillFinishedNodesAreNotRunAndTheirDependentsAre) {
  const auto nodes = sweep_shape({0, 1, 3, 7});
  Counter c;
  const auto r = execute_dag(nodes, c.runner(), quiet(2));
  EXPECT_EQ(c.calls, once({2, 4, 5, 6, 8}));
  for (int i : {2, 4, 5, 6, 8}) EXPECT_EQ(r[size_t(i)].status, NodeStatus::Done) << i;
}

// quantize:a fails in the middle: exactly its two evals are skipped (never run); the other
// variant's branch and the baseline finish; the skip names the failed upstream.
TEST(ExecutorWork, AFailureInTheMiddleSkipsExactlyItsDescendants) {
  const auto nodes = sweep_shape({});
  Counter c;
  const auto r = execute_dag(nodes, c.runner({1}), quiet(2));
  EXPECT_EQ(c.calls, once({0, 1, 2, 5, 6, 7, 8}));
  std::set<int> skipped, failed, done;
  for (int i = 0; i < int(r.size()); ++i) {
    if (r[size_t(i)].status == NodeStatus::Skipped) skipped.insert(i);
    if (r[size_t(i)].status == NodeStatus::Failed) failed.insert(i);
    if (r[size_t(i)].status == NodeStatus::Done) done.insert(i);
  }
  EXPECT_EQ(skipped, (std::set<int>{3, 4}));
  EXPECT_EQ(failed, (std::set<int>{1}));
  EXPECT_EQ(done, (std::set<int>{0, 2, 5, 6, 7, 8}));
  EXPECT_EQ(r[3].error, "upstream quantize:a failed");
  EXPECT_EQ(r[4].error, "upstream quantize:a failed");
}

// A failing root skips its whole subtree transitively, and a cached node under it stays
// cached (its artifact exists; nothing needs the failed node to produce it).
TEST(ExecutorWork, AFailingRootSkipsItsSubtreeTransitively) {
  const auto nodes = sweep_shape({6});
  Counter c;
  const auto r = execute_dag(nodes, c.runner({0}), quiet(3));
  EXPECT_EQ(c.calls, once({0, 7, 8}));
  for (int i : {1, 2, 3, 4, 5}) {
    EXPECT_EQ(r[size_t(i)].status, NodeStatus::Skipped) << i;
    EXPECT_EQ(r[size_t(i)].error, "upstream calib:code failed") << i;
  }
  EXPECT_EQ(r[6].status, NodeStatus::Cached);
}

// The limits hold with a counted workload too: a wide layer of 8 independent nodes at
// jobs 3 never runs more than 3 at once (and does reach 3), each node once; with a
// memory budget fitting two, never more than two.
TEST(ExecutorWork, JobAndMemoryLimitsHoldOnAWideLayer) {
  std::vector<DagNode> nodes = {{"root", {}, false, 100}};
  for (int i = 0; i < 8; ++i) nodes.push_back({cat("leaf", i), {0}, false, 400});
  for (const auto& [jobs, budget, want_max] :
       std::vector<std::tuple<int, int64_t, int>>{{3, 0, 3}, {8, 1000, 2}, {1, 0, 1}}) {
    Tracker t;
    ExecutorOptions o = quiet(jobs);
    o.max_memory_bytes = budget;
    const auto r = execute_dag(nodes, work(nodes, t), o);
    std::map<int, int> calls;
    for (int i : t.order) ++calls[i];
    EXPECT_EQ(calls, once({0, 1, 2, 3, 4, 5, 6, 7, 8})) << jobs;
    EXPECT_EQ(t.max_running, want_max) << "jobs " << jobs << " budget " << budget;
    if (budget > 0) {
      EXPECT_LE(t.max_mem, budget);
    }
  }
}

}  // namespace
}  // namespace qsweep
