#if !defined(QSWEEP_IN_PIPELINE)
#error "pipeline/detail/ is private to qsweep_pipeline; include pipeline/spec.h"
#endif
// The sweep file's `sensitivity:` section (docs/sweep-format.md), read like the other
// sections: every problem a "FILE:LINE:COL: message" at the node at fault.
#pragma once

#include <map>

#include "pipeline/detail/yaml_fields.h"
#include "pipeline/spec.h"

namespace qsweep::sweep_yaml {

/// Reads `sensitivity: {types: [...], calibration: NAME, n_samples: N, seqlen: N}`; a
/// calibration name must be defined in `calibration`.
SensitivitySpec read_sensitivity(const Source& src, const Entry& section,
                                 const std::map<std::string, CalibrationSpec>& calibration);

/// After the variants are read: a `sensitivity:` section without `calibration:` needs an
/// auto_mix variant or exactly one calibration set (it is then studied); the error points at
/// the section.
void resolve_sensitivity_calibration(const Source& src, const Entry& section, SweepSpec& spec);

}  // namespace qsweep::sweep_yaml
