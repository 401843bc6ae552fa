#include "eval/code_tasks.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/errors.h"
#include "common/mapped_file.h"

namespace qsweep {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// The whole file, gunzipped when it is gzip (zlib reads plain files unchanged).
std::string read_maybe_gzip(const std::string& path) {
  const int fd = open_regular_file(path);  // a FIFO or device is an Error, not a hang
  gzFile f = ::gzdopen(fd, "rb");
  if (f == nullptr) ::close(fd);
  QS_THROW_IF_NOT(f != nullptr, path, ": cannot open (", std::strerror(errno), ")");
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const int r = ::gzread(f, buf, sizeof buf);
    if (r < 0) {
      int errnum = 0;
      const std::string msg = ::gzerror(f, &errnum);
      ::gzclose(f);
      throw Error(cat(path, ": corrupt gzip data (", msg, "); fetch the file again"));
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  ::gzclose(f);
  return out;
}

std::string get_string(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  QS_THROW_IF_NOT(it != j.end() && it->is_string(), where, ": field \"", key,
                  "\" missing or not a string");
  return it->get<std::string>();
}

std::vector<std::string> get_strings(const json& j, const char* key, const std::string& where,
                                     bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    QS_THROW_IF_NOT(!required, where, ": field \"", key, "\" missing");
    return {};
  }
  QS_THROW_IF_NOT(it->is_array(), where, ": field \"", key, "\" is not a list of strings");
  std::vector<std::string> out;
  for (const auto& v : *it) {
    QS_THROW_IF_NOT(v.is_string(), where, ": field \"", key, "\" holds a non-string");
    out.push_back(v.get<std::string>());
  }
  return out;
}

/// JSON objects from a JSONL text, or from a JSON array when the text starts with '['.
std::vector<std::pair<json, std::string>> parse_records(const std::string& text,
                                                        const std::string& path) {
  std::vector<std::pair<json, std::string>> out;
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    json arr;
    try {
      arr = json::parse(text);
    } catch (const json::exception& e) {
      throw Error(cat(path, ": not valid JSON (", e.what(), ")"));
    }
    for (size_t i = 0; i < arr.size(); ++i) {
      QS_THROW_IF_NOT(arr[i].is_object(), path, ": entry ", i, " is not an object");
      out.emplace_back(arr[i], cat(path, ": entry ", i));
    }
    return out;
  }
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = cat(path, ":", line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      throw Error(cat(where, ": not valid JSON (", e.what(), ")"));
    }
    QS_THROW_IF_NOT(j.is_object(), where, ": not a JSON object");
    out.emplace_back(std::move(j), where);
  }
  return out;
}

std::string json_quote(const std::string& s) {
  return json(s).dump();
}

