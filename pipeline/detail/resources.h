#if !defined(QSWEEP_IN_PIPELINE)
#error "pipeline/detail/ is private to qsweep_pipeline; include pipeline/spec.h"
#endif
// Reading the sweep file's `resources:` section: per node kind (default, calibrate, quantize,
// eval) the gpus, cpus, mem and time a Slurm job asks for, validated like every other key.
#pragma once

#include <map>
#include <string>

#include "pipeline/detail/yaml_fields.h"
#include "pipeline/spec.h"

namespace qsweep::sweep_yaml {

std::map<std::string, SlurmResources> read_resources(const Source& src, const Entry& section);

}  // namespace qsweep::sweep_yaml
