#include "pipeline/detail/artifacts.h"

#include "common/mapped_file.h"

namespace qsweep::detail {

void write_json(const std::string& path, const nlohmann::json& j) {
  const std::string s = j.dump(1) + "\n";
  write_file_atomic(path, s.data(), s.size());
}

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(read_text_file(path));
}

}  // namespace qsweep::detail
