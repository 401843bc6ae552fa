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
#include "eval/run_eval.h"
#include "formats/formats.h"
#include "formats/gguf.h"
#include "model/model_spec.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "model/weights.h"
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

// Line completion, HumanEval, MBPP, MMLU, C-Eval, GSM8K on one model: the sweep's own
// run_eval, so `qsweep eval` and an eval node measure the same thing.
int eval_task(const Args& args, const std::string& task, const std::string& model_dir,
              const std::string& data_dir_flag) {
  QS_THROW_IF_NOT(task_from_name(task) != Task::Kld,
                  "--task kld compares a model with a baseline's stored "
                  "next-token distributions: run it in a sweep (qsweep run; see "
                  "configs/capabilities.yaml)");
  for (const char* f : {"protocol", "ctx", "stride", "max-tokens"})
    QS_THROW_IF_NOT(!args.has(f), "--", f, " applies to --task perplexity only");
  std::vector<std::pair<std::string, std::string>> options = {{"task", task}};
  if (args.has("dataset")) options.emplace_back("dataset", args.get("dataset"));
  for (const char* f : kTaskFlags)
    if (args.has(f)) options.emplace_back(underscores(f), args.get(f));
  const EvalConfig e = parse_eval_options(options);
  const TaskData data = resolve_task_data(e, resolve_data_dir(data_dir_flag));
  CliModel m = load_cli_model(model_dir);
  const EvalResult res = run_eval(e.resolved(m.model->spec().max_position_embeddings),
                                  EvalInputs(*m.model, *m.tokenizer, data));
  const TaskInfo& info = task_info(e.task);
  if (args.has("json")) {
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
  // A benchmark whose data is absent is reported, not an error (as in a sweep).
  return 0;
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

// Perplexity on one model, on the CPU or (on_cuda) `backend`, with the command line's own
// checks and messages (flags, not sweep keys), then the sweep's run_eval.
int eval_perplexity(const Args& args, const std::string& model_dir,
                    const std::string& data_dir_flag, Backend& backend, bool on_cuda) {
  EvalConfig e;
  e.task = Task::Perplexity;
  e.dataset = args.get("dataset", "wikitext2");
  e.protocol = protocol_name(parse_protocol(args.get("protocol", "chunks")));
  e.ctx = int(args.get_int("ctx", 0));
  e.stride = int(args.get_int("stride", 0));
  e.max_tokens = args.get_int("max-tokens", 0);
  QS_THROW_IF_NOT(e.max_tokens >= 0, "--max-tokens must be >= 0");
  const TaskData data = resolve_task_data(e, resolve_data_dir(data_dir_flag));

  CliModel m = load_cli_model(model_dir);
  const ModelSpec& spec = m.model->spec();
  e = e.resolved(spec.max_position_embeddings);
  QS_THROW_IF_NOT(e.ctx >= 2, "--ctx must be at least 2");
  if (e.ctx > spec.max_position_embeddings)
    std::fprintf(stderr,
                 "warning: --ctx %d exceeds the model's max_position_embeddings %d; this measures "
                 "extrapolation, not quality\n",
                 e.ctx, spec.max_position_embeddings);

  // Tokenized here, so that the time it takes is reported apart from the evaluation.
  const std::string text = read_dataset_text({e.dataset, data.path, data.domain});
  const auto t1 = std::chrono::steady_clock::now();
  const std::vector<int> tokens = m.tokenizer->encode(text, /*add_bos=*/false);
  const double tok_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  EvalInputs in(*m.model, *m.tokenizer, data);
  in.text_tokens = &tokens;
  in.backend = on_cuda ? &backend : nullptr;
  in.progress = !args.has("no-progress");
  const EvalResult r = run_eval(e, in);
  print_perplexity(args.has("json"), model_dir, m.format, e, data, r, m.load_seconds, tok_s,
                   backend.name());
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
  const std::string task = args.get("task", task_name(Task::Perplexity));
  const bool perplexity = task_from_name(task) == Task::Perplexity;  // unknown: checked later
  // auto: CUDA when a device is usable, else the CPU. Perplexity runs on either; the other
  // tasks (generation, multiple choice) run on the CPU only so far (issue #7).
  const std::string device = args.get("device", "auto");
  std::unique_ptr<Backend> backend = make_backend(device);
  const bool on_cuda = backend->name() != "cpu";
  if (!perplexity && on_cuda) {
    QS_THROW_IF_NOT(device == "auto", "--device cuda: --task ", task,
                    " runs on the CPU only so far (perplexity runs on CUDA); use --device cpu");
    backend = make_backend("cpu");
  }

  const std::string data_dir_flag = args.get("data-dir");
  const std::string model_dir = resolve_model_dir(args.require("model"), data_dir_flag);
  if (!perplexity) return eval_task(args, task, model_dir, data_dir_flag);
  for (const char* f : kTaskFlags)
    QS_THROW_IF_NOT(!args.has(f), "--", f, " does not apply to --task perplexity");
  return eval_perplexity(args, model_dir, data_dir_flag, *backend, on_cuda);
}

}  // namespace qsweep::cli
