// Where shared data and models live. Data is read in place from ../shared
// (never copied into the project); the location is a setting:
//   --data-dir flag  >  QSWEEP_DATA  >  ../shared/data from the working directory
//   >  ../shared/data beside the source tree the binary was built from.
#pragma once

#include <string>

namespace qsweep {

/// The data directory: `flag` if non-empty, else QSWEEP_DATA, else the first
/// default that exists. Throws Error listing what was tried when none exists.
std::string resolve_data_dir(const std::string& flag = "");

/// A model given by path (a directory with config.json) or by name: a folder of
/// `<data_dir>/../models/`. Throws Error saying what was tried.
std::string resolve_model_dir(const std::string& name_or_path,
                              const std::string& data_dir_flag = "");

}  // namespace qsweep
