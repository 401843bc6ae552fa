#include <unistd.h>

#include <chrono>
#include <cstdio>
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
#include "formats/formats.h"
#include "formats/gguf.h"
#include "model/model_spec.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "pipeline/detail/eval_tasks.h"
#include "pipeline/spec.h"

namespace qsweep::cli {

namespace {

// The options of the tasks other than perplexity, as flags; the sweep file spells them with
// '_' (max_new_tokens), the command line with '-'.
const char* const kTaskFlags[] = {"limit",       "subjects",       "shots", "samples",
                                  "temperature", "max-new-tokens", "seed"};

std::string underscores(std::string s) {
  for (char& c : s)
    if (c == '-') c = '_';
  return s;
}

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

// Line completion, HumanEval, MBPP, MMLU, C-Eval, GSM8K on one model: the sweep's own task
// runner, so `qsweep eval` and an eval node measure the same thing.
int eval_task(const Args& args, const std::string& task, const std::string& model_dir,
              const std::string& data_dir_flag) {
  QS_THROW_IF_NOT(task != "kld",
                  "--task kld compares a model with a baseline's stored "
                  "next-token distributions: run it in a sweep (qsweep run; see "
                  "configs/capabilities.yaml)");
  for (const char* f : {"protocol", "ctx", "stride", "max-tokens"})
    QS_THROW_IF_NOT(!args.has(f), "--", f, " applies to --task perplexity only");
  std::vector<std::pair<std::string, std::string>> options = {{"task", task}};
  if (args.has("dataset")) options.emplace_back("dataset", args.get("dataset"));
  for (const char* f : kTaskFlags)
    if (args.has(f)) options.emplace_back(underscores(f), args.get(f));
  const EvalSpec e = parse_eval_options(options);
  const detail::TaskData data = detail::resolve_task_data(e, resolve_data_dir(data_dir_flag));
  CliModel m = load_cli_model(model_dir);
  nlohmann::json r = detail::run_eval_task(e, data, *m.model, *m.tokenizer, nullptr, "", "");
  const detail::TaskMetric metric = detail::task_metric(task);
  if (args.has("json")) {
    nlohmann::json j = {{"task", task},
                        {"model", model_dir},
                        {"model_format", m.format},
                        {"data", data.path},
                        {"metric", metric.metric},
                        {"higher_is_better", metric.higher_is_better},
                        {"load_seconds", m.load_seconds},
                        {"device", "cpu"},
                        {"threads", backend_threads()}};
    j.update(r);
    std::printf("%s\n", j.dump(2).c_str());
  } else if (!r["value"].is_number()) {
    std::printf("%s: %s\n", task.c_str(), r.value("status", std::string("not run")).c_str());
  } else {
    std::printf("%s %s %.2f ± %.2f  (%lld items)\n", task.c_str(), metric.metric,
                r["value"].get<double>(), r["standard_error"].get<double>(),
                (long long)r["items"].get<int64_t>());
    std::printf("  model    %s (%s)\n", model_dir.c_str(), m.format.c_str());
    std::printf("  data     %s\n", data.path.c_str());
    std::printf("  protocol %s\n", r.value("protocol", std::string()).c_str());
  }
  // A benchmark whose data is absent is reported, not an error (as in a sweep).
  return 0;
}

}  // namespace

int cmd_eval(const std::vector<std::string>& argv) {
  std::set<std::string> value_flags = {"model",  "task",       "dataset",  "protocol", "ctx",
                                       "stride", "max-tokens", "data-dir", "device"};
  for (const char* f : kTaskFlags) value_flags.insert(f);
  Args args(argv, value_flags, {"json", "no-progress"});
  QS_THROW_IF_NOT(args.positional().empty(), "qsweep eval: unexpected argument '",
                  args.positional()[0], "'");
  const std::string task = args.get("task", "perplexity");
  // auto: CUDA when a device is usable, else the CPU. Perplexity runs on either; the other
  // tasks (generation, multiple choice) run on the CPU only so far (issue #7).
  const std::string device = args.get("device", "auto");
  std::unique_ptr<Backend> backend = make_backend(device);
  const bool on_cuda = backend->name() != "cpu";
  if (task != "perplexity" && on_cuda) {
    QS_THROW_IF_NOT(device == "auto", "--device cuda: --task ", task,
                    " runs on the CPU only so far (perplexity runs on CUDA); use --device cpu");
    backend = make_backend("cpu");
  }

  const std::string data_dir_flag = args.get("data-dir");
  const std::string model_dir = resolve_model_dir(args.require("model"), data_dir_flag);
  if (task != "perplexity") return eval_task(args, task, model_dir, data_dir_flag);
  for (const char* f : kTaskFlags)
    QS_THROW_IF_NOT(!args.has(f), "--", f, " does not apply to --task perplexity");
  PerplexityOptions opt;
  opt.protocol = parse_protocol(args.get("protocol", "chunks"));
  opt.ctx = int(args.get_int("ctx", 0));
  opt.stride = int(args.get_int("stride", 0));
  opt.max_tokens = args.get_int("max-tokens", 0);
  opt.progress = !args.has("no-progress");
  if (on_cuda) opt.backend = backend.get();
  QS_THROW_IF_NOT(opt.max_tokens >= 0, "--max-tokens must be >= 0");
  const EvalDataset ds =
      resolve_eval_dataset(args.get("dataset", "wikitext2"), resolve_data_dir(data_dir_flag));

  CliModel m = load_cli_model(model_dir);
  const ModelSpec& spec = m.model->spec();
  if (opt.ctx == 0) opt.ctx = spec.max_position_embeddings;
  QS_THROW_IF_NOT(opt.ctx >= 2, "--ctx must be at least 2");
  if (opt.ctx > spec.max_position_embeddings)
    std::fprintf(stderr,
                 "warning: --ctx %d exceeds the model's max_position_embeddings %d; this measures "
                 "extrapolation, not quality\n",
                 opt.ctx, spec.max_position_embeddings);
  const Transformer& model = *m.model;
  const auto& tok = m.tokenizer;
  const std::string& format = m.format;
  const double load_s = m.load_seconds;

  const std::string text = read_dataset_text(ds);
  const auto t1 = std::chrono::steady_clock::now();
  const std::vector<int> tokens = tok->encode(text, /*add_bos=*/false);
  const double tok_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  const PerplexityResult r = evaluate_perplexity(model, tokens, opt);

  if (args.has("json")) {
    nlohmann::json j;
    j["task"] = "perplexity";
    j["model"] = model_dir;
    j["model_format"] = format;
    j["dataset"] = {{"name", ds.name}, {"file", ds.path}, {"domain", ds.domain}};
    j["protocol"] = r.protocol;
    j["ctx"] = r.ctx;
    j["stride"] = r.stride ? nlohmann::json(r.stride) : nlohmann::json();
    j["tokenization"] = "text tokenized as-is, no BOS";
    j["tokens_in_text"] = r.tokens_in_text;
    j["tokens_used"] = r.tokens_used;
    j["tokens_dropped"] = r.tokens_dropped;
    j["windows"] = r.windows;
    j["scored_tokens"] = r.scored_tokens;
    j["mean_nll"] = r.mean_nll;
    j["perplexity"] = r.perplexity;
    j["nll_standard_error"] = r.nll_standard_error;
    j["seconds"] = {{"load", load_s}, {"tokenize", tok_s}, {"eval", r.seconds}};
    j["tokens_per_second"] = r.tokens_per_second;
    j["device"] = backend->name();
    j["threads"] = backend_threads();
    j["compute"] = "fp32";
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("perplexity %.4f  (mean NLL %.6f ± %.6f nats)\n", r.perplexity, r.mean_nll,
                r.nll_standard_error);
    std::printf("  model    %s (%s)\n", model_dir.c_str(), format.c_str());
    std::printf("  dataset  %s (%s)\n", ds.name.c_str(), ds.path.c_str());
    std::printf("  protocol %s, ctx %d", r.protocol.c_str(), r.ctx);
    if (r.stride) std::printf(", stride %d", r.stride);
    std::printf("; text tokenized as-is without BOS\n");
    std::printf("  tokens   %lld in text, %lld used, %lld dropped, %lld windows, %lld scored\n",
                (long long)r.tokens_in_text, (long long)r.tokens_used, (long long)r.tokens_dropped,
                (long long)r.windows, (long long)r.scored_tokens);
    std::printf(
        "  time     load %.2fs, tokenize %.2fs, eval %.2fs (%.0f tokens/s, %s, %d threads)\n",
        load_s, tok_s, r.seconds, r.tokens_per_second, backend->name().c_str(), backend_threads());
  }
  return 0;
}

}  // namespace qsweep::cli
