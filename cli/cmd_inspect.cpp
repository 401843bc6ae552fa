#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/data_dir.h"
#include "common/errors.h"
#include "model/model_spec.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"

namespace qsweep::cli {

const CommandSpec& inspect_command() {
  static const CommandSpec cmd = {
      "inspect",
      "qsweep inspect MODEL [--json]",
      "A model's architecture, parameter count, tokenizer and tensors (a Hugging Face\n"
      "directory or a model name under <data dir>/../models).",
      {{"data-dir", "DIR", "", "where datasets live (else $QSWEEP_DATA, else ../shared/data)"},
       {"json", "", "", "machine-readable output"}},
      ""};
  return cmd;
}

int cmd_inspect(const std::vector<std::string>& argv) {
  Args args(argv, inspect_command());
  QS_THROW_IF_NOT(args.positional().size() == 1, "usage: qsweep inspect MODEL_DIR [--json]");
  const std::string dir = resolve_model_dir(args.positional()[0], args.get("data-dir"));
  const ModelSpec spec = load_model_spec(dir);
  const SafetensorsCheckpoint ckpt(dir);
  const auto tok = load_tokenizer(dir);
  long long stored = 0;
  for (const TensorView* t : ckpt.tensors()) stored += t->numel();

  if (args.has("json")) {
    nlohmann::json j;
    j["model_dir"] = dir;
    j["architecture"] = spec.arch_name;
    j["parameters"] = stored;
    j["vocab_size"] = spec.vocab_size;
    j["hidden_size"] = spec.hidden_size;
    j["intermediate_size"] = spec.intermediate_size;
    j["num_layers"] = spec.num_layers;
    j["num_heads"] = spec.num_heads;
    j["num_kv_heads"] = spec.num_kv_heads;
    j["head_dim"] = spec.head_dim;
    j["max_position_embeddings"] = spec.max_position_embeddings;
    j["rope_theta"] = spec.rope_theta;
    j["rms_norm_eps"] = spec.rms_norm_eps;
    j["tie_word_embeddings"] = spec.tie_word_embeddings;
    j["tokenizer"] = tok->describe();
    j["files"] = ckpt.files();
    for (const TensorView* t : ckpt.tensors())
      j["tensors"].push_back(
          {{"name", t->name}, {"dtype", dtype_name(t->dtype)}, {"shape", t->shape}});
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("model        %s\n", dir.c_str());
  std::printf("architecture %s\n", spec.arch_name.c_str());
  std::printf("parameters   %lld (%.2fM)\n", stored, double(stored) / 1e6);
  std::printf("layers       %d, hidden %d, MLP %d, heads %d, KV heads %d (head dim %d)%s\n",
              spec.num_layers, spec.hidden_size, spec.intermediate_size, spec.num_heads,
              spec.num_kv_heads, spec.head_dim, spec.num_kv_heads < spec.num_heads ? ", GQA" : "");
  std::printf("vocab        %d, context %d, rope theta %g, rms eps %g, tied embeddings %s\n",
              spec.vocab_size, spec.max_position_embeddings, spec.rope_theta, spec.rms_norm_eps,
              spec.tie_word_embeddings ? "yes" : "no");
  std::printf("tokenizer    %s, add_bos %s\n", tok->describe().c_str(),
              tok->add_bos_token() ? "yes" : "no");
  std::printf("tensors      %zu in %zu file(s)\n", ckpt.tensors().size(), ckpt.files().size());
  for (const TensorView* t : ckpt.tensors())
    std::printf("  %-48s %s\n", t->name.c_str(), t->describe().c_str());
  return 0;
}

}  // namespace qsweep::cli
