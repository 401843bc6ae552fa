#include "pipeline/detail/eval_tasks.h"

#include <algorithm>
#include <filesystem>

#include "common/errors.h"
#include "eval/code_tasks.h"
#include "eval/datasets.h"
#include "eval/generation.h"
#include "eval/gsm8k.h"
#include "eval/kl_divergence.h"
#include "eval/line_completion.h"
#include "eval/multiple_choice.h"

namespace qsweep::detail {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool is_text_task(const std::string& task) {
  return task == "perplexity" || task == "kld" || task == "line_completion";
}

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

json skipped(const std::string& status, const std::string& protocol) {
  return {{"value", nullptr},
          {"standard_error", nullptr},
          {"status", status},
          {"items", 0},
          {"protocol", protocol}};
}

}  // namespace

TaskData resolve_task_data(const EvalSpec& e, const std::string& data_dir) {
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
  const bool default_name = e.dataset == e.task;
  if (e.task == "humaneval")
    d.path = default_name ? humaneval_file(data_dir) : e.dataset;
  else if (e.task == "mbpp")
    d.path = default_name ? mbpp_file(data_dir) : e.dataset;
  else
    d.path = default_name ? (fs::path(data_dir) / e.task).string() : e.dataset;
  d.domain = e.task == "humaneval" || e.task == "mbpp" ? "code"
             : e.task == "gsm8k"                       ? "math"
                                                       : "knowledge";
  d.present = fs::exists(d.path);
  if (d.present) d.files = files_under(d.path);
  return d;
}

TaskMetric task_metric(const std::string& task) {
  if (task == "perplexity") return {"perplexity", false};
  if (task == "kld") return {"mean_kld", false};
  if (task == "line_completion") return {"exact_match_pct", true};
  if (task == "humaneval" || task == "mbpp") return {"pass@1_pct", true};
  return {"accuracy_pct", true};  // mmlu, ceval, gsm8k
}

EvalSpec with_task_defaults(const EvalSpec& in, int ctx) {
  EvalSpec e = in;
  auto cap = [&](int want) { return std::max(1, std::min(want, ctx / 2)); };
  if (e.task == "line_completion") {
    if (e.limit == 0) e.limit = 200;
    if (e.max_new_tokens == 0) e.max_new_tokens = cap(48);
  } else if (e.task == "humaneval" || e.task == "mbpp") {
    if (e.max_new_tokens == 0) e.max_new_tokens = cap(512);
    if (e.task == "mbpp" && e.shots < 0) e.shots = 3;
  } else if (e.task == "gsm8k") {
    if (e.shots < 0) e.shots = 8;
    if (e.max_new_tokens == 0) e.max_new_tokens = cap(256);
  } else if (e.task == "mmlu" || e.task == "ceval") {
    if (e.shots < 0) e.shots = 5;
  }
  return e;
}

