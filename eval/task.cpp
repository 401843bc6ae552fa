#include "eval/task.h"

#include <algorithm>

#include "common/errors.h"

namespace qsweep {

const std::vector<TaskInfo>& task_table() {
  static const std::vector<TaskInfo> table = {
      {Task::Perplexity,
       "perplexity",
       "ppl",
       {"dataset", "protocol", "ctx", "stride", "max_tokens"},
       "",
       "perplexity",
       false,
       ""},
      {Task::Kld,
       "kld",
       "kld",
       {"dataset", "ctx", "max_tokens", "top_k"},
       "",
       "mean_kld",
       false,
       ""},
      {Task::LineCompletion,
       "line_completion",
       "linecomp",
       {"dataset", "ctx", "limit", "max_new_tokens", "seed"},
       "code-heldout",
       "exact_match_pct",
       true,
       ""},
      {Task::HumanEval,
       "humaneval",
       "humaneval",
       {"dataset", "limit", "samples", "temperature", "max_new_tokens", "seed"},
       "humaneval",
       "pass@1_pct",
       true,
       "code"},
      {Task::Mbpp,
       "mbpp",
       "mbpp",
       {"dataset", "limit", "samples", "temperature", "max_new_tokens", "seed", "shots"},
       "mbpp",
       "pass@1_pct",
       true,
       "code"},
      {Task::Mmlu,
       "mmlu",
       "mmlu",
       {"dataset", "limit", "subjects", "shots"},
       "mmlu",
       "accuracy_pct",
       true,
       "knowledge"},
      {Task::Ceval,
       "ceval",
       "ceval",
       {"dataset", "limit", "subjects", "shots"},
       "ceval",
       "accuracy_pct",
       true,
       "knowledge"},
      {Task::Gsm8k,
       "gsm8k",
       "gsm8k",
       {"dataset", "limit", "shots", "max_new_tokens"},
       "gsm8k",
       "accuracy_pct",
       true,
       "math"},
  };
  return table;
}

const TaskInfo& task_info(Task t) {
  const auto& table = task_table();
  const size_t i = static_cast<size_t>(t);
  QS_ASSERT(i < table.size() && table[i].task == t);
  return table[i];
}

const std::string& task_name(Task t) {
  return task_info(t).name;
}

std::optional<Task> task_from_name(std::string_view name) {
  for (const auto& row : task_table())
    if (row.name == name) return row.task;
  return std::nullopt;
}

std::vector<std::string> task_names() {
  std::vector<std::string> names;
  for (const auto& row : task_table()) names.push_back(row.name);
  return names;
}

bool is_text_task(Task t) {
  return t == Task::Perplexity || t == Task::Kld || t == Task::LineCompletion;
}

EvalConfig EvalConfig::resolved(int model_ctx) const {
  EvalConfig e = *this;
  if (e.ctx == 0) e.ctx = std::min(model_ctx, kDefaultMaxCtx);
  if (e.protocol == "strided" && e.stride == 0) e.stride = e.ctx / 2;
  auto cap = [&](int want) { return std::max(1, std::min(want, e.ctx / 2)); };
  switch (e.task) {
    case Task::LineCompletion:
      if (e.limit == 0) e.limit = 200;
      if (e.max_new_tokens == 0) e.max_new_tokens = cap(48);
      break;
    case Task::HumanEval:
    case Task::Mbpp:
      if (e.max_new_tokens == 0) e.max_new_tokens = cap(512);
      if (e.task == Task::Mbpp && e.shots < 0) e.shots = 3;
      break;
    case Task::Gsm8k:
      if (e.shots < 0) e.shots = 8;
      if (e.max_new_tokens == 0) e.max_new_tokens = cap(256);
      break;
    case Task::Mmlu:
    case Task::Ceval:
      if (e.shots < 0) e.shots = 5;
      break;
    case Task::Perplexity:
    case Task::Kld:
      break;
  }
  return e;
}

nlohmann::json EvalConfig::options_json() const {
  nlohmann::json j = {{"task", task_name(task)}, {"dataset", dataset},
                      {"protocol", protocol},    {"ctx", ctx},
                      {"stride", stride},        {"max_tokens", max_tokens}};
  if (task != Task::Perplexity)
    j.update({{"top_k", top_k},
              {"limit", limit},
              {"subjects", subjects},
              {"shots", shots},
              {"samples", samples},
              {"temperature", temperature},
              {"max_new_tokens", max_new_tokens},
              {"seed", seed}});
  return j;
}

}  // namespace qsweep
