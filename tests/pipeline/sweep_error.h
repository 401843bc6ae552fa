// The one-line error a sweep file's text gets, for the spec tests' expectations.
#pragma once

#include <string>

#include "common/errors.h"
#include "pipeline/spec.h"

namespace qsweep::test {

/// The message `parse_sweep_text` throws for `yaml` (named "s.yaml"), or "(no error)".
inline std::string error_of(const std::string& yaml) {
  try {
    parse_sweep_text(yaml, "s.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace qsweep::test
