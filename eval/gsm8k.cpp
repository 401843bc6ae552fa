#include "eval/gsm8k.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "common/progress.h"

namespace qsweep {
namespace fs = std::filesystem;

namespace {
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
}  // namespace

std::optional<std::string> extract_last_number(const std::string& text) {
  std::optional<std::string> last;
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    if (!is_digit(text[i])) {
      ++i;
      continue;
    }
    // a number starts here: sign from "-", "-$" or "$-" just before it
    bool negative = false;
    size_t b = i;
    if (b > 0 && text[b - 1] == '$') --b;
    if (b > 0 && text[b - 1] == '-' && (b < 2 || !is_digit(text[b - 2]))) negative = true;
    std::string num;
    // integer part with thousands separators: a comma counts only before 3 digits
    while (i < n) {
      if (is_digit(text[i])) {
        num += text[i++];
      } else if (text[i] == ',' && i + 3 < n && is_digit(text[i + 1]) && is_digit(text[i + 2]) &&
                 is_digit(text[i + 3]) && (i + 4 >= n || !is_digit(text[i + 4]))) {
        ++i;
      } else {
        break;
      }
    }
    // fractional part: '.' followed by a digit (a trailing '.' ends a sentence)
    if (i + 1 < n && text[i] == '.' && is_digit(text[i + 1])) {
      num += text[i++];
      while (i < n && is_digit(text[i])) num += text[i++];
    }
    last = (negative ? "-" : "") + num;
  }
  return last;
}

bool gsm8k_numbers_equal(const std::string& a, const std::string& b) {
  if (a.empty() || b.empty()) return false;
  char* ea = nullptr;
  char* eb = nullptr;
  const double x = std::strtod(a.c_str(), &ea);
  const double y = std::strtod(b.c_str(), &eb);
  if (*ea != '\0' || *eb != '\0') return a == b;
  return std::abs(x - y) <= 1e-9 * std::max(1.0, std::max(std::abs(x), std::abs(y)));
}

std::vector<Gsm8kItem> load_gsm8k(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<Gsm8kItem> out;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(cat(path, ":", line_no, ": invalid JSON: ", e.what()));
    }
    QS_THROW_IF_NOT(j.is_object() && j.contains("question") && j["question"].is_string() &&
                        j.contains("answer") && j["answer"].is_string(),
                    path, ":", line_no, ": expected an object with string fields question, answer");
    Gsm8kItem it;
    it.question = j["question"].get<std::string>();
    it.answer = j["answer"].get<std::string>();
    const size_t h = it.answer.rfind("####");
    QS_THROW_IF_NOT(h != std::string::npos, path, ":", line_no,
                    ": the answer has no \"#### <number>\" line");
    const auto ref = extract_last_number(it.answer.substr(h + 4));
    QS_THROW_IF_NOT(ref.has_value(), path, ":", line_no, ": no number after \"####\"");
    it.reference = *ref;
    out.push_back(std::move(it));
  }
  return out;
}

std::string gsm8k_prompt(const std::vector<Gsm8kItem>& shots, const std::string& question) {
  std::string p;
  for (const auto& s : shots) p += "Question: " + s.question + "\nAnswer: " + s.answer + "\n\n";
  return p + "Question: " + question + "\nAnswer:";
}

Gsm8kResult evaluate_gsm8k(const std::string& dir, const GenerateFn& generate,
                           const Gsm8kOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  QS_THROW_IF_NOT(opt.shots >= 0, "gsm8k: shots must be >= 0");
  QS_THROW_IF_NOT(opt.limit >= 0, "gsm8k: limit must be >= 0");
  QS_THROW_IF_NOT(opt.max_new_tokens >= 1, "gsm8k: max_new_tokens must be >= 1");
  QS_THROW_IF_NOT(bool(generate), "gsm8k: no generate function");
  Gsm8kResult r;
  r.shots = opt.shots;
  r.limit = opt.limit;
  r.protocol =
      cat("gsm8k test shots=", opt.shots,
          " (first k of train.jsonl, full solutions) greedy max_new_tokens=", opt.max_new_tokens,
          " stop=[\"\\n\\nQuestion:\", \"Question:\"] limit=", opt.limit,
          " answer=last number in the generation, numeric match");
  const fs::path test_path = fs::path(dir) / "test.jsonl";
  if (!fs::exists(test_path)) {
    r.status = "skipped: " + test_path.string() + " not found";
    return r;
  }
  std::vector<Gsm8kItem> items = load_gsm8k(test_path.string());
  if (opt.limit > 0 && int64_t(items.size()) > opt.limit) items.resize(size_t(opt.limit));
  std::vector<Gsm8kItem> shots;
  if (opt.shots > 0) {
    const fs::path train = fs::path(dir) / "train.jsonl";
    QS_THROW_IF_NOT(fs::exists(train), "gsm8k: ", train.string(),
                    " not found: the few-shot exemplars come from it (or use shots = 0)");
    shots = load_gsm8k(train.string());
    QS_THROW_IF_NOT(int64_t(shots.size()) >= opt.shots, "gsm8k: ", train.string(), " has ",
                    shots.size(), " problems, fewer than shots = ", opt.shots);
    shots.resize(size_t(opt.shots));
  }
  GenerationOptions g;
  g.max_new_tokens = opt.max_new_tokens;
  g.temperature = 0;
  g.stop = {"\n\nQuestion:", "Question:"};
  r.status = "ok";
  Progress progress("gsm8k", int64_t(items.size()), "problems", opt.progress);
  for (const auto& it : items) {
    const Generation gen = generate(gsm8k_prompt(shots, it.question), g);
    const auto pred = extract_last_number(gen.text);
    Gsm8kItemResult ir;
    ir.reference = it.reference;
    ir.predicted = pred.value_or("");
    ir.correct = pred.has_value() && gsm8k_numbers_equal(*pred, it.reference);
    if (!pred) ++r.no_number;
    if (ir.correct) ++r.correct;
    if (opt.keep_items) {
      ir.generation = gen.text;
      ir.finish_reason = gen.finish_reason;
      r.per_item.push_back(std::move(ir));
    }
    progress.advance();
  }
  progress.finish();
  r.items = int64_t(items.size());
  if (r.items > 0) {
    r.accuracy = double(r.correct) / double(r.items);
    r.standard_error = std::sqrt(r.accuracy * (1 - r.accuracy) / double(r.items));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qsweep
