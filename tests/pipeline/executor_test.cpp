// The DAG executor with a fake workload: dependency order, the job limit, the
// memory budget, and failure isolation (ninja's habit: assert how much work ran).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

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

}  // namespace
}  // namespace qsweep
