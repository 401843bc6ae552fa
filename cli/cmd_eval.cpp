#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "backends/backend.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/data_dir.h"
#include "common/errors.h"
#include "eval/datasets.h"
#include "eval/perplexity.h"
#include "eval/run_eval.h"
#include "formats/formats.h"
#include "formats/gguf.h"
#include "model/memory_estimate.h"
#include "model/model_spec.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "pipeline/spec.h"

namespace qsweep::cli {

namespace {

struct CliModel {
  std::string dir, format;
  std::unique_ptr<Tokenizer> tokenizer;
  std::optional<Transformer> model;
  double load_seconds = 0;
};

// A .gguf file carries its spec and tokenizer; a directory has config.json and tokenizer.model.
CliModel load_cli_model(const std::string& model_dir) {
  CliModel m;
  m.dir = model_dir;
  const auto t0 = std::chrono::steady_clock::now();
  const bool gguf = is_gguf_file(model_dir);
  LoadedModel loaded = load_model(model_dir);
  m.tokenizer = gguf ? load_gguf_tokenizer(model_dir) : load_tokenizer(model_dir);
  QS_THROW_IF_NOT(m.tokenizer->vocab_size() <= loaded.spec.vocab_size, model_dir,
                  ": tokenizer has ", m.tokenizer->vocab_size(),
                  " pieces but config.json vocab_size is ", loaded.spec.vocab_size);
  m.format = loaded.description;
  m.model.emplace(loaded.spec, std::move(loaded.weights));
  m.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

// What `qsweep eval --task T` prints for the tasks other than perplexity (text or --json).
void print_task(bool as_json, const std::string& model_dir, const CliModel& m, const TaskData& data,
                const EvalResult& res) {
  const TaskInfo& info = task_info(res.task);
  if (as_json) {
    nlohmann::json j = {{"task", info.name},
                        {"model", model_dir},
                        {"model_format", m.format},
                        {"data", data.path},
                        {"metric", info.metric},
                        {"higher_is_better", info.higher_is_better},
                        {"load_seconds", m.load_seconds},
                        {"device", "cpu"},
                        {"threads", backend_threads()}};
    j.update(res.to_json());
    std::printf("%s\n", j.dump(2).c_str());
  } else if (!res.value) {
    std::printf("%s: %s\n", info.name.c_str(), res.status.c_str());
  } else {
    std::printf("%s %s %.2f ± %.2f  (%lld items)\n", info.name.c_str(), info.metric.c_str(),
                *res.value, res.standard_error.value_or(0), (long long)res.items);
    std::printf("  model    %s (%s)\n", model_dir.c_str(), m.format.c_str());
    std::printf("  data     %s\n", data.path.c_str());
    std::printf("  protocol %s\n", res.protocol.c_str());
  }
}

// What `qsweep eval --task perplexity` prints (text or --json).
void print_perplexity(bool as_json, const std::string& model_dir, const std::string& format,
                      const EvalConfig& e, const TaskData& data, const EvalResult& r, double load_s,
                      double tok_s, const std::string& device) {
  const nlohmann::json& d = r.details;
  const double perplexity = *r.value, mean_nll = d["mean_nll"], nll_se = d["nll_standard_error"];
  const double eval_s = d["seconds"], tokens_per_second = d["tokens_per_second"];
  const int ctx = d["ctx"], stride = d["stride"];
  const int64_t tokens_in_text = d["tokens_in_text"], tokens_used = d["tokens_used"],
                tokens_dropped = d["tokens_dropped"], windows = d["windows"],
                scored_tokens = d["scored_tokens"];
  if (as_json) {
    nlohmann::json j;
    j["task"] = "perplexity";
    j["model"] = model_dir;
    j["model_format"] = format;
    j["dataset"] = {{"name", e.dataset}, {"file", data.path}, {"domain", data.domain}};
    j["protocol"] = r.protocol;
    j["ctx"] = ctx;
    j["stride"] = stride ? nlohmann::json(stride) : nlohmann::json();
    j["tokenization"] = "text tokenized as-is, no BOS";
    j["tokens_in_text"] = tokens_in_text;
    j["tokens_used"] = tokens_used;
    j["tokens_dropped"] = tokens_dropped;
    j["windows"] = windows;
    j["scored_tokens"] = scored_tokens;
    j["mean_nll"] = mean_nll;
    j["perplexity"] = perplexity;
    j["nll_standard_error"] = nll_se;
    j["seconds"] = {{"load", load_s}, {"tokenize", tok_s}, {"eval", eval_s}};
    j["tokens_per_second"] = tokens_per_second;
    j["device"] = device;
    j["threads"] = backend_threads();
    j["compute"] = "fp32";
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("perplexity %.4f  (mean NLL %.6f ± %.6f nats)\n", perplexity, mean_nll, nll_se);
    std::printf("  model    %s (%s)\n", model_dir.c_str(), format.c_str());
    std::printf("  dataset  %s (%s)\n", e.dataset.c_str(), data.path.c_str());
    std::printf("  protocol %s, ctx %d", r.protocol.c_str(), ctx);
    if (stride) std::printf(", stride %d", stride);
    std::printf("; text tokenized as-is without BOS\n");
    std::printf("  tokens   %lld in text, %lld used, %lld dropped, %lld windows, %lld scored\n",
                (long long)tokens_in_text, (long long)tokens_used, (long long)tokens_dropped,
                (long long)windows, (long long)scored_tokens);
    std::printf(
        "  time     load %.2fs, tokenize %.2fs, eval %.2fs (%.0f tokens/s, %s, %d threads)\n",
        load_s, tok_s, eval_s, tokens_per_second, device.c_str(), backend_threads());
  }
}

// What a task option means on the command line (the keys are the task table's).
const std::map<std::string, std::pair<std::string, std::string>>& option_help() {
  static const std::map<std::string, std::pair<std::string, std::string>> help = {
      {"protocol", {"chunks|strided", "perplexity windows: disjoint chunks or strided"}},
      {"ctx", {"N", "context per window (default: the model's max_position_embeddings)"}},
      {"stride", {"N", "strided protocol: tokens between window starts (default: ctx/2)"}},
      {"max-tokens", {"N", "score only the first N tokens of the text (default: all)"}},
      {"top-k", {"N", "kld: baseline top-k stored per position"}},
      {"limit", {"N", "items to evaluate (default: the task's; mmlu/ceval: per subject)"}},
      {"subjects", {"LIST", "comma-separated subject names (default: all)"}},
      {"shots", {"N", "few-shot examples (default: the task's)"}},
      {"samples", {"N", "completions per problem, for pass@k"}},
      {"temperature", {"T", "sampling temperature; 0 = greedy"}},
      {"max-new-tokens", {"N", "generated tokens at most (default: the task's, <= ctx/2)"}},
      {"seed", {"N", "seed for positions and sampling"}},
  };
  return help;
}

// The task options' defaults as text, from EvalConfig's own defaults.
std::string default_text(const std::string& key) {
  const EvalConfig d;
  if (key == "protocol") return d.protocol;
  if (key == "top_k") return std::to_string(d.top_k);
  if (key == "samples") return std::to_string(d.samples);
  if (key == "temperature") return "0";
  if (key == "seed") return std::to_string(d.seed);
  return "";
}

// The flags every task takes, in task-table order, each saying which tasks use it.
std::vector<std::string> task_option_keys() {
  std::vector<std::string> keys;
  for (const TaskInfo& t : task_table())
    for (const std::string& k : t.keys)
      if (k != "dataset" && std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  return keys;
}

}  // namespace

const CommandSpec& eval_command() {
  static const CommandSpec cmd = [] {
    CommandSpec c;
    c.name = "eval";
    c.usage = "qsweep eval --model MODEL [--task TASK] [--dataset NAME|FILE] [options]";
    c.summary =
        "Evaluates one model (a Hugging Face directory, a GPTQ/AWQ checkpoint or a .gguf file)\n"
        "on one task, exactly as an eval entry of a sweep file does (docs/sweep-format.md).";
    c.options = {
        {"model", "MODEL", "", "the model to evaluate (required)"},
        {"task", "TASK", task_name(Task::Perplexity),
         "one of " + join(task_names()) + " (kld: sweeps only)"},
        {"dataset", "NAME|FILE", "",
         "text dataset (wikitext2, code-heldout or a file; perplexity's default wikitext2) or "
         "a benchmark's file/folder (default: its place in the data directory)"}};
    for (const std::string& key : task_option_keys()) {
      std::vector<std::string> users;
      for (const TaskInfo& t : task_table())
        if (std::find(t.keys.begin(), t.keys.end(), key) != t.keys.end()) users.push_back(t.name);
      const auto& [value, help] = option_help().at(flag_name(key));
      c.options.push_back(
          {flag_name(key), value, default_text(key), help + " [" + join(users) + "]"});
    }
    c.options.push_back(
        {"data-dir", "DIR", "", "where datasets live (else $QSWEEP_DATA, else ../shared/data)"});
    c.options.push_back({"device", "auto|cpu|cuda", "auto",
                         "where the model runs, for every task (auto: a usable CUDA device, else "
                         "the CPU)"});
    c.options.push_back(threads_option());
    c.options.push_back(max_device_memory_option());
    c.options.push_back(
        {"max-memory", "GiB", "", "refuse up front when the estimated peak memory exceeds this"});
    c.options.push_back({"json", "", "", "machine-readable output"});
    c.options.push_back({"no-progress", "", "", "no progress line on stderr"});
    return c;
  }();
  return cmd;
}

// One path for every task: the options are checked by the sweep file's own eval reader
// (parse_eval_options), resolved for the model once, and run by the sweep's run_eval.
int cmd_eval(const std::vector<std::string>& argv) {
  const Args args(argv, eval_command());
  apply_threads(args);
  QS_THROW_IF_NOT(args.positional().empty(), "qsweep eval: unexpected argument '",
                  args.positional()[0], "'");
  const std::string task = args.get("task");
  std::vector<std::pair<std::string, std::string>> options = {{"task", task}};
  if (args.has("dataset"))
    options.emplace_back("dataset", args.get("dataset"));
  else if (task_from_name(task) == Task::Perplexity)
    options.emplace_back("dataset", "wikitext2");
  for (const std::string& key : task_option_keys())
    if (args.has(flag_name(key))) options.emplace_back(key, args.get(flag_name(key)));
  QS_THROW_IF_NOT(task_from_name(task) != Task::Kld,
                  "--task kld compares a model with a baseline's stored "
                  "next-token distributions: run it in a sweep (qsweep run; see "
                  "configs/capabilities.yaml)");
  EvalConfig e = parse_eval_options(options);

  // auto: CUDA when a device is usable, else the CPU. Every task runs its Transformer there.
  const std::string device = args.get("device");
  const std::unique_ptr<Backend> backend = make_backend(device);
  apply_max_device_memory(args, *backend);
  const bool on_cuda = backend->name() != "cpu";
  const std::string data_dir_flag = args.get("data-dir");
  const std::string model_dir = resolve_model_dir(args.require("model"), data_dir_flag);
  const TaskData data = resolve_task_data(e, resolve_data_dir(data_dir_flag));
  CliModel m = load_cli_model(model_dir);
  const ModelSpec& spec = m.model->spec();
  e = e.resolved(spec.max_position_embeddings);
  if (e.ctx > spec.max_position_embeddings)
    std::fprintf(stderr,
                 "warning: --ctx %d exceeds the model's max_position_embeddings %d; this measures "
                 "extrapolation, not quality\n",
                 e.ctx, spec.max_position_embeddings);

  if (const int64_t budget = max_memory_bytes(args))
    check_memory_budget(
        estimate_peak_memory(spec, {mapped_model_bytes(model_dir), e.ctx, e.ctx, 0}), budget,
        cat("qsweep eval ", model_dir), "lower --ctx, or use a smaller model");
  EvalInputs in(*m.model, *m.tokenizer, data);
  in.label = cat("model ", model_dir);
  in.progress = !args.has("no-progress");
  in.backend = on_cuda ? backend.get() : nullptr;
  std::vector<int> tokens;
  double tok_s = 0;
  if (e.task == Task::Perplexity) {
    // Tokenized here, so that the time it takes is reported apart from the evaluation.
    const std::string text = read_dataset_text({e.dataset, data.path, data.domain});
    const auto t1 = std::chrono::steady_clock::now();
    tokens = m.tokenizer->encode(text, /*add_bos=*/false);
    tok_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    in.text_tokens = &tokens;
  }
  const EvalResult r = run_eval(e, in);
  if (e.task == Task::Perplexity)
    print_perplexity(args.has("json"), model_dir, m.format, e, data, r, m.load_seconds, tok_s,
                     backend->name());
  else
    print_task(args.has("json"), model_dir, m, data, r);
  // A benchmark whose data is absent is reported, not an error (as in a sweep).
  return 0;
}

}  // namespace qsweep::cli
