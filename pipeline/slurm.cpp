#include "pipeline/slurm.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "pipeline/detail/artifacts.h"

namespace qsweep {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* kJobsFile = "slurm-jobs.json";

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Runs a shell command; its stdout (and stderr when `merge`), and its exit status.
std::pair<int, std::string> shell(const std::string& cmd, bool merge) {
  const std::string full = cmd + (merge ? " 2>&1" : " 2>/dev/null");
  std::FILE* p = ::popen(full.c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t b = 0;
  while (b < s.size() && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  return s.substr(b);
}

/// A node id as a file name stem: "eval:rtn-b4-g128:ppl" → "eval_rtn-b4-g128_ppl".
std::string file_stem(const std::string& id) {
  std::string s = id;
  for (char& c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '@')) c = '_';
  return s;
}

const char* kind_name(SweepNodeKind k) {
  return k == SweepNodeKind::Calibrate                                     ? "calibrate"
         : k == SweepNodeKind::Quantize || k == SweepNodeKind::Sensitivity ? "quantize"
                                                                           : "eval";
}

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) {
  g_interrupted = true;
}

/// Job id → Slurm state of every job squeue still knows (pending, running and recently ended).
std::map<std::string, std::string> squeue_states() {
  std::map<std::string, std::string> out;
  const auto [rc, text] = shell("squeue -h -t all -o '%i|%T'", false);
  QS_THROW_IF_NOT(rc == 0 || g_interrupted, "squeue failed (exit ", rc,
                  "): is this a Slurm login node? (SLURM_CONF, slurmctld reachable)");
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const size_t bar = line.find('|');
    if (bar != std::string::npos) out[trim(line.substr(0, bar))] = trim(line.substr(bar + 1));
  }
  return out;
}

/// The final state from accounting, "" when sacct has none (no accounting storage).
std::string sacct_state(const std::string& job) {
  const auto [rc, text] = shell("sacct -n -P -X -o State -j " + job, false);
  if (rc != 0) return "";
  const std::string s = trim(text.substr(0, text.find('\n')));
  return s.empty() ? "" : s.substr(0, s.find(' '));  // "CANCELLED by 0" → CANCELLED
}

bool live_state(const std::string& s) {
  return s == "PENDING" || s == "RUNNING" || s == "CONFIGURING" || s == "COMPLETING" ||
         s == "SUSPENDED" || s == "REQUEUED" || s == "RESIZING" || s == "SIGNALING" ||
         s == "STAGE_OUT";
}

std::string log_tail(const std::string& path, int lines = 15) {
  std::ifstream in(path);
  if (!in) return "(no log at " + path + ")";
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > size_t(lines) ? all.size() - size_t(lines) : 0; i < all.size(); ++i)
    out += "\n    | " + all[i];
  return out.empty() ? "(empty log " + path + ")" : out;
}

void append_event(const std::string& out_dir, json j) {
  j["time"] =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::ofstream(out_dir + "/events.jsonl", std::ios::app) << j.dump() << "\n";
}

/// The record of DIR's latest submission.
json read_jobs(const std::string& out_dir) {
  const std::string file = out_dir + "/" + kJobsFile;
  QS_THROW_IF_NOT(fs::exists(file), file,
                  ": not found; this directory has no Slurm submission (qsweep run --executor "
                  "slurm)");
  return detail::read_json(file);
}

/// A job's state for reports: its squeue state, else sacct's, else "" (gone, unknown).
std::string job_state(const std::map<std::string, std::string>& q, const std::string& job) {
  const auto it = q.find(job);
  return it != q.end() ? it->second : sacct_state(job);
}

}  // namespace

bool run_sweep_node(const SweepPlan& plan, const std::string& out_dir, const std::string& node) {
  const SweepNode* n = nullptr;
  for (const SweepNode& c : plan.nodes)
    if (c.key == node || c.id == node) n = &c;
  QS_THROW_IF_NOT(n, "node '", node, "' is not in the plan of ", plan.spec.file,
                  " (was the sweep file or its inputs changed since submission?)");
  const ArtifactStore store(out_dir + "/store", ArtifactStore::Access::Node);
  if (store.has(n->key)) return false;
  for (int d : n->deps)
    QS_THROW_IF_NOT(store.has(plan.nodes[size_t(d)].key), n->id, ": upstream ",
                    plan.nodes[size_t(d)].id, " is not in ", store.root(),
                    " (run it first: qsweep run --executor slurm submits in order)");
  const std::unique_ptr<NodeRunner> runner = make_stage_runner(plan);
  const std::string tmp = store.begin(n->key);
  try {
    runner->run(NodeTask{plan, *n, store, tmp});
    store.commit(n->key, tmp);
  } catch (...) {
    store.abort(tmp);
    throw;
  }
  return true;
}

