#include "pipeline/executor.h"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/errors.h"

namespace qsweep {

const char* node_status_name(NodeStatus s) {
  switch (s) {
    case NodeStatus::Pending:
      return "pending";
    case NodeStatus::Cached:
      return "cached";
    case NodeStatus::Running:
      return "running";
    case NodeStatus::Done:
      return "done";
    case NodeStatus::Failed:
      return "failed";
    case NodeStatus::Skipped:
      return "skipped";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;

class EventLog {
 public:
  explicit EventLog(const std::string& path) {
    if (path.empty()) return;
    f_ = std::fopen(path.c_str(), "a");
    QS_THROW_IF_NOT(f_, path, ": cannot open the event log for appending");
    write({{"event", "start"}, {"format", "qsweep-events v1"}, {"pid", ::getpid()}});
  }
  ~EventLog() {
    if (f_) std::fclose(f_);
  }
  void write(nlohmann::json j) {
    if (!f_) return;
    j["time"] =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    const std::string line = j.dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), f_);
    std::fflush(f_);
  }

 private:
  std::FILE* f_ = nullptr;
};

}  // namespace

std::vector<NodeResult> execute_dag(const std::vector<DagNode>& nodes,
                                    const std::function<void(int)>& run,
                                    const ExecutorOptions& opt) {
  return execute_dag(nodes, std::function<void(int, int)>([&run](int i, int) { run(i); }), opt);
}

