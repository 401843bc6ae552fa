// Evaluation datasets by name, read from the data directory (never copied).
#pragma once

#include <string>
#include <vector>

namespace qsweep {

struct EvalDataset {
  std::string name;    ///< "wikitext2", "code-heldout", or the path given
  std::string path;    ///< the file read
  std::string domain;  ///< "wiki", "code", ... (reports group by it)
};

/// Known evaluation set names and their files relative to the data directory.
/// wikitext2 → wikitext-2-raw/wiki.test.raw, code-heldout → code/heldout.txt.
std::vector<EvalDataset> known_eval_datasets();

/// A known name (resolved in `data_dir`) or a path to a text file. Throws Error
/// naming what was looked for when the file does not exist.
EvalDataset resolve_eval_dataset(const std::string& name_or_path, const std::string& data_dir);

/// The whole text of a dataset; throws Error when it is missing or empty.
std::string read_dataset_text(const EvalDataset& ds);

}  // namespace qsweep
