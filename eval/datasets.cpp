#include "eval/datasets.h"

#include <filesystem>

#include "common/errors.h"
#include "common/mapped_file.h"

namespace qsweep {
namespace fs = std::filesystem;

std::vector<EvalDataset> known_eval_datasets() {
  return {{"wikitext2", "wikitext-2-raw/wiki.test.raw", "wiki"},
          {"code-heldout", "code/heldout.txt", "code"}};
}

EvalDataset resolve_eval_dataset(const std::string& name, const std::string& data_dir) {
  for (const auto& d : known_eval_datasets()) {
    if (d.name != name) continue;
    const fs::path p = fs::path(data_dir) / d.path;
    QS_THROW_IF_NOT(fs::exists(p), "dataset '", name, "': ", p.string(),
                    " not found; check --data-dir / QSWEEP_DATA (see ../shared/data/README.md)");
    return {d.name, p.string(), d.domain};
  }
  if (fs::exists(name)) {
    QS_THROW_IF_NOT(fs::is_regular_file(name), "dataset ", name, ": not a regular file");
    return {name, name, "custom"};
  }
  std::string names;
  for (const auto& d : known_eval_datasets()) names += " " + d.name;
  throw Error(
      cat("dataset '", name, "': not a known name (", names.substr(1), ") and no such file"));
}

std::string read_dataset_text(const EvalDataset& ds) {
  std::string text = read_text_file(ds.path);
  QS_THROW_IF_NOT(!text.empty(), ds.path, ": dataset '", ds.name,
                  "' is empty; nothing to evaluate");
  return text;
}

}  // namespace qsweep
