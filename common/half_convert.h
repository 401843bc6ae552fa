// Bulk binary16 <-> float conversion for buffers: the same values as common/half.h's
// half_to_float / float_to_half (round to nearest even, overflow to ±inf), eight at a time with
// F16C where the CPU has it (the build's -march decides), element by element otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qsweep {

/// out[i] = half_to_float(in[i]) for i < n (exact).
void halves_to_floats(const uint16_t* in, float* out, size_t n);

/// out[i] = float_to_half(in[i]) for i < n. Returns false when a finite input became ±inf
/// (|x| rounds to 65520 or more: beyond binary16's range); the whole buffer is still written.
/// NaN stays NaN (its payload may differ from float_to_half's).
bool floats_to_halves(const float* in, uint16_t* out, size_t n);

}  // namespace qsweep
