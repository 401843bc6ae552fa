#include "eval/multiple_choice.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "common/progress.h"

namespace qsweep {
namespace fs = std::filesystem;

// ---- CSV ---------------------------------------------------------------------------

namespace {

/// Length of the UTF-8 sequence starting at s[i], or 0 when it is invalid.
size_t utf8_length(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t j = 1; j < n; ++j) {
    const auto d = static_cast<unsigned char>(s[i + j]);
    if ((d & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (d & 0x3F);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return n;
}

}  // namespace

std::vector<std::vector<std::string>> parse_csv(const std::string& text,
                                                const std::string& origin) {
  std::vector<std::vector<std::string>> records;
  size_t i = 0;
  int64_t line = 1;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;
  for (size_t j = i; j < text.size();) {
    const size_t n = utf8_length(text, j);
    if (n == 0) {
      const int64_t at_line = 1 + std::count(text.begin(), text.begin() + std::ptrdiff_t(j), '\n');
      throw Error(cat(origin, ":", at_line, ": invalid UTF-8 (byte offset ", j, ")"));
    }
    j += n;
  }
  std::vector<std::string> record;
  std::string field;
  bool record_has_content = false;  // tells a blank line from a record of one empty field
  bool field_start = true;          // nothing of the current field read yet
  const auto end_field = [&]() {
    record.push_back(std::move(field));
    field.clear();
    field_start = true;
  };
  const auto end_record = [&]() {
    if (record_has_content) {
      end_field();
      records.push_back(std::move(record));
    }
    record.clear();
    field.clear();
    field_start = true;
    record_has_content = false;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (c == '"' && field_start) {
      // a quoted field: commas, line breaks and "" inside
      const int64_t start_line = line;
      record_has_content = true;
      field_start = false;
      ++i;
      for (;;) {
        QS_THROW_IF_NOT(i < text.size(), origin, ":", start_line,
                        ": unterminated quoted field (a \" opened here is never closed)");
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (text[i] == '\n') ++line;
        field += text[i++];
      }
      QS_THROW_IF_NOT(i == text.size() || text[i] == ',' || text[i] == '\n' ||
                          (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n'),
                      origin, ":", line, ": unexpected character '", text[i],
                      "' after a closing quote (quote the whole field and double inner quotes)");
      continue;
    }
    if (c == ',') {
      record_has_content = true;
      end_field();
      ++i;
    } else if (c == '\n' || (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) {
      end_record();
      i += c == '\r' ? 2 : 1;
      ++line;
    } else {
      record_has_content = true;
      field_start = false;
      field += c;
      ++i;
    }
  }
  end_record();
  return records;
}

// ---- data ---------------------------------------------------------------------------

namespace {

int parse_answer_letter(std::string s, const std::string& where) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.erase(0, 1);
  QS_THROW_IF_NOT(s.size() == 1 && s[0] >= 'A' && s[0] <= 'D', where, ": answer '", s,
                  "' is not one of A, B, C, D");
  return s[0] - 'A';
}

std::string strip(const std::string& s) {
  const auto sp = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  size_t b = 0, e = s.size();
  while (b < e && sp(s[b])) ++b;
  while (e > b && sp(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string replace_all(std::string s, char from, char to) {
  std::replace(s.begin(), s.end(), from, to);
  return s;
}

}  // namespace

std::vector<McQuestion> load_mmlu_csv(const std::string& path) {
  const auto rows = parse_csv(read_text_file(path), path);
  std::vector<McQuestion> out;
  for (size_t r = 0; r < rows.size(); ++r) {
    const std::string where = cat(path, ": record ", r + 1);
    QS_THROW_IF_NOT(rows[r].size() == 6, where, ": ", rows[r].size(),
                    " columns; MMLU rows have 6 (question,A,B,C,D,answer) and no header");
    McQuestion q;
    q.question = rows[r][0];
    for (int c = 0; c < 4; ++c) q.choices[size_t(c)] = rows[r][size_t(c) + 1];
    q.answer = parse_answer_letter(rows[r][5], where);
    out.push_back(std::move(q));
  }
  return out;
}

std::vector<McQuestion> load_ceval_csv(const std::string& path, bool need_answers) {
  const auto rows = parse_csv(read_text_file(path), path);
  QS_THROW_IF_NOT(!rows.empty(), path,
                  ": empty C-Eval file (a header id,question,A,B,C,D,answer "
                  "is expected)");
  std::map<std::string, size_t> col;
  for (size_t c = 0; c < rows[0].size(); ++c) col[strip(rows[0][c])] = c;
  for (const char* name : {"question", "A", "B", "C", "D"})
    QS_THROW_IF_NOT(col.count(name), path, ": header has no '", name,
                    "' column (expected id,question,A,B,C,D,answer[,explanation])");
  QS_THROW_IF_NOT(!need_answers || col.count("answer"), path,
                  ": header has no 'answer' column; this split cannot be scored (C-Eval's test "
                  "split has no answers: use val)");
  std::vector<McQuestion> out;
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::string where = cat(path, ": record ", r + 1);
    QS_THROW_IF_NOT(rows[r].size() == rows[0].size(), where, ": ", rows[r].size(),
                    " columns, the header has ", rows[0].size());
    McQuestion q;
    q.question = rows[r][col["question"]];
    const char* letters[4] = {"A", "B", "C", "D"};
    for (size_t c = 0; c < 4; ++c) q.choices[c] = rows[r][col[letters[c]]];
    if (need_answers) q.answer = parse_answer_letter(rows[r][col["answer"]], where);
    out.push_back(std::move(q));
  }
  return out;
}

const char* mc_benchmark_name(McBenchmark b) {
  return b == McBenchmark::Mmlu ? "mmlu" : "ceval";
}

std::string mc_description(McBenchmark b, const std::string& display_name) {
  if (b == McBenchmark::Mmlu)
    return "The following are multiple choice questions (with answers) about " + display_name +
           ".\n\n";
  return "以下是中国关于" + display_name + "考试的单项选择题，请选出其中的正确答案。\n\n";
}

std::string mc_format_question(McBenchmark b, const McQuestion& q) {
  std::string s = (b == McBenchmark::Mmlu ? strip(q.question) : q.question);
  const char* letters[4] = {"A", "B", "C", "D"};
  for (size_t c = 0; c < 4; ++c) s += cat("\n", letters[c], ". ", q.choices[c]);
  s += b == McBenchmark::Mmlu ? "\nAnswer:" : "\n答案：";
  return s;
}

std::array<std::string, 4> mc_continuations(McBenchmark b) {
  if (b == McBenchmark::Mmlu) return {" A", " B", " C", " D"};
  return {"A", "B", "C", "D"};
}

std::string mc_build_context(McBenchmark b, const McSubject& s, int shots, const McQuestion& q) {
  std::string ctx = mc_description(b, s.display_name);
  const auto conts = mc_continuations(b);
  const int k = std::min<int>(shots, int(s.dev.size()));
  for (int i = 0; i < k; ++i) {
    const McQuestion& d = s.dev[size_t(i)];
    ctx += mc_format_question(b, d) + conts[size_t(d.answer)] + "\n\n";
  }
  return ctx + mc_format_question(b, q);
}

namespace {

std::string default_split(McBenchmark b) {
  return b == McBenchmark::Mmlu ? "test" : "val";
}

/// The folder holding {dev,val,test}/: MMLU's tarball nests it in data/.
fs::path data_root(McBenchmark b, const std::string& root, const std::string& split) {
  if (b == McBenchmark::Mmlu && !fs::exists(fs::path(root) / split) &&
      fs::exists(fs::path(root) / "data" / split))
    return fs::path(root) / "data";
  return fs::path(root);
}

std::map<std::string, std::string> ceval_subject_names(const fs::path& root) {
  std::map<std::string, std::string> names;
  const fs::path p = root / "subject_mapping.json";
  if (!fs::exists(p)) return names;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(p.string()));
  } catch (const nlohmann::json::exception& e) {
    throw Error(cat(p.string(), ": invalid JSON: ", e.what()));
  }
  QS_THROW_IF_NOT(j.is_object(), p.string(), ": expected an object subject → [en, zh, category]");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.value().is_array() && it.value().size() >= 2 && it.value()[1].is_string())
      names[it.key()] = it.value()[1].get<std::string>();
  return names;
}

}  // namespace

std::vector<McSubject> load_mc_subjects(McBenchmark b, const std::string& root,
                                        const McOptions& opt) {
  const std::string split = opt.split.empty() ? default_split(b) : opt.split;
  const fs::path base = data_root(b, root, split);
  const fs::path split_dir = base / split;
  if (!fs::is_directory(split_dir)) return {};
  const std::string suffix = "_" + split + ".csv";
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(split_dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      found.push_back(name.substr(0, name.size() - suffix.size()));
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> wanted = found;
  if (!opt.subjects.empty()) {
    wanted = opt.subjects;
    std::sort(wanted.begin(), wanted.end());
    wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
    for (const auto& s : wanted)
      QS_THROW_IF_NOT(std::binary_search(found.begin(), found.end(), s), mc_benchmark_name(b),
                      ": subject '", s, "' not found (no ", (split_dir / (s + suffix)).string(),
                      ")");
  }
  const auto zh_names =
      b == McBenchmark::Ceval ? ceval_subject_names(base) : std::map<std::string, std::string>{};
  std::vector<McSubject> out;
  for (const auto& name : wanted) {
    McSubject s;
    s.name = name;
    s.display_name = zh_names.count(name) ? zh_names.at(name) : replace_all(name, '_', ' ');
    const std::string eval_path = (split_dir / (name + suffix)).string();
    s.eval = b == McBenchmark::Mmlu ? load_mmlu_csv(eval_path) : load_ceval_csv(eval_path, true);
    if (opt.shots > 0) {
      const fs::path dev = base / "dev" / (name + "_dev.csv");
      QS_THROW_IF_NOT(fs::exists(dev), mc_benchmark_name(b), ": ", dev.string(),
                      " not found: the few-shot examples of '", name,
                      "' come from it (or use shots = 0)");
      s.dev =
          b == McBenchmark::Mmlu ? load_mmlu_csv(dev.string()) : load_ceval_csv(dev.string(), true);
    }
    out.push_back(std::move(s));
  }
  return out;
}

// ---- the Transformer scorer -----------------------------------------------------------

namespace {

struct PairTokens {
  std::vector<int> context, continuation;
};

/// lm-evaluation-harness's _encode_pair.
PairTokens encode_pair(const Tokenizer& tok, bool add_bos, std::string context,
                       std::string continuation) {
  size_t n_spaces = 0;
  while (n_spaces < context.size() && context[context.size() - 1 - n_spaces] == ' ') ++n_spaces;
  if (n_spaces > 0) {
    continuation = context.substr(context.size() - n_spaces) + continuation;
    context.resize(context.size() - n_spaces);
  }
  PairTokens p;
  p.context = tok.encode(context, add_bos);
  const std::vector<int> whole = tok.encode(context + continuation, add_bos);
  if (p.context.empty()) {
    // The harness's prefix_token_id: BOS when the tokenizer has one (added or not), else
    // EOS (Qwen tokenizers have no BOS).
    const int prefix = tok.bos_id() >= 0 ? tok.bos_id() : tok.eos_id();
    QS_THROW_IF_NOT(
        prefix >= 0,
        "loglikelihood: the context is empty and the tokenizer has neither a BOS nor an "
        "EOS token to stand for it");
    p.context = {prefix};
    p.continuation = whole;
  } else {
    QS_THROW_IF_NOT(whole.size() > p.context.size(), "loglikelihood: continuation '", continuation,
                    "' adds no token to the context");
    p.continuation.assign(whole.begin() + std::ptrdiff_t(p.context.size()), whole.end());
  }
  return p;
}

}  // namespace

LoglikelihoodScorer make_transformer_scorer(const Transformer& model, const Tokenizer& tokenizer) {
  return make_transformer_scorer(model, tokenizer, tokenizer.add_bos_token());
}

LoglikelihoodScorer make_transformer_scorer(const Transformer& model, const Tokenizer& tokenizer,
                                            bool add_bos) {
  const int64_t window = model.spec().max_position_embeddings;
  LoglikelihoodScorer s;
  s.window = window;
  s.input_tokens = [&tokenizer, add_bos](const std::string& context, const std::string& cont) {
    const PairTokens p = encode_pair(tokenizer, add_bos, context, cont);
    return int64_t(p.context.size() + p.continuation.size()) - 1;
  };
  s.loglikelihood = [&model, &tokenizer, add_bos, window](const std::string& context,
                                                          const std::vector<std::string>& conts) {
    // Each continuation's model input and where its tokens sit in it.
    struct Req {
      size_t seq = 0;  // index into the distinct sequences
      std::vector<int> cont;
    };
    std::vector<std::vector<int>> seqs;
    std::vector<Req> reqs;
    for (const auto& c : conts) {
      PairTokens p = encode_pair(tokenizer, add_bos, context, c);
      QS_THROW_IF_NOT(int64_t(p.continuation.size()) <= window, "loglikelihood: continuation of ",
                      p.continuation.size(), " tokens exceeds the model window (", window, ")");
      std::vector<int> full = p.context;
      full.insert(full.end(), p.continuation.begin(), p.continuation.end());
      if (int64_t(full.size()) > window + 1)
        full.erase(full.begin(), full.end() - std::ptrdiff_t(window + 1));
      full.pop_back();
      Req r;
      r.cont = std::move(p.continuation);
      const auto same = std::find(seqs.begin(), seqs.end(), full);
      r.seq = size_t(same - seqs.begin());
      if (same == seqs.end()) seqs.push_back(std::move(full));
      reqs.push_back(std::move(r));
    }
    const MatrixRM logits = model.forward(seqs);
    std::vector<int64_t> row0(seqs.size() + 1, 0);
    for (size_t i = 0; i < seqs.size(); ++i) row0[i + 1] = row0[i] + int64_t(seqs[i].size());
    const int64_t vocab = logits.cols();
    std::vector<double> out;
    for (const Req& r : reqs) {
      const int64_t len = int64_t(seqs[r.seq].size());
      const int64_t first = row0[r.seq] + len - int64_t(r.cont.size());
      double ll = 0;
      for (size_t j = 0; j < r.cont.size(); ++j) {
        const float* z = logits.row(first + int64_t(j)).data();
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t v = 0; v < vocab; ++v) mx = std::max(mx, z[v]);
        double sum = 0;
        for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(z[v]) - double(mx));
        ll += double(z[r.cont[j]]) - double(mx) - std::log(sum);
      }
      out.push_back(ll);
    }
    return out;
  };
  return s;
}

// ---- evaluation -----------------------------------------------------------------------

McResult evaluate_multiple_choice(McBenchmark b, const std::string& root,
                                  const LoglikelihoodScorer& scorer, const McOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  QS_THROW_IF_NOT(opt.shots >= 0, mc_benchmark_name(b), ": shots must be >= 0");
  QS_THROW_IF_NOT(opt.limit >= 0, mc_benchmark_name(b), ": limit must be >= 0");
  QS_THROW_IF_NOT(bool(scorer.loglikelihood), mc_benchmark_name(b), ": no loglikelihood function");
  McResult r;
  r.benchmark = mc_benchmark_name(b);
  r.split = opt.split.empty() ? default_split(b) : opt.split;
  r.shots = opt.shots;
  r.limit = opt.limit;
  const auto conts = mc_continuations(b);
  r.protocol = cat(r.benchmark, " split=", r.split, " shots=", opt.shots, " limit=", opt.limit,
                   " loglikelihood of '", conts[0], "'..'", conts[3], "'",
                   b == McBenchmark::Mmlu ? " (lm-evaluation-harness mmlu prompt)"
                                          : " (official C-Eval answer-only prompt)");
  const fs::path split_dir = data_root(b, root, r.split) / r.split;
  if (!fs::is_directory(split_dir)) {
    r.status = "skipped: " + split_dir.string() + " not found";
    return r;
  }
  const std::vector<McSubject> subjects = load_mc_subjects(b, root, opt);
  if (subjects.empty()) {
    r.status = cat("skipped: no *_", r.split, ".csv files in ", split_dir.string());
    return r;
  }
  r.status = "ok";
  int64_t total = 0;
  for (const auto& s : subjects)
    total += opt.limit > 0 ? std::min<int64_t>(opt.limit, int64_t(s.eval.size()))
                           : int64_t(s.eval.size());
  Progress progress(r.benchmark, total, "questions", opt.progress);
  const std::vector<std::string> cont_vec(conts.begin(), conts.end());
  const auto fits = [&](const std::string& ctx) {
    if (!scorer.input_tokens || scorer.window <= 0) return true;
    for (const auto& c : cont_vec)
      if (scorer.input_tokens(ctx, c) > scorer.window) return false;
    return true;
  };
  double acc_sum = 0;
  for (const McSubject& s : subjects) {
    McSubjectResult sr;
    sr.subject = s.name;
    const int max_shots = std::min<int>(opt.shots, int(s.dev.size()));
    sr.min_shots = max_shots;
    const int64_t n = opt.limit > 0 ? std::min<int64_t>(opt.limit, int64_t(s.eval.size()))
                                    : int64_t(s.eval.size());
    for (int64_t i = 0; i < n; ++i) {
      const McQuestion& q = s.eval[size_t(i)];
      int k = max_shots;
      std::string ctx = mc_build_context(b, s, k, q);
      while (k > 0 && !fits(ctx)) ctx = mc_build_context(b, s, --k, q);
      if (k < max_shots) ++sr.items_fewer_shots;
      if (k == 0 && !fits(ctx)) ++sr.items_truncated;
      sr.min_shots = std::min(sr.min_shots, k);
      const std::vector<double> ll = scorer.loglikelihood(ctx, cont_vec);
      QS_THROW_IF_NOT(ll.size() == 4, r.benchmark, ": the loglikelihood function returned ",
                      ll.size(), " values for 4 continuations");
      int best = 0;
      for (int c = 1; c < 4; ++c)
        if (ll[size_t(c)] > ll[size_t(best)]) best = c;
      if (best == q.answer) ++sr.correct;
      if (opt.keep_items) sr.predictions.push_back(best);
      progress.advance();
    }
    sr.items = n;
    sr.accuracy = n > 0 ? double(sr.correct) / double(n) : 0.0;
    acc_sum += sr.accuracy;
    r.items += sr.items;
    r.correct += sr.correct;
    r.items_fewer_shots += sr.items_fewer_shots;
    r.items_truncated += sr.items_truncated;
    r.subjects.push_back(std::move(sr));
  }
  progress.finish();
  r.macro_accuracy = acc_sum / double(r.subjects.size());
  if (r.items > 0) {
    const double p = double(r.correct) / double(r.items);
    r.micro_accuracy = p;
    r.micro_standard_error = std::sqrt(p * (1 - p) / double(r.items));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qsweep
