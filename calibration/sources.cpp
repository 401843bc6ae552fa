#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "calibration/calibration.h"
#include "common/errors.h"
#include "common/mapped_file.h"

namespace qsweep {
namespace fs = std::filesystem;

namespace {

struct BuiltIn {
  const char* name;
  const char* file;
  const char* domain;
};
constexpr BuiltIn kBuiltIns[] = {{"wikitext2", "wikitext-2/wiki.valid.tokens", "wiki"},
                                 {"code", "code/calib.txt", "code"},
                                 {"docs", "docs/calib.txt", "docs"}};

// fnmatch-style '*' and '?' on a file name.
bool glob_match(const char* pat, const char* s) {
  if (*pat == '\0') return *s == '\0';
  if (*pat == '*') return glob_match(pat + 1, s) || (*s && glob_match(pat, s + 1));
  if (*s && (*pat == '?' || *pat == *s)) return glob_match(pat + 1, s + 1);
  return false;
}

}  // namespace

CalibrationSource resolve_calibration_source(const std::string& spec, const std::string& data_dir,
                                             const std::string& domain) {
  CalibrationSource src;
  src.name = spec;
  for (const auto& b : kBuiltIns) {
    if (spec != b.name) continue;
    const fs::path p = fs::path(data_dir) / b.file;
    QS_THROW_IF_NOT(fs::exists(p), "calibration source '", spec, "': ", p.string(),
                    " not found; check --data-dir / QSWEEP_DATA");
    src.files = {p.string()};
    src.domain = domain.empty() ? b.domain : domain;
    return src;
  }
  src.domain = domain.empty() ? "custom" : domain;
  // "file.jsonl:field"
  const size_t colon = spec.rfind(':');
  if (colon != std::string::npos && spec.substr(0, colon).size() > 6 &&
      spec.substr(0, colon).ends_with(".jsonl")) {
    const std::string file = spec.substr(0, colon);
    QS_THROW_IF_NOT(fs::is_regular_file(file), "calibration source '", spec, "': ", file,
                    " not found");
    src.files = {file};
    src.jsonl_field = spec.substr(colon + 1);
    QS_THROW_IF_NOT(!src.jsonl_field.empty(), "calibration source '", spec,
                    "': name the JSONL text field after ':'");
    return src;
  }
  if (spec.find('*') != std::string::npos || spec.find('?') != std::string::npos) {
    const fs::path p(spec);
    const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
    QS_THROW_IF_NOT(fs::is_directory(dir), "calibration source '", spec, "': directory ",
                    dir.string(), " not found");
    const std::string pat = p.filename().string();
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && glob_match(pat.c_str(), e.path().filename().c_str()))
        src.files.push_back(e.path().string());
    std::sort(src.files.begin(), src.files.end());
    QS_THROW_IF_NOT(!src.files.empty(), "calibration source '", spec, "': no file matches");
    return src;
  }
  if (fs::is_regular_file(spec)) {
    src.files = {spec};
    return src;
  }
  throw Error(cat("calibration source '", spec,
                  "': not a built-in name (wikitext2, code, docs), a file, a file.jsonl:field "
                  "or a directory glob"));
}

std::string read_calibration_text(const CalibrationSource& src) {
  std::string text;
  for (const auto& f : src.files) {
    if (!src.jsonl_field.empty()) {
      std::istringstream in(read_text_file(f));  // regular files only (never a FIFO hang)
      std::string line;
      int64_t lineno = 0;
      while (std::getline(in, line)) {
        ++lineno;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception& e) {
          throw Error(cat(f, ":", lineno, ": not valid JSON (", e.what(), ")"));
        }
        QS_THROW_IF_NOT(
            j.is_object() && j.contains(src.jsonl_field) && j[src.jsonl_field].is_string(), f, ":",
            lineno, ": no string field \"", src.jsonl_field, "\"");
        if (!text.empty()) text += "\n\n";
        text += j[src.jsonl_field].get<std::string>();
      }
    } else {
      if (!text.empty()) text += "\n";
      text += read_text_file(f);
    }
  }
  QS_THROW_IF_NOT(!text.empty(), "calibration source '", src.name, "' (",
                  src.files.empty() ? std::string("no file") : src.files[0],
                  ") is empty; it has no text to calibrate on");
  return text;
}

}  // namespace qsweep
