// Multiple-choice knowledge benchmarks scored by log-likelihood: MMLU (English)
// and C-Eval (Chinese), read from their upstream CSV files.
//
// Data layouts (the directory passed in is the dataset's root):
//  * MMLU (hendrycks/test tarball): [data/]{dev,val,test}/<subject>_{dev,val,test}.csv,
//    no header, columns question,A,B,C,D,answer. Evaluated split: test; shots from dev.
//  * C-Eval (ceval-exam): {dev,val,test}/<subject>_{dev,val,test}.csv WITH a header
//    id,question,A,B,C,D,answer[,explanation]. The test split has no answers, so the
//    evaluated split is val; shots from dev. An optional subject_mapping.json
//    ({"computer_network": ["Computer Network", "计算机网络", "STEM"], ...}, shipped
//    upstream) supplies the Chinese subject name; without it the file's subject
//    name is used with '_' → ' '.
//
// Prompts:
//  * MMLU, exactly lm-evaluation-harness's `mmlu` task: the description
//    "The following are multiple choice questions (with answers) about {subject}.\n\n"
//    (subject with '_' → ' '), k dev examples each
//    "{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer: {letter}\n\n", then the
//    question ending "Answer:". The question is stripped of surrounding whitespace
//    (the harness's question.strip()); choices are used as they are. The
//    continuations scored are " A", " B", " C", " D".
//  * C-Eval, the official template of the C-Eval repository (README, "仅预测答案的prompt"):
//    "以下是中国关于{科目}考试的单项选择题，请选出其中的正确答案。\n\n", examples
//    "{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n答案：{letter}\n\n", then the question
//    ending "答案："; continuations "A", "B", "C", "D" (no space, as in the template).
//
// A choice's score is the summed log-probability of its continuation tokens given
// the context; the highest wins (ties → the earliest letter). When the prompt does
// not fit the scorer's window, shots are dropped one at a time (k−1, …, 0) until it
// fits, and the items where that happened are counted; if even the 0-shot prompt
// is too long the scorer keeps the end of the context (the harness's left
// truncation), also counted.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "model/transformer.h"

namespace qsweep {

// ---- CSV (RFC 4180) ------------------------------------------------------------

/// Parses CSV text: fields separated by ',', records by CRLF or LF; a field in
/// double quotes may contain commas, line breaks and "" (an escaped quote). A
/// quote inside an unquoted field is kept literally (as Python's csv module does).
/// A leading UTF-8 BOM is skipped and blank lines are ignored. Throws Error naming
/// `origin` and the line for an unterminated quoted field, text after a closing
/// quote, or invalid UTF-8.
std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& origin);

// ---- data ------------------------------------------------------------------------

struct McQuestion {
  std::string question;
  std::array<std::string, 4> choices;
  int answer = -1;  ///< 0..3 for A..D
};

struct McSubject {
  std::string name;          ///< file subject, e.g. "abstract_algebra"
  std::string display_name;  ///< what the prompt says, e.g. "abstract algebra" / "计算机网络"
  std::vector<McQuestion> dev;   ///< few-shot pool (first k used, in file order)
  std::vector<McQuestion> eval;  ///< the evaluated split
};

/// Reads one MMLU CSV file (no header, 6 columns). Throws Error naming the file
/// and record for a wrong column count or an answer not in A-D.
std::vector<McQuestion> load_mmlu_csv(const std::string& path);
/// Reads one C-Eval CSV file (header with at least question,A,B,C,D and, when
/// `need_answers`, answer).
std::vector<McQuestion> load_ceval_csv(const std::string& path, bool need_answers);

enum class McBenchmark { Mmlu, Ceval };
const char* mc_benchmark_name(McBenchmark b);  ///< "mmlu" / "ceval"

/// The description line of a subject's prompt for a benchmark.
std::string mc_description(McBenchmark b, const std::string& display_name);
/// One question as the prompt shows it, ending "Answer:" / "答案：" (no letter).
std::string mc_format_question(McBenchmark b, const McQuestion& q);
/// The whole context: description, the first `shots` dev examples, the question.
std::string mc_build_context(McBenchmark b, const McSubject& s, int shots, const McQuestion& q);
/// The four continuations scored: " A".." D" (MMLU) or "A".."D" (C-Eval).
std::array<std::string, 4> mc_continuations(McBenchmark b);

// ---- scoring ---------------------------------------------------------------------