/// MBPP task number, or -1 when the id is not a number.
int mbpp_number(const CodeProblem& p) {
  try {
    size_t used = 0;
    const int n = std::stoi(p.task_id, &used);
    return used == p.task_id.size() ? n : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

double standard_error(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  const double n = static_cast<double>(v.size());
  return std::sqrt(ss / (n - 1)) / std::sqrt(n);
}

/// A fixed pool of threads running sandboxed programs while generation goes on.
class ProgramPool {
 public:
  explicit ProgramPool(int threads) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~ProgramPool() { finish(); }
  void submit(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  void finish() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_)
      if (t.joinable()) t.join();
    workers_.clear();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return done_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> workers_;
  bool done_ = false;
};

/// One problem as the runner sees it: the prompt to continue and how to build the program.
struct Prepared {
  std::string prompt;
  std::function<std::string(const std::string&)> program;
};

CodeEvalResult run_code_task(const std::string& task, const GenerateFn& generate,
                             const std::string& file, const CodeEvalOptions& opt,
                             const std::vector<std::string>& stops,
                             const std::function<std::vector<Prepared>(std::string*)>& load,
                             const std::string& program_rule, std::vector<std::string>* task_ids) {
  QS_THROW_IF_NOT(opt.n_samples >= 1, task, ": n_samples must be >= 1, got ", opt.n_samples);
  QS_THROW_IF_NOT(!opt.ks.empty(), task, ": no k given for pass@k");
  for (int k : opt.ks)
    QS_THROW_IF_NOT(k >= 1 && k <= opt.n_samples, task, ": pass@", k, " needs n_samples >= ", k,
                    " (n_samples = ", opt.n_samples, ")");
  QS_THROW_IF_NOT(opt.limit >= 0, task, ": limit must be >= 0");
  QS_THROW_IF_NOT(opt.n_samples == 1 || opt.generation.temperature > 0, task, ": ", opt.n_samples,
                  " samples per problem with greedy decoding are identical; set a "
                  "temperature > 0 or n_samples = 1");

  const auto t0 = std::chrono::steady_clock::now();
  CodeEvalResult res;
  res.task = task;
  res.file = file;
  if (!fs::exists(file)) {
    res.status = CodeEvalStatus::skipped;
    res.message = cat("skipped: ", file, " not found");
    return res;
  }
  std::vector<Prepared> items;
  std::string split_note;
  try {
    items = load(&split_note);
  } catch (const Error& e) {
    res.status = CodeEvalStatus::error;
    res.message = e.what();
    return res;
  }
  if (opt.limit > 0 && static_cast<size_t>(opt.limit) < items.size()) {
    items.resize(static_cast<size_t>(opt.limit));
    task_ids->resize(static_cast<size_t>(opt.limit));
  }
  const SandboxProbe probe = probe_sandbox(opt.sandbox);
  if (!probe.usable) {
    res.status = CodeEvalStatus::error;
    res.message = cat(task, ": cannot execute programs safely: ", probe.message);
    return res;
  }
  res.isolation = probe.isolation;

  GenerationOptions gen = opt.generation;
  for (const auto& s : stops)
    if (std::find(gen.stop.begin(), gen.stop.end(), s) == gen.stop.end()) gen.stop.push_back(s);

  const int n = opt.n_samples;
  res.items = static_cast<int>(items.size());
  res.problems.resize(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    res.problems[i].task_id = (*task_ids)[i];
    res.problems[i].n = n;
    res.problems[i].samples.resize(static_cast<size_t>(n));
  }
  const int jobs =
      opt.jobs > 0 ? opt.jobs : std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
  double gen_seconds = 0;
  {
    ProgramPool pool(jobs);
    for (size_t i = 0; i < items.size(); ++i) {
      for (int j = 0; j < n; ++j) {
        GenerationOptions g = gen;
        g.seed = gen.seed + static_cast<uint64_t>(j);
        const auto g0 = std::chrono::steady_clock::now();
        Generation out = generate(items[i].prompt, g);
        gen_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - g0).count();
        CodeSampleResult& s = res.problems[i].samples[static_cast<size_t>(j)];
        s.completion = truncate_at_stops(out.text, gen.stop);
        s.finish_reason = out.finish_reason;
        pool.submit([&s, &items, i, &opt] {
          const std::string program = items[i].program(s.completion);
          SandboxResult r;
          try {
            r = run_sandboxed(program, opt.sandbox);
          } catch (const Error& e) {
            r.status = SandboxStatus::setup_error;
            r.message = e.what();
          }
          s.status = r.status;
          s.exit_code = r.exit_code;
          s.seconds = r.seconds;
          const std::string& tail =
              r.status == SandboxStatus::setup_error ? r.message : r.stderr_tail;
          s.stderr_tail = tail.size() > 2048 ? tail.substr(tail.size() - 2048) : tail;
        });
      }
    }
    pool.finish();
  }

  // Scores.
  std::map<int, std::vector<double>> per_k;
  std::string first_setup_error;
  for (auto& p : res.problems) {
    p.correct = 0;
    for (const auto& s : p.samples) {
      if (s.status == SandboxStatus::ok) ++p.correct;
      ++res.sample_status_counts[to_string(s.status)];
      if (s.status == SandboxStatus::setup_error && first_setup_error.empty())
        first_setup_error = s.stderr_tail;
    }
    for (int k : opt.ks) {
      p.pass_at[k] = pass_at_k(p.n, p.correct, k);
      per_k[k].push_back(p.pass_at[k]);
    }
  }
  for (auto& [k, v] : per_k) {
    res.pass_at[k] = mean(v);
    res.standard_error[k] = standard_error(v);
  }
  if (!first_setup_error.empty()) {
    res.status = CodeEvalStatus::error;
    res.message = cat(task, ": ", res.sample_status_counts["setup_error"],
                      " programs could not be run: ", first_setup_error);
  }

  std::vector<std::string> quoted;
  for (const auto& s : gen.stop) quoted.push_back(json_quote(s));
  std::vector<std::string> kstr;
  for (int k : opt.ks) kstr.push_back(std::to_string(k));
  res.protocol =
      cat(task, ": file=", file, " problems=", res.items, split_note, " n_samples=", n,
          " pass@k k=[", join(kstr, ","), "] temperature=", gen.temperature, " top_p=", gen.top_p,
          " seed=", gen.seed, " max_new_tokens=", gen.max_new_tokens, " stop=[", join(quoted, ","),
          "] program=", program_rule, " sandbox: timeout=", opt.sandbox.timeout_seconds,
          "s memory=", opt.sandbox.memory_bytes >> 20, "MiB python=", opt.sandbox.python,
          " isolation=", res.isolation, "; a sample passes when the program exits 0");
  res.generation_seconds = gen_seconds;
  res.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace

std::vector<CodeProblem> load_humaneval(const std::string& path) {
  QS_THROW_IF_NOT(fs::exists(path), path,
                  " not found; HumanEval lives in the data directory as "
                  "humaneval/HumanEval.jsonl.gz (see ../shared/data/README.md)");
  std::vector<CodeProblem> out;
  std::set<std::string> seen;
  for (const auto& [j, where] : parse_records(read_maybe_gzip(path), path)) {
    CodeProblem p;
    p.task_id = get_string(j, "task_id", where);
    p.prompt = get_string(j, "prompt", where);
    p.reference = get_string(j, "canonical_solution", where);
    p.test = get_string(j, "test", where);
    p.entry_point = get_string(j, "entry_point", where);
    QS_THROW_IF_NOT(seen.insert(p.task_id).second, where, ": duplicate task_id ", p.task_id);
    out.push_back(std::move(p));
  }
  QS_THROW_IF_NOT(!out.empty(), path, ": no problems in the file");
  return out;
}

std::vector<CodeProblem> load_mbpp(const std::string& path) {
  QS_THROW_IF_NOT(fs::exists(path), path,
                  " not found; MBPP lives in the data directory as mbpp/mbpp.jsonl "
                  "(see ../shared/data/README.md)");
  std::vector<CodeProblem> out;
  std::set<std::string> seen;
  for (const auto& [j, where] : parse_records(read_maybe_gzip(path), path)) {
    CodeProblem p;
    auto id = j.find("task_id");
    QS_THROW_IF_NOT(id != j.end() && (id->is_number_integer() || id->is_string()), where,
                    ": field \"task_id\" missing");
    p.task_id = id->is_string() ? id->get<std::string>() : std::to_string(id->get<int64_t>());
    const bool sanitized = !j.contains("text") && j.contains("prompt");
    p.prompt = get_string(j, sanitized ? "prompt" : "text", where);
    p.reference = get_string(j, "code", where);
    p.test_list = get_strings(j, "test_list", where, true);
    QS_THROW_IF_NOT(!p.test_list.empty(), where, ": empty test_list");
    if (sanitized) {
      p.test_setup_code = join(get_strings(j, "test_imports", where, false), "\n");
    } else {
      auto s = j.find("test_setup_code");
      if (s != j.end() && s->is_string()) p.test_setup_code = s->get<std::string>();
      p.challenge_test_list = get_strings(j, "challenge_test_list", where, false);
    }
    QS_THROW_IF_NOT(seen.insert(p.task_id).second, where, ": duplicate task_id ", p.task_id);
    out.push_back(std::move(p));
  }
  QS_THROW_IF_NOT(!out.empty(), path, ": no problems in the file");
  return out;
}

std::string humaneval_file(const std::string& data_dir) {
  return (fs::path(data_dir) / "humaneval" / "HumanEval.jsonl.gz").string();
}

std::string mbpp_file(const std::string& data_dir) {
  const fs::path dir = fs::path(data_dir) / "mbpp";
  for (const char* name : {"mbpp.jsonl", "sanitized-mbpp.json"})
    if (fs::exists(dir / name)) return (dir / name).string();
  return (dir / "mbpp.jsonl").string();
}

std::vector<std::string> humaneval_stop_sequences() {
  return {"\nclass", "\ndef", "\n#", "\nif", "\nprint"};
}

std::vector<std::string> mbpp_stop_sequences() {
  return {"[DONE]"};
}

std::string truncate_at_stops(const std::string& text, const std::vector<std::string>& stops) {
  size_t cut = text.size();
  for (const auto& s : stops) {
    if (s.empty()) continue;
    const size_t at = text.find(s);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  return text.substr(0, cut);
}

std::string humaneval_program(const CodeProblem& p, const std::string& completion) {
  return p.prompt + completion + "\n" + p.test + "\n" + "check(" + p.entry_point + ")";
}

namespace {
std::string mbpp_question(const CodeProblem& p) {
  return "You are an expert Python programmer, and here is your task: " + p.prompt +
         " Your code should pass these tests:\n\n" + join(p.test_list, "\n") + "\n[BEGIN]\n";
}
}  // namespace

std::string mbpp_prompt(const CodeProblem& p, const std::vector<CodeProblem>& exemplars) {
  std::string out;
  for (const auto& e : exemplars) out += mbpp_question(e) + e.reference + "\n[DONE]\n\n";
  return out + mbpp_question(p);
}

std::string mbpp_program(const CodeProblem& p, const std::string& completion) {
  return completion + "\n" + p.test_setup_code + "\n" + join(p.test_list, "\n") + "\n";
}

double pass_at_k(int n, int c, int k) {
  QS_THROW_IF_NOT(n >= 1 && c >= 0 && c <= n && k >= 1 && k <= n, "pass_at_k: need 0 <= c <= n, ",
                  "1 <= k <= n; got n=", n, " c=", c, " k=", k);
  if (n - c < k) return 1.0;
  double fail = 1.0;  // C(n-c, k) / C(n, k) as a product of ratios in (0, 1]
  for (int i = n - c + 1; i <= n; ++i) fail *= 1.0 - static_cast<double>(k) / i;
  return 1.0 - fail;
}

const char* to_string(CodeEvalStatus s) {
  switch (s) {
    case CodeEvalStatus::ok:
      return "ok";
    case CodeEvalStatus::skipped:
      return "skipped";
    case CodeEvalStatus::error:
      return "error";
  }
  return "?";
}

CodeEvalResult run_humaneval(const GenerateFn& generate, const std::string& file,
                             const CodeEvalOptions& opt) {
  std::vector<std::string> ids;
  auto problems = std::make_shared<std::vector<CodeProblem>>();
  auto load = [&](std::string*) {
    *problems = load_humaneval(file);
    std::vector<Prepared> items;
    for (const auto& p : *problems) {
      ids.push_back(p.task_id);
      items.push_back({p.prompt, [&p](const std::string& c) { return humaneval_program(p, c); }});
    }
    return items;
  };
  return run_code_task("humaneval", generate, file, opt, humaneval_stop_sequences(), load,
                       "prompt+completion+\"\\n\"+test+\"\\n\"+\"check(entry_point)\"", &ids);
}

CodeEvalResult run_mbpp(const GenerateFn& generate, const std::string& file,
                        const CodeEvalOptions& opt) {
  std::vector<std::string> ids;
  auto problems = std::make_shared<std::vector<CodeProblem>>();
  std::vector<CodeProblem> exemplars;
  std::vector<const CodeProblem*> chosen;
  auto load = [&](std::string* note) {
    *problems = load_mbpp(file);
    std::map<int, const CodeProblem*> by_number;
    for (const auto& p : *problems) by_number[mbpp_number(p)] = &p;
    if (by_number.count(2) && by_number.count(3) && by_number.count(4))
      for (int e : {2, 3, 4}) exemplars.push_back(*by_number[e]);
    bool has_test_split = false;
    for (const auto& p : *problems) {
      const int num = mbpp_number(p);
      if (num >= 11 && num <= 510) has_test_split = true;
    }
    for (const auto& p : *problems) {
      const int num = mbpp_number(p);
      if (has_test_split ? (num >= 11 && num <= 510)
                         : !(exemplars.size() == 3 && num >= 2 && num <= 4))
        chosen.push_back(&p);
    }
    *note = cat(has_test_split ? " split=test(11-510)" : " split=all",
                " fewshot=", exemplars.size() == 3 ? "3(tasks 2,3,4)" : "0");
    std::vector<Prepared> items;
    for (const CodeProblem* p : chosen) {
      ids.push_back(p->task_id);
      items.push_back(
          {mbpp_prompt(*p, exemplars), [p](const std::string& c) { return mbpp_program(*p, c); }});
    }
    return items;
  };
  return run_code_task("mbpp", generate, file, opt, mbpp_stop_sequences(), load,
                       "completion+\"\\n\"+test_setup_code+\"\\n\"+test_list asserts", &ids);
}

}  // namespace qsweep
