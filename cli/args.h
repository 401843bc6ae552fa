// The command line: each subcommand declares its options once, as a table (name, value
// placeholder, default, help). The same table parses argv (--flag value, --flag=value,
// --switch, positionals; unknown flags are errors that suggest the closest known one) and
// prints `qsweep COMMAND --help`, so the help text cannot drift from what is accepted.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

namespace qsweep {
class Backend;
}  // namespace qsweep

namespace qsweep::cli {

/// One option of a subcommand.
struct OptionSpec {
  std::string name;      ///< without the dashes: "group-size"
  std::string value;     ///< placeholder for its value ("N", "DIR"); empty for a switch
  std::string fallback;  ///< the default as text ("128"); empty when there is none
  std::string help;      ///< one line
};

/// A subcommand: its usage line, a one-paragraph summary and its options in help order.
struct CommandSpec {
  std::string name;   ///< "quantize"
  std::string usage;  ///< "qsweep quantize --model MODEL --method METHOD --out PATH [options]"
  std::string summary;
  std::vector<OptionSpec> options;
  /// Extra paragraphs printed after the options (e.g. the list of methods).
  std::string notes;

  const OptionSpec* find(const std::string& name) const;
};

/// The command-line spelling of a sweep-file key: "max_new_tokens" → "max-new-tokens".
std::string flag_name(std::string key);

/// `qsweep COMMAND --help`: usage, summary, one line per option with its default.
std::string format_help(const CommandSpec& cmd);

/// True when argv asks for help (--help or -h anywhere).
bool wants_help(const std::vector<std::string>& argv);

class Args {
 public:
  /// Parses argv against `cmd`'s options. Throws Error on unknown flags (with a suggestion),
  /// a missing value, or a value given to a switch.
  Args(const std::vector<std::string>& argv, const CommandSpec& cmd);
  bool has(const std::string& flag) const { return values_.count(flag) || set_.count(flag); }
  /// The flag's value, else `fallback` if given, else the table's default ("" when none).
  std::string get(const std::string& flag) const;
  std::string get(const std::string& flag, const std::string& fallback) const;
  /// The flag's value, or Error "missing --flag" when absent.
  std::string require(const std::string& flag) const;
  /// The flag's value (or the table's default) as an integer; Error naming the flag if not one.
  long long get_int(const std::string& flag) const;
  long long get_int(const std::string& flag, long long fallback) const;
  /// The same as a finite number.
  double get_double(const std::string& flag) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  const CommandSpec* cmd_;
  std::map<std::string, std::string> values_;
  std::set<std::string> set_;
  std::vector<std::string> positional_;
};

/// `--threads N`, shared by run, eval and quantize: limits the whole process to N threads.
const OptionSpec& threads_option();
/// Applies --threads when given (it overrides QSWEEP_THREADS, applied by main); Error unless
/// it is a positive integer.
void apply_threads(const Args& args);

/// `--max-memory GiB` (run, eval, quantize) in bytes; 0 when absent. Error unless positive.
long long max_memory_bytes(const Args& args);

/// "70G", "81920M", "1.5GiB", "123456": bytes with an optional binary K/M/G/T suffix (an
/// optional "i" and "B" after it; 1G = 2^30). Error naming `origin` unless positive and whole.
long long parse_byte_size(const std::string& text, const std::string& origin);
/// `--max-device-memory BYTES` (eval): sets the backend's budget for the model's weights in
/// device memory (issue #16: beyond it, layers are streamed). Nothing when absent.
const OptionSpec& max_device_memory_option();
void apply_max_device_memory(const Args& args, Backend& backend);

/// The known name closest to `word` by edit distance (for "did you mean").
std::string closest(const std::string& word, const std::set<std::string>& known);

}  // namespace qsweep::cli
