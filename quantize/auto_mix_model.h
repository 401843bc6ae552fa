// The auto_mix method (issue #19): measure every tensor group's sensitivity on the calibration
// windows (quantize/sensitivity.h), choose a type per group under the byte budget
// (quantize/auto_mix.h's solver), encode the GGUF tensors.
#pragma once

#include <vector>

#include "quantize/quantize.h"
#include "quantize/sensitivity.h"

namespace qsweep {

/// Bytes of the 2-D weight tensors of `spec` under llama.cpp mix `mix` (no imatrix): the
/// budget of `budget: <mix>` (norms and metadata are the same in every mix).
int64_t mix_weight_bytes(const ModelSpec& spec, kquants::Mix mix);

/// `config` must be an auto_mix config. The study's KL is measured on `calib`'s windows (no
/// importance matrix: the calibration text serves the measurement). out.method_meta holds the
/// budget, the solver's choice, predicted (Σ group KL) and measured KL of the chosen mix on
/// the same windows, and every (group, type) measurement.
QuantizedModel quantize_auto_mix_model(const Transformer& source, const QuantMethodConfig& config,
                                       const CalibrationSet& calib, const QuantProgress& progress,
                                       const QuantRunOptions& run);

/// The mix from a measured table (a sweep's sensitivity nodes): `table` holds (group, type)
/// measurements of `source`'s groups (F16 is added at cost 0; a group without any is kept at
/// F16); `study` is the windows they were measured on, where the chosen mix's whole KL is
/// measured too. Error when a measurement names no group of the model.
QuantizedModel quantize_auto_mix_from_table(const Transformer& source,
                                            const QuantMethodConfig& config,
                                            const std::vector<SensitivityMeasurement>& table,
                                            const CalibrationSet& study,
                                            const QuantRunOptions& run = {});

}  // namespace qsweep
