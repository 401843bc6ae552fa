#include "cli/args.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

#include "backends/backend.h"
#include "common/errors.h"

namespace qsweep::cli {

std::string closest(const std::string& word, const std::set<std::string>& known) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& k : known) {
    std::vector<size_t> prev(k.size() + 1), cur(k.size() + 1);
    for (size_t j = 0; j <= k.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= k.size(); ++j)
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (word[i - 1] != k[j - 1])});
      std::swap(prev, cur);
    }
    if (prev[k.size()] < best_d) {
      best_d = prev[k.size()];
      best = k;
    }
  }
  return best_d <= std::max<size_t>(2, word.size() / 3) ? best : "";
}

std::string flag_name(std::string key) {
  std::replace(key.begin(), key.end(), '_', '-');
  return key;
}

const OptionSpec* CommandSpec::find(const std::string& flag) const {
  for (const auto& o : options)
    if (o.name == flag) return &o;
  return nullptr;
}

std::string format_help(const CommandSpec& cmd) {
  std::string out = "usage: " + cmd.usage + "\n\n" + cmd.summary + "\n";
  if (!cmd.options.empty()) {
    out += "\noptions:\n";
    size_t width = 0;
    auto left = [](const OptionSpec& o) {
      return "  --" + o.name + (o.value.empty() ? std::string() : " " + o.value);
    };
    for (const auto& o : cmd.options) width = std::max(width, left(o).size());
    for (const auto& o : cmd.options) {
      std::string l = left(o);
      l.resize(width + 2, ' ');
      out += l + o.help;
      if (!o.fallback.empty()) out += " (default: " + o.fallback + ")";
      out += "\n";
    }
    out += "  --help" + std::string(width > 6 ? width - 6 : 2, ' ') + "this text\n";
  }
  if (!cmd.notes.empty()) out += "\n" + cmd.notes + (cmd.notes.back() == '\n' ? "" : "\n");
  return out;
}

bool wants_help(const std::vector<std::string>& argv) {
  return std::any_of(argv.begin(), argv.end(),
                     [](const std::string& a) { return a == "--help" || a == "-h"; });
}

Args::Args(const std::vector<std::string>& argv, const CommandSpec& cmd) : cmd_(&cmd) {
  std::set<std::string> all;
  for (const auto& o : cmd.options) all.insert(o.name);
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    std::string flag = a.substr(2), value;
    const size_t eq = flag.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    const OptionSpec* o = cmd.find(flag);
    if (!o) {
      const std::string guess = closest(flag, all);
      throw Error(cat("unknown option --", flag,
                      guess.empty() ? std::string() : cat("; did you mean --", guess, "?"),
                      " (qsweep ", cmd.name, " --help lists the options)"));
    }
    if (!o->value.empty()) {
      if (!inline_value) {
        QS_THROW_IF_NOT(i + 1 < argv.size(), "--", flag, " needs a value (", o->value, ")");
        value = argv[++i];
      }
      values_[flag] = value;
    } else {
      QS_THROW_IF_NOT(!inline_value, "--", flag, " takes no value");
      set_.insert(flag);
    }
  }
}

std::string Args::get(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it != values_.end()) return it->second;
  const OptionSpec* o = cmd_->find(flag);
  QS_ASSERT(o);
  return o->fallback;
}

std::string Args::get(const std::string& flag, const std::string& fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback : it->second;
}

std::string Args::require(const std::string& flag) const {
  auto it = values_.find(flag);
  QS_THROW_IF_NOT(it != values_.end(), "missing --", flag);
  return it->second;
}

namespace {
long long parse_int(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  QS_THROW_IF_NOT(!text.empty() && end && *end == '\0' && errno == 0, "--", flag,
                  " expects an integer, got '", text, "'");
  return v;
}
}  // namespace

long long Args::get_int(const std::string& flag) const {
  return parse_int(flag, get(flag));
}

long long Args::get_int(const std::string& flag, long long fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback : parse_int(flag, it->second);
}

double Args::get_double(const std::string& flag) const {
  const std::string text = get(flag);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  QS_THROW_IF_NOT(!text.empty() && end && *end == '\0' && std::isfinite(v), "--", flag,
                  " expects a number, got '", text, "'");
  return v;
}

const OptionSpec& threads_option() {
  static const OptionSpec o{"threads", "N", "all cores",
                            "worker threads for the whole process (else $QSWEEP_THREADS)"};
  return o;
}

void apply_threads(const Args& args) {
  if (!args.has("threads")) return;
  const long long n = args.get_int("threads");
  QS_THROW_IF_NOT(n >= 1 && n <= 4096, "--threads ", n,
                  ": expected a positive number of threads (omit it to use every core)");
  set_backend_threads(int(n), "--threads");
}

long long max_memory_bytes(const Args& args) {
  if (!args.has("max-memory")) return 0;
  const double gb = args.get_double("max-memory");
  QS_THROW_IF_NOT(gb > 0, "--max-memory must be a positive number of GiB");
  return (long long)(gb * double(1LL << 30));
}

long long parse_byte_size(const std::string& text, const std::string& origin) {
  const auto bad = [&] {
    return Error(cat(origin, " '", text,
                     "': expected a positive number of bytes with an optional K, M, G or T "
                     "suffix (binary: 1G = 2^30), e.g. 70G"));
  };
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || errno != 0 || !std::isfinite(v) || !(v > 0)) throw bad();
  std::string unit(end);
  if (!unit.empty() && unit.back() == 'B') unit.pop_back();
  if (unit.size() == 2 && unit[1] == 'i') unit.pop_back();
  double scale = 1;
  if (unit.size() == 1) {
    const std::string units = "KMGT";
    const size_t i = units.find(char(std::toupper(static_cast<unsigned char>(unit[0]))));
    if (i == std::string::npos) throw bad();
    scale = std::pow(1024.0, double(i + 1));
  } else if (!unit.empty()) {
    throw bad();
  }
  const double bytes = v * scale;
  if (bytes < 1 || bytes > 9.0e18) throw bad();
  return (long long)bytes;
}

const OptionSpec& max_device_memory_option() {
  static const OptionSpec o{
      "max-device-memory", "BYTES", "free device memory minus max(10%, 2 GiB)",
      "device memory the model's weights may take (e.g. 70G); layers beyond it are streamed "
      "from host memory, two at a time"};
  return o;
}

void apply_max_device_memory(const Args& args, Backend& backend) {
  if (!args.has("max-device-memory")) return;
  backend.set_max_device_memory(
      size_t(parse_byte_size(args.get("max-device-memory"), "--max-device-memory")),
      "--max-device-memory");
}

}  // namespace qsweep::cli