std::vector<NodeResult> execute_dag(const std::vector<DagNode>& nodes,
                                    const std::function<void(int, int)>& run,
                                    const ExecutorOptions& opt) {
  const int n = int(nodes.size());
  std::vector<NodeResult> res(static_cast<size_t>(n));
  std::vector<std::vector<int>> children(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    for (int d : nodes[size_t(i)].deps) {
      QS_ASSERT(d >= 0 && d < n && d != i, "bad dependency");
      children[size_t(d)].push_back(i);
    }
  EventLog log(opt.event_log);
  std::mutex mu;
  std::condition_variable cv;
  int running = 0, finished = 0, to_run = 0;
  int64_t mem_in_use = 0;
  int gpus_in_use = 0;
  std::vector<char> gpu_busy(size_t(std::max(0, opt.gpus)), 0);  // by device index
  const auto t0 = Clock::now();
  std::vector<Clock::time_point> started(static_cast<size_t>(n));

  for (int i = 0; i < n; ++i) {
    if (nodes[size_t(i)].cached) {
      res[size_t(i)].status = NodeStatus::Cached;
      ++finished;
      log.write({{"event", "cached"}, {"node", nodes[size_t(i)].id}});
    } else {
      ++to_run;
    }
  }
  const bool tty = opt.progress && ::isatty(2);
  int done_run = 0;
  auto draw = [&](const std::string& line) {
    if (!opt.progress) return;
    const double el = std::chrono::duration<double>(Clock::now() - t0).count();
    const double eta = done_run > 0 ? el / done_run * (to_run - done_run) : 0;
    std::string names;
    for (int i = 0; i < n; ++i)
      if (res[size_t(i)].status == NodeStatus::Running)
        names += (names.empty() ? "" : ", ") + nodes[size_t(i)].id;
    if (tty)
      std::fprintf(stderr, "\r\x1b[K[%d/%d nodes, %.0fs, eta %.0fs] %s", done_run, to_run, el, eta,
                   names.substr(0, 100).c_str());
    if (!line.empty()) std::fprintf(stderr, "%s%s\n", tty ? "\r\x1b[K" : "", line.c_str());
    std::fflush(stderr);
  };

  auto ready = [&](int i) {
    if (res[size_t(i)].status != NodeStatus::Pending) return false;
    for (int d : nodes[size_t(i)].deps) {
      const NodeStatus s = res[size_t(d)].status;
      if (s != NodeStatus::Done && s != NodeStatus::Cached) return false;
    }
    return true;
  };
  // Marks i's pending descendants skipped (under the lock).
  std::function<void(int, const std::string&)> skip_descendants = [&](int i,
                                                                      const std::string& why) {
    for (int c : children[size_t(i)]) {
      if (res[size_t(c)].status != NodeStatus::Pending) continue;
      res[size_t(c)].status = NodeStatus::Skipped;
      res[size_t(c)].error = why;
      ++finished;
      ++done_run;
      log.write({{"event", "skipped"}, {"node", nodes[size_t(c)].id}, {"reason", why}});
      skip_descendants(c, why);
    }
  };

  std::vector<std::thread> threads;
  std::unique_lock<std::mutex> lock(mu);
  while (finished < n) {
    bool launched = false;
    for (int i = 0; i < n && running < std::max(1, opt.jobs); ++i) {
      if (!ready(i)) continue;
      const int64_t need = nodes[size_t(i)].memory_bytes;
      // Serialize when the budget says so; a node alone always runs.
      if (opt.max_memory_bytes > 0 && running > 0 && mem_in_use + need > opt.max_memory_bytes)
        continue;
      // GPUs are counted strictly (a node that needs more than exist fails below, unrun).
      const int gpus = nodes[size_t(i)].gpus;
      if (gpus > 0 && gpus <= opt.gpus && gpus_in_use + gpus > opt.gpus) continue;
      const int held = gpus <= opt.gpus ? gpus : 0;
      std::vector<int> slots;  // the devices it holds, lowest free first
      for (int g = 0; g < opt.gpus && int(slots.size()) < held; ++g)
        if (!gpu_busy[size_t(g)]) slots.push_back(g);
      QS_ASSERT(int(slots.size()) == held, "GPU count and busy devices disagree");
      for (const int g : slots) gpu_busy[size_t(g)] = 1;
      res[size_t(i)].status = NodeStatus::Running;
      ++running;
      mem_in_use += need;
      gpus_in_use += held;
      started[size_t(i)] = Clock::now();
      log.write({{"event", "started"}, {"node", nodes[size_t(i)].id}});
      draw("");
      launched = true;
      threads.emplace_back([&, i, need, held, gpus, slots] {
        std::string error;
        try {
          QS_THROW_IF_NOT(gpus <= opt.gpus, nodes[size_t(i)].id, " needs a CUDA device and ",
                          opt.gpus == 0 ? "none is usable" : "too few are present",
                          ": install a GPU driver or set `device: cpu` in the sweep file");
          run(i, slots.empty() ? -1 : slots.front());
        } catch (const std::exception& e) {
          error = e.what();
        } catch (...) {
          error = "unknown exception";
        }
        std::lock_guard<std::mutex> g(mu);
        NodeResult& r = res[size_t(i)];
        r.seconds = std::chrono::duration<double>(Clock::now() - started[size_t(i)]).count();
        r.status = error.empty() ? NodeStatus::Done : NodeStatus::Failed;
        r.error = error;
        --running;
        mem_in_use -= need;
        gpus_in_use -= held;
        for (const int g : slots) gpu_busy[size_t(g)] = 0;
        ++finished;
        ++done_run;
        log.write({{"event", error.empty() ? "done" : "failed"},
                   {"node", nodes[size_t(i)].id},
                   {"seconds", r.seconds},
                   {"error", error}});
        draw(error.empty()
                 ? cat("done   ", nodes[size_t(i)].id, " (", int(r.seconds * 10) / 10.0, "s)")
                 : cat("FAILED ", nodes[size_t(i)].id, ": ", error));
        if (!error.empty()) skip_descendants(i, cat("upstream ", nodes[size_t(i)].id, " failed"));
        cv.notify_all();
      });
    }
    if (finished >= n) break;
    if (!launched || running >= std::max(1, opt.jobs)) {
      QS_ASSERT(running > 0, "DAG deadlock: nothing running and nothing ready");
      cv.wait(lock);
    }
  }
  lock.unlock();
  for (auto& t : threads) t.join();
  if (tty) std::fprintf(stderr, "\r\x1b[K");
  log.write({{"event", "finished"}});
  return res;
}

}  // namespace qsweep
