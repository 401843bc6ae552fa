#include "cli/data_dir.h"

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "common/errors.h"

namespace qsweep {
namespace fs = std::filesystem;

std::string resolve_data_dir(const std::string& flag) {
  if (!flag.empty()) {
    QS_THROW_IF_NOT(fs::is_directory(flag), "--data-dir ", flag, ": no such directory");
    return flag;
  }
  if (const char* env = std::getenv("QSWEEP_DATA"); env && *env) {
    QS_THROW_IF_NOT(fs::is_directory(env), "QSWEEP_DATA=", env, ": no such directory");
    return env;
  }
  std::vector<std::string> tried = {"../shared/data", "shared/data"};
#ifdef QSWEEP_SOURCE_ROOT
  tried.push_back(std::string(QSWEEP_SOURCE_ROOT) + "/../shared/data");
#endif
  for (const auto& c : tried)
    if (fs::is_directory(c)) return fs::weakly_canonical(c).string();
  std::string list;
  for (const auto& c : tried) list += " " + c;
  throw Error(
      cat("no data directory found (tried", list, "); pass --data-dir DIR or set QSWEEP_DATA"));
}

std::string resolve_model_dir(const std::string& name, const std::string& data_dir_flag) {
  if (fs::is_directory(name)) return name;
  if (fs::exists(name)) return name;  // a file (GGUF, later): the loader decides
  const bool looks_like_path = name.find('/') != std::string::npos;
  if (!looks_like_path) {
    try {
      const fs::path candidate = fs::path(resolve_data_dir(data_dir_flag)) / ".." / "models" / name;
      if (fs::is_directory(candidate)) return fs::weakly_canonical(candidate).string();
    } catch (const Error&) {
      // fall through to the error below, which names what was asked
    }
  }
  throw Error(cat("model '", name, "': no such directory, and no model of that name under ",
                  "<data dir>/../models; pass a Hugging Face model directory"));
}

}  // namespace qsweep