/// Log-likelihood of each continuation given the context (summed over its tokens).
using LoglikelihoodFn = std::function<std::vector<double>(
    const std::string& context, const std::vector<std::string>& continuations)>;

/// What the evaluator needs from a model: the scores and, to fit shots into the
/// window, the number of tokens a (context, continuation) pair feeds the model.
struct LoglikelihoodScorer {
  LoglikelihoodFn loglikelihood;
  /// Tokens fed to the model for the pair before any truncation; empty = no limit.
  std::function<int64_t(const std::string& context, const std::string& continuation)> input_tokens;
  int64_t window = 0;  ///< the model's context; 0 = no limit
};

/// The Transformer-based scorer, tokenized like lm-evaluation-harness: trailing
/// spaces of the context move to the continuation; the context is encoded (BOS
/// when `add_bos`), the whole string context+continuation is encoded, and the
/// continuation tokens are the whole encoding's tokens after the context's count (a
/// context that encodes to nothing becomes the harness's prefix_token_id: the BOS
/// token, else the EOS token, as for tokenizers that add no BOS);
/// the model sees (context tokens + continuation tokens) with the last token
/// dropped, left-truncated to the window. Continuations whose model input is the
/// same (e.g. four single-token letters) share one sequence; the distinct
/// sequences of one call are packed into one forward.
/// `model` and `tokenizer` are held by reference: they must outlive the scorer.
/// Note: the harness's HF models add no BOS by default; here the default follows
/// the tokenizer's add_bos_token() like every other prompt in qsweep.
LoglikelihoodScorer make_transformer_scorer(const Transformer& model, const Tokenizer& tokenizer);
LoglikelihoodScorer make_transformer_scorer(const Transformer& model, const Tokenizer& tokenizer,
                                            bool add_bos);

// ---- evaluation ------------------------------------------------------------------

struct McOptions {
  int shots = 5;
  int64_t limit = 0;                  ///< questions per subject; 0 = all
  std::vector<std::string> subjects;  ///< file subject names; empty = all found
  std::string split;                  ///< "" = test (MMLU) / val (C-Eval)
  bool keep_items = false;            ///< fill McSubjectResult::predictions
  bool progress = false;
};

struct McSubjectResult {
  std::string subject;
  int64_t items = 0;
  int64_t correct = 0;
  double accuracy = 0;
  int min_shots = 0;              ///< fewest shots any item of the subject got
  int64_t items_fewer_shots = 0;  ///< items whose prompt dropped shots to fit
  int64_t items_truncated = 0;    ///< items cut even with 0 shots
  std::vector<int> predictions;   ///< chosen letter per item (keep_items)
};

struct McResult {
  std::string benchmark;  ///< "mmlu" / "ceval"
  std::string status;     ///< "ok" or "skipped: <path> not found"
  std::string protocol;   ///< e.g. "mmlu split=test shots=5 loglikelihood ' A'..' D' limit=0"
  std::string split;
  int shots = 0;
  int64_t limit = 0;
  std::vector<McSubjectResult> subjects;
  int64_t items = 0;
  int64_t correct = 0;
  double macro_accuracy = 0;        ///< mean of the per-subject accuracies
  double micro_accuracy = 0;        ///< correct / items
  double micro_standard_error = 0;  ///< sqrt(p(1−p)/items)
  int64_t items_fewer_shots = 0;
  int64_t items_truncated = 0;
  double seconds = 0;
};

/// Loads the subjects of `root` for a benchmark (filtered by `subjects`, sorted by
/// name). Throws Error for malformed files; returns nothing if the split folder is
/// missing (evaluate_* turn that into a skipped result).
std::vector<McSubject> load_mc_subjects(McBenchmark b, const std::string& root,
                                        const McOptions& opt);

/// Evaluates a benchmark. A missing data directory gives status "skipped: <path>
/// not found" (no exception); malformed data throws Error naming the file.
McResult evaluate_multiple_choice(McBenchmark b, const std::string& root,
                                  const LoglikelihoodScorer& scorer, const McOptions& opt = {});
inline McResult evaluate_mmlu(const std::string& root, const LoglikelihoodScorer& scorer,
                              const McOptions& opt = {}) {
  return evaluate_multiple_choice(McBenchmark::Mmlu, root, scorer, opt);
}
inline McResult evaluate_ceval(const std::string& root, const LoglikelihoodScorer& scorer,
                               const McOptions& opt = {}) {
  return evaluate_multiple_choice(McBenchmark::Ceval, root, scorer, opt);
}

}  // namespace qsweep