json run_eval_task(const EvalSpec& spec, const TaskData& data, const Transformer& model,
                   const Tokenizer& tokenizer, const std::vector<int>* text_tokens,
                   const std::string& kld_baseline_in, const std::string& kld_baseline_out) {
  const int ctx_model = model.spec().max_position_embeddings;
  const EvalSpec e = with_task_defaults(spec, ctx_model);
  if (e.task == "kld") {
    QS_THROW_IF_NOT(text_tokens, "kld needs the tokenized dataset");
    KlBaseline base;
    if (kld_baseline_in.empty()) {
      KlBaselineOptions o;
      o.ctx = e.ctx > 0 ? e.ctx : ctx_model;
      o.max_tokens = e.max_tokens;
      o.top_k = std::min(e.top_k, model.spec().vocab_size);
      base = compute_kl_baseline(model, *text_tokens, o);
      write_kl_baseline(kld_baseline_out, base);
    } else {
      base = read_kl_baseline(kld_baseline_in);
    }
    const KlResult r = evaluate_kl_divergence(model, base);
    return {{"value", r.mean_kld},
            {"standard_error", r.kld_standard_error},
            {"status", "ok"},
            {"items", r.tokens},
            {"median_kld", r.median_kld},
            {"p99_kld", r.p99_kld},
            {"max_kld", r.max_kld},
            {"top1_agreement_pct", r.top1_agreement},
            {"top1_agreement_standard_error", r.top1_agreement_standard_error},
            {"mean_delta_logp", r.mean_delta_logp},
            {"delta_logp_standard_error", r.delta_logp_standard_error},
            {"top_k", r.top_k},
            {"exact", r.exact},
            {"protocol", r.protocol},
            {"seconds", r.seconds}};
  }
  const GenerateFn gen = make_generate_fn(model, tokenizer);
  if (e.task == "line_completion") {
    LineCompletionOptions o;
    o.limit = int(e.limit);
    o.seed = e.seed;
    o.max_new_tokens = e.max_new_tokens;
    o.context_tokens = ctx_model;
    const LineCompletionResult r = run_line_completion(
        read_dataset_text({e.dataset, data.path, data.domain}), tokenizer, gen, o);
    return {{"value", 100 * r.exact_match},
            {"standard_error", 100 * r.exact_match_se},
            {"status", "ok"},
            {"items", r.items},
            {"edit_similarity_pct", 100 * r.edit_similarity},
            {"edit_similarity_standard_error", 100 * r.edit_similarity_se},
            {"protocol", r.protocol}};
  }
  if (e.task == "humaneval" || e.task == "mbpp") {
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
    const CodeEvalResult r =
        e.task == "humaneval" ? run_humaneval(gen, data.path, o) : run_mbpp(gen, data.path, o);
    if (r.status == CodeEvalStatus::skipped) return skipped(r.message, r.protocol);
    QS_THROW_IF_NOT(r.status == CodeEvalStatus::ok, e.task, ": ", r.message);
    json pass = json::object(), se = json::object();
    for (const auto& [k, v] : r.pass_at) pass[cat("pass@", k)] = 100 * v;
    for (const auto& [k, v] : r.standard_error) se[cat("pass@", k)] = 100 * v;
    return {{"value", 100 * r.pass_at.at(1)},
            {"standard_error", 100 * r.standard_error.at(1)},
            {"status", "ok"},
            {"items", r.items},
            {"pass_at_pct", pass},
            {"pass_at_standard_error", se},
            {"sample_status_counts", r.sample_status_counts},
            {"isolation", r.isolation},
            {"protocol", r.protocol},
            {"seconds", r.wall_seconds}};
  }
  if (e.task == "mmlu" || e.task == "ceval") {
    McOptions o;
    o.shots = e.shots;
    o.limit = e.limit;
    o.subjects = split_commas(e.subjects);
    const McResult r =
        evaluate_multiple_choice(e.task == "mmlu" ? McBenchmark::Mmlu : McBenchmark::Ceval,
                                 data.path, make_transformer_scorer(model, tokenizer), o);
    if (r.status != "ok") return skipped(r.status, r.protocol);
    json subjects = json::object();
    for (const auto& s : r.subjects)
      subjects[s.subject] = {{"items", s.items}, {"accuracy_pct", 100 * s.accuracy}};
    return {{"value", 100 * r.micro_accuracy},
            {"standard_error", 100 * r.micro_standard_error},
            {"status", "ok"},
            {"items", r.items},
            {"macro_accuracy_pct", 100 * r.macro_accuracy},
            {"items_fewer_shots", r.items_fewer_shots},
            {"items_truncated", r.items_truncated},
            {"subjects", subjects},
            {"protocol", r.protocol},
            {"seconds", r.seconds}};
  }
  if (e.task == "gsm8k") {
    Gsm8kOptions o;
    o.shots = e.shots;
    o.max_new_tokens = e.max_new_tokens;
    o.limit = e.limit;
    const std::string dir = fs::is_directory(data.path) || !data.present
                                ? data.path
                                : fs::path(data.path).parent_path().string();
    const Gsm8kResult r = evaluate_gsm8k(dir, gen, o);
    if (r.status != "ok") return skipped(r.status, r.protocol);
    return {{"value", 100 * r.accuracy},
            {"standard_error", 100 * r.standard_error},
            {"status", "ok"},
            {"items", r.items},
            {"no_number", r.no_number},
            {"protocol", r.protocol},
            {"seconds", r.seconds}};
  }
  QS_THROW_IF_NOT(false, "unknown task '", e.task, "'");
  return {};
}

}  // namespace qsweep::detail
