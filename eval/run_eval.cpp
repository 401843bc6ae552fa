#include "eval/run_eval.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>

#include "common/errors.h"
#include "eval/code_tasks.h"
#include "eval/datasets.h"
#include "eval/generation.h"
#include "eval/gsm8k.h"
#include "eval/kl_divergence.h"
#include "eval/line_completion.h"
#include "eval/multiple_choice.h"
#include "eval/perplexity.h"

namespace qsweep {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::vector<std::string> files_under(const std::string& path) {
  std::vector<std::string> out;
  if (fs::is_directory(path)) {
    for (const auto& f : fs::recursive_directory_iterator(path))
      if (f.is_regular_file()) out.push_back(f.path().string());
  } else if (fs::is_regular_file(path)) {
    out.push_back(path);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(start, end - start);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

EvalResult ok_result(Task task, double value, double standard_error, int64_t items,
                     const std::string& protocol, json details) {
  EvalResult r;
  r.task = task;
  r.value = value;
  r.standard_error = standard_error;
  r.items = items;
  r.protocol = protocol;
  r.details = std::move(details);
  return r;
}

EvalResult skipped(Task task, const std::string& status, const std::string& protocol) {
  EvalResult r;
  r.task = task;
  r.status = status;
  r.protocol = protocol;
  return r;
}

EvalDataset text_dataset(const EvalConfig& e, const TaskData& data) {
  return {e.dataset, data.path, data.domain};
}

/// The dataset's tokens: the caller's, or read and tokenized here into `own`.
const std::vector<int>& text_tokens(const EvalConfig& e, const EvalInputs& in,
                                    std::vector<int>* own) {
  if (in.text_tokens) return *in.text_tokens;
  *own = in.tokenizer.encode(read_dataset_text(text_dataset(e, in.data)), /*add_bos=*/false);
  return *own;
}

EvalResult run_perplexity(const EvalConfig& e, const EvalInputs& in) {
  PerplexityOptions po;
  po.protocol = parse_protocol(e.protocol);
  po.ctx = e.ctx;
  po.stride = e.stride;
  po.max_tokens = e.max_tokens;
  po.progress = in.progress;
  po.backend = in.backend;
  std::vector<int> own;
  PerplexityResult pr = evaluate_perplexity(in.model, text_tokens(e, in, &own), po);
  EvalResult r;
  r.task = Task::Perplexity;
  r.value = pr.perplexity;
  r.items = pr.scored_tokens;
  r.protocol = pr.protocol;
  r.details = {{"mean_nll", pr.mean_nll},
               {"nll_standard_error", pr.nll_standard_error},
               {"scored_tokens", pr.scored_tokens},
               {"tokens_used", pr.tokens_used},
               {"tokens_dropped", pr.tokens_dropped},
               {"tokens_in_text", pr.tokens_in_text},
               {"windows", pr.windows},
               {"ctx", pr.ctx},
               {"stride", pr.stride},
               {"seconds", pr.seconds},
               {"tokens_per_second", pr.tokens_per_second}};
  r.token_nll = std::move(pr.token_nll);
  return r;
}

EvalResult run_kld(const EvalConfig& e, const EvalInputs& in) {
  KlBaseline base;
  if (in.write_kld_baseline) {
    KlBaselineOptions o;
    o.ctx = e.ctx;
    o.max_tokens = e.max_tokens;
    o.top_k = std::min(e.top_k, in.model.spec().vocab_size);
    std::vector<int> own;
    base = compute_kl_baseline(in.model, text_tokens(e, in, &own), o);
    write_kl_baseline(in.kld_baseline_file, base);
  } else {
    base = read_kl_baseline(in.kld_baseline_file);
  }
  const KlResult r = evaluate_kl_divergence(in.model, base);
  return ok_result(Task::Kld, r.mean_kld, r.kld_standard_error, r.tokens, r.protocol,
                   {{"median_kld", r.median_kld},
                    {"p99_kld", r.p99_kld},
                    {"max_kld", r.max_kld},
                    {"top1_agreement_pct", r.top1_agreement},
                    {"top1_agreement_standard_error", r.top1_agreement_standard_error},
                    {"mean_delta_logp", r.mean_delta_logp},
                    {"delta_logp_standard_error", r.delta_logp_standard_error},
                    {"top_k", r.top_k},
                    {"exact", r.exact},
                    {"seconds", r.seconds}});
}

EvalResult run_line_completion_task(const EvalConfig& e, const EvalInputs& in) {
  LineCompletionOptions o;
  o.limit = int(e.limit);
  o.seed = e.seed;
  o.max_new_tokens = e.max_new_tokens;
  o.context_tokens = e.ctx;
  const LineCompletionResult r =
      run_line_completion(read_dataset_text(text_dataset(e, in.data)), in.tokenizer,
                          make_generate_fn(in.model, in.tokenizer), o);
  return ok_result(Task::LineCompletion, 100 * r.exact_match, 100 * r.exact_match_se, r.items,
                   r.protocol,
                   {{"edit_similarity_pct", 100 * r.edit_similarity},
                    {"edit_similarity_standard_error", 100 * r.edit_similarity_se}});
}

EvalResult run_code_task(const EvalConfig& e, const EvalInputs& in) {
  CodeEvalOptions o;
  o.limit = int(e.limit);
  o.n_samples = e.samples;
  o.ks = {1};
  for (int k : {10, 100})
    if (k <= e.samples) o.ks.push_back(k);
  o.generation.max_new_tokens = e.max_new_tokens;
  o.generation.temperature = e.temperature;
  o.generation.top_p = e.temperature > 0 ? 0.95 : 1.0;
  o.generation.seed = e.seed;
  const GenerateFn gen = make_generate_fn(in.model, in.tokenizer);
  const CodeEvalResult r = e.task == Task::HumanEval ? run_humaneval(gen, in.data.path, o)
                                                     : run_mbpp(gen, in.data.path, o);
  if (r.status == CodeEvalStatus::skipped) return skipped(e.task, r.message, r.protocol);
  QS_THROW_IF_NOT(r.status == CodeEvalStatus::ok, task_name(e.task), ": ", r.message);
  json pass = json::object(), se = json::object();
  for (const auto& [k, v] : r.pass_at) pass[cat("pass@", k)] = 100 * v;
  for (const auto& [k, v] : r.standard_error) se[cat("pass@", k)] = 100 * v;
  return ok_result(e.task, 100 * r.pass_at.at(1), 100 * r.standard_error.at(1), r.items, r.protocol,
                   {{"pass_at_pct", pass},
                    {"pass_at_standard_error", se},
                    {"sample_status_counts", r.sample_status_counts},
                    {"isolation", r.isolation},
                    {"seconds", r.wall_seconds}});
}

EvalResult run_multiple_choice(const EvalConfig& e, const EvalInputs& in) {
  McOptions o;
  o.shots = e.shots;
  o.limit = e.limit;
  o.subjects = split_commas(e.subjects);
  const McResult r =
      evaluate_multiple_choice(e.task == Task::Mmlu ? McBenchmark::Mmlu : McBenchmark::Ceval,
                               in.data.path, make_transformer_scorer(in.model, in.tokenizer), o);
  if (r.status != "ok") return skipped(e.task, r.status, r.protocol);
  json subjects = json::object();
  for (const auto& s : r.subjects)
    subjects[s.subject] = {{"items", s.items}, {"accuracy_pct", 100 * s.accuracy}};
  return ok_result(e.task, 100 * r.micro_accuracy, 100 * r.micro_standard_error, r.items,
                   r.protocol,
                   {{"macro_accuracy_pct", 100 * r.macro_accuracy},
                    {"items_fewer_shots", r.items_fewer_shots},
                    {"items_truncated", r.items_truncated},
                    {"subjects", subjects},
                    {"seconds", r.seconds}});
}

EvalResult run_gsm8k(const EvalConfig& e, const EvalInputs& in) {
  Gsm8kOptions o;
  o.shots = e.shots;
  o.max_new_tokens = e.max_new_tokens;
  o.limit = e.limit;
  const std::string dir = fs::is_directory(in.data.path) || !in.data.present
                              ? in.data.path
                              : fs::path(in.data.path).parent_path().string();
  const Gsm8kResult r = evaluate_gsm8k(dir, make_generate_fn(in.model, in.tokenizer), o);
  if (r.status != "ok") return skipped(e.task, r.status, r.protocol);
  return ok_result(Task::Gsm8k, 100 * r.accuracy, 100 * r.standard_error, r.items, r.protocol,
                   {{"no_number", r.no_number}, {"seconds", r.seconds}});
}

}  // namespace

TaskData resolve_task_data(const EvalConfig& e, const std::string& data_dir) {
  TaskData d;
  if (is_text_task(e.task)) {
    const EvalDataset ds = resolve_eval_dataset(e.dataset, data_dir);  // throws when missing
    d.path = ds.path;
    d.domain = ds.domain;
    d.present = true;
    d.files = {ds.path};
    return d;
  }
  // A benchmark: its default place in the data directory, or the path given.
  const TaskInfo& info = task_info(e.task);
  const bool default_name = e.dataset == info.name;
  if (!default_name)
    d.path = e.dataset;
  else if (e.task == Task::HumanEval)
    d.path = humaneval_file(data_dir);
  else if (e.task == Task::Mbpp)
    d.path = mbpp_file(data_dir);
  else
    d.path = (fs::path(data_dir) / info.name).string();
  d.domain = info.domain;
  d.present = fs::exists(d.path);
  if (d.present) d.files = files_under(d.path);
  return d;
}

json EvalResult::to_json() const {
  const auto number = [](const std::optional<double>& v) { return v ? json(*v) : json(); };
  json j = details;
  if (task == Task::Perplexity) {
    // metrics.json of a perplexity node: the run-time extras stay out of it.
    j.erase("tokens_in_text");
    j.erase("tokens_per_second");
    j["value"] = number(value);
    j["protocol"] = protocol;
    return j;
  }
  j["value"] = number(value);
  j["standard_error"] = number(standard_error);
  j["status"] = status;
  j["items"] = items;
  j["protocol"] = protocol;
  return j;
}

namespace {

EvalResult dispatch(const EvalConfig& e, const EvalInputs& in) {
  switch (e.task) {
    case Task::Perplexity:
      return run_perplexity(e, in);
    case Task::Kld:
      return run_kld(e, in);
    case Task::LineCompletion:
      return run_line_completion_task(e, in);
    case Task::HumanEval:
    case Task::Mbpp:
      return run_code_task(e, in);
    case Task::Mmlu:
    case Task::Ceval:
      return run_multiple_choice(e, in);
    case Task::Gsm8k:
      return run_gsm8k(e, in);
  }
  QS_ASSERT(false, "unhandled task");
  return {};
}

/// The first non-finite number of a metric, as "key = value"; empty when all are finite.
std::string first_non_finite(const EvalResult& r) {
  const auto bad = [](const std::optional<double>& v) { return v && !std::isfinite(*v); };
  if (bad(r.value)) return cat("value = ", *r.value);
  if (bad(r.standard_error)) return cat("standard_error = ", *r.standard_error);
  for (auto it = r.details.begin(); it != r.details.end(); ++it)
    if (it->is_number_float() && !std::isfinite(it->get<double>()))
      return cat(it.key(), " = ", it->get<double>());
  return {};
}

}  // namespace

EvalResult run_eval(const EvalConfig& e, const EvalInputs& in) {
  QS_THROW_IF_NOT(e.ctx > 0, "eval '", e.id, "': run_eval needs a resolved configuration (ctx ",
                  e.ctx, "); call EvalConfig::resolved with the model's context");
  const std::string who =
      cat(in.label.empty() ? std::string() : in.label + ": ", "eval '", e.id, "': ");
  // Every task runs the one Transformer on in.backend: the same weights (shared storage, not
  // copied) on that backend. Perplexity takes it through PerplexityOptions (its own
  // device-resident NLL reduction).
  std::unique_ptr<Transformer> on_backend;
  std::optional<EvalInputs> moved;
  if (in.backend && e.task != Task::Perplexity && &in.model.backend() != in.backend) {
    on_backend = std::make_unique<Transformer>(in.model.spec(), in.model.weights(), *in.backend);
    moved.emplace(*on_backend, in.tokenizer, in.data);
    moved->text_tokens = in.text_tokens;
    moved->kld_baseline_file = in.kld_baseline_file;
    moved->write_kld_baseline = in.write_kld_baseline;
    moved->backend = in.backend;
    moved->progress = in.progress;
    moved->label = in.label;
  }
  EvalResult r;
  try {
    r = dispatch(e, moved ? *moved : in);
  } catch (const NonFiniteMetric& err) {  // other errors name their file already
    throw Error(who + err.what());
  }
  const std::string bad = first_non_finite(r);
  QS_THROW_IF_NOT(bad.empty(), who, "the metric ", bad,
                  " is not finite; the model's outputs are degenerate (corrupt weights or "
                  "out-of-range config numbers), no value is reported");
  return r;
}

}  // namespace qsweep