SlurmRunSummary run_sweep_slurm(const SweepPlan& plan, const SweepRunOptions& opt,
                                const SlurmOptions& so) {
  const std::string out = fs::absolute(opt.out_dir).lexically_normal().string();
  prepare_output_dir(out);
  const size_t n = plan.nodes.size();
  std::vector<std::string> job(n), log(n);
  std::vector<bool> cached(n, false);
  SlurmRunSummary sum;
  {
    const OutDirLock lock(
        out, [](const std::string& m) { std::fprintf(stderr, "qsweep: %s\n", m.c_str()); });
    const ArtifactStore store(out + "/store");
    fs::create_directories(out + "/logs");
    fs::create_directories(out + "/slurm");
    // Jobs of an earlier submission still queued or running are reused, never duplicated.
    std::map<std::string, std::string> live_job;  // key → job id
    std::map<std::string, std::string> old_job;   // key → the job that made it (status)
    const std::map<std::string, std::string> q = squeue_states();
    const json earlier = fs::exists(out + "/" + kJobsFile) ? read_jobs(out) : json::object();
    if (earlier.contains("nodes"))
      for (const auto& r : earlier["nodes"]) {
        const std::string j = r.value("job", "");
        old_job[r.value("key", "")] = j;
        const auto it = q.find(j);
        if (!j.empty() && it != q.end() && live_state(it->second)) live_job[r.value("key", "")] = j;
      }
    for (size_t i = 0; i < n; ++i) {
      const SweepNode& nd = plan.nodes[i];
      log[i] = out + "/logs/" + file_stem(nd.id) + ".log";
      if (store.has(nd.key)) {
        cached[i] = true;
        continue;
      }
      if (const auto it = live_job.find(nd.key); it != live_job.end()) {
        job[i] = it->second;
        ++sum.reused;
        continue;
      }
      std::string deps;
      for (int d : nd.deps) {
        QS_ASSERT(size_t(d) < i, "plan nodes are not in dependency order");
        if (!job[size_t(d)].empty()) deps += (deps.empty() ? "" : ":") + job[size_t(d)];
      }
      const SlurmResources r = resources_for(plan.spec, kind_name(nd.kind));
      const std::string script = out + "/slurm/" + file_stem(nd.id) + ".sh";
      std::ostringstream s;
      s << "#!/bin/bash\n#SBATCH --job-name=" << quote("qsweep:" + plan.spec.name + ":" + nd.id)
        << "\n#SBATCH --output=" << quote(log[i]) << "\n";
      if (r.cpus) s << "#SBATCH --cpus-per-task=" << r.cpus << "\n";
      if (r.gpus) s << "#SBATCH --gpus=" << r.gpus << "\n";
      if (!r.mem.empty()) s << "#SBATCH --mem=" << r.mem << "\n";
      if (!r.time.empty()) s << "#SBATCH --time=" << r.time << "\n";
      s << "# node " << nd.id << "\nexec " << quote(so.qsweep_binary) << " run-node "
        << quote(so.sweep_file) << " --out " << quote(out) << " --data-dir " << quote(plan.data_dir)
        << " --node " << quote(nd.key) << "\n";
      const std::string text = s.str();
      write_file_atomic(script, text.data(), text.size());
      std::string cmd = "sbatch --parsable --kill-on-invalid-dep=yes";
      if (!deps.empty()) cmd += " --dependency=afterok:" + deps;
      if (!so.partition.empty()) cmd.append(" --partition=").append(quote(so.partition));
      if (!so.account.empty()) cmd.append(" --account=").append(quote(so.account));
      if (!so.qos.empty()) cmd.append(" --qos=").append(quote(so.qos));
      for (const auto& a : so.sbatch_args) cmd.append(" ").append(quote(a));
      cmd.append(" ").append(quote(script));
      const auto [rc, reply] = shell(cmd, true);
      const std::string id = trim(reply.substr(0, reply.find(';')));
      if (rc != 0 || id.empty() || !std::all_of(id.begin(), id.end(), ::isdigit))
        throw Error(cat("sbatch failed for ", nd.id, " (exit ", rc, "): ", trim(reply),
                        sum.submitted ? cat("; ", sum.submitted,
                                            " jobs were submitted (qsweep cancel ", out, ")")
                                      : std::string()));
      job[i] = id;
      ++sum.submitted;
      append_event(out, {{"event", "submitted"}, {"node", nd.id}, {"job", id}, {"log", log[i]}});
      // The record after each job, so that a failure half-way leaves every job cancellable.
      json rec = {{"sweep", plan.spec.name}, {"store_format", detail::kStoreFormat}};
      for (size_t k = 0; k < n; ++k)
        rec["nodes"].push_back({{"id", plan.nodes[k].id},
                                {"key", plan.nodes[k].key},
                                {"job", job[k]},
                                {"log", log[k]}});
      detail::write_json(out + "/" + kJobsFile, rec);
    }
    json rec = {{"sweep", plan.spec.name}, {"store_format", detail::kStoreFormat}};
    for (size_t k = 0; k < n; ++k) {
      // A node done by an earlier submission keeps its job and log (status: done, not cached).
      const std::string made_by = cached[k] ? old_job[plan.nodes[k].key] : job[k];
      rec["nodes"].push_back({{"id", plan.nodes[k].id},
                              {"key", plan.nodes[k].key},
                              {"job", made_by},
                              {"log", made_by.empty() ? "" : log[k]}});
    }
    detail::write_json(out + "/" + kJobsFile, rec);
  }
  for (size_t i = 0; i < n; ++i)
    if (!job[i].empty()) sum.job_ids.push_back(job[i]);
  if (so.detach) {
    sum.detached = true;
    return sum;
  }

  // Waiting: the store says done; squeue (else sacct) says queued, running or ended.
  std::vector<NodeResult> res(n);
  std::vector<std::string> last_seen(n);
  const ArtifactStore store(out + "/store", ArtifactStore::Access::Read);
  for (size_t i = 0; i < n; ++i)
    if (cached[i]) res[i].status = NodeStatus::Cached;
  struct sigaction sa {
  }, old{};
  sa.sa_handler = on_sigint;
  g_interrupted = false;
  ::sigaction(SIGINT, &sa, &old);
  const bool tty = opt.progress && ::isatty(2);
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    const std::map<std::string, std::string> q = squeue_states();  // before the store: no race
    int pending = 0, running = 0, finished = 0;
    for (size_t i = 0; i < n; ++i) {
      NodeResult& r = res[i];
      if (r.status == NodeStatus::Cached || r.status == NodeStatus::Done ||
          r.status == NodeStatus::Failed || r.status == NodeStatus::Skipped) {
        ++finished;
        continue;
      }
      const SweepNode& nd = plan.nodes[i];
      if (const auto it = q.find(job[i]); it != q.end()) last_seen[i] = it->second;
      if (store.has(nd.key)) {
        r.status = NodeStatus::Done;
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        append_event(out, {{"event", "done"}, {"node", nd.id}, {"job", job[i]}});
        if (opt.progress)
          std::fprintf(stderr, "%sdone   %s (job %s)\n", tty ? "\r\x1b[K" : "", nd.id.c_str(),
                       job[i].c_str());
        ++finished;
        continue;
      }
      std::string state = q.count(job[i]) ? q.at(job[i]) : sacct_state(job[i]);
      if (live_state(state)) {
        (state == "PENDING" ? pending : running)++;
        r.status = state == "PENDING" ? NodeStatus::Pending : NodeStatus::Running;
        continue;
      }
      // Ended without its artifact (unless Ctrl-C killed the squeue or sacct that said so).
      if (g_interrupted) break;
      if (state.empty())
        state = last_seen[i].empty() ? "unknown (not in squeue, no sacct record)"
                                     : "last seen " + last_seen[i];
      std::string failed_dep;
      for (int d : nd.deps)
        if (res[size_t(d)].status == NodeStatus::Failed ||
            res[size_t(d)].status == NodeStatus::Skipped)
          failed_dep = plan.nodes[size_t(d)].id;
      if (!failed_dep.empty() && state.rfind("CANCELLED", 0) == 0) {
        r.status = NodeStatus::Skipped;
        r.error = cat("upstream ", failed_dep, " failed");
        append_event(out, {{"event", "skipped"}, {"node", nd.id}, {"reason", r.error}});
      } else {
        r.status = NodeStatus::Failed;
        r.error = cat("Slurm job ", job[i], " ended ", state, " without its artifact; log ", log[i],
                      ":", log_tail(log[i]));
        append_event(out,
                     {{"event", "failed"}, {"node", nd.id}, {"job", job[i]}, {"error", r.error}});
        if (opt.progress)
          std::fprintf(stderr, "%sFAILED %s: %s\n", tty ? "\r\x1b[K" : "", nd.id.c_str(),
                       r.error.c_str());
      }
      ++finished;
    }
    if (finished == int(n) && !g_interrupted) break;
    if (tty)
      std::fprintf(stderr, "\r\x1b[K[%d/%zu nodes, %d running, %d queued, %.0fs]", finished, n,
                   running, pending,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    for (int k = 0; k < int(so.poll_seconds * 10) && !g_interrupted; ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (g_interrupted) {
      ::sigaction(SIGINT, &old, nullptr);
      sum.interrupted = true;
      return sum;
    }
  }
  ::sigaction(SIGINT, &old, nullptr);
  if (tty) std::fprintf(stderr, "\r\x1b[K");
  for (const auto& r : res) {
    sum.sweep.ran += r.status == NodeStatus::Done;
    sum.sweep.cached += r.status == NodeStatus::Cached;
    sum.sweep.failed += r.status == NodeStatus::Failed;
    sum.sweep.skipped += r.status == NodeStatus::Skipped;
  }
  finish_sweep(plan, opt.out_dir, res, sum.sweep);
  return sum;
}

std::string slurm_status(const std::string& out_dir) {
  const json rec = read_jobs(out_dir);
  const ArtifactStore store(out_dir + "/store", ArtifactStore::Access::Read);
  const std::map<std::string, std::string> q = squeue_states();
  std::ostringstream os;
  std::map<std::string, int> count;
  for (const auto& r : rec["nodes"]) {
    const std::string j = r.value("job", ""), key = r.value("key", "");
    std::string st, detail;
    if (store.has(key)) {
      st = j.empty() ? "cached" : "done";
    } else if (j.empty()) {
      st = "missing";
      detail = " (not submitted: run again)";
    } else {
      const std::string s = job_state(q, j);
      if (s == "PENDING")
        st = "queued";
      else if (live_state(s))
        st = "running";
      else {
        st = "failed";
        detail = cat(" (Slurm: ", s.empty() ? "unknown" : s, ")");
      }
    }
    ++count[st];
    os << "  " << st << std::string(st.size() < 8 ? 8 - st.size() : 0, ' ') << r.value("id", "")
       << (j.empty() ? "" : "  job " + j) << detail
       << (r.value("log", "").empty() ? "" : "  log " + r.value("log", "")) << "\n";
  }
  std::string head = cat("sweep ", rec.value("sweep", "?"), " in ", out_dir, ":");
  for (const auto& [k, c] : count) head += cat(" ", c, " ", k);
  return head + "\n" + os.str();
}

std::vector<std::string> slurm_cancel(const std::string& out_dir) {
  const json rec = read_jobs(out_dir);
  const std::map<std::string, std::string> q = squeue_states();
  std::vector<std::string> ids;
  for (const auto& r : rec["nodes"]) {
    const std::string j = r.value("job", "");
    const auto it = q.find(j);
    if (!j.empty() && it != q.end() && live_state(it->second) &&
        std::find(ids.begin(), ids.end(), j) == ids.end())
      ids.push_back(j);
  }
  if (ids.empty()) return ids;
  std::string cmd = "scancel";
  for (const auto& j : ids) cmd += " " + j;
  const auto [rc, reply] = shell(cmd, true);
  QS_THROW_IF_NOT(rc == 0, cmd, " failed (exit ", rc, "): ", trim(reply));
  append_event(out_dir, {{"event", "cancelled"}, {"jobs", ids}});
  return ids;
}

}  // namespace qsweep
