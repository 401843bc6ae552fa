#include "pipeline/detail/artifacts.h"

#include "common/json_reader.h"
#include "common/mapped_file.h"

namespace qsweep::detail {

void write_json(const std::string& path, const nlohmann::json& j) {
  const std::string s = j.dump(1) + "\n";
  write_file_atomic(path, s.data(), s.size());
}

nlohmann::json read_json(const std::string& path) {
  // Typed errors naming the file (a corrupt or hand-edited store file is an Error, exit 2).
  return read_json_file(path);
}

}  // namespace qsweep::detail
