#if !defined(QSWEEP_IN_QUANTIZERS)
#error "quantizers/detail/ is private to qsweep_quantizers; include quantizers/quantizers.h"
#endif
// A literal, slow port of the GPTQ reference (IST-DASLab/gptq, gptq.py GPTQ.fasterquant with
// quant.py Quantizer, perchannel=True). It stays forever as the slow twin that the production
// gptq_quantize is tested against; it is not used outside the tests.
#pragma once

#include "quantizers/quantizers.h"

namespace qsweep::detail {

/// Same contract as gptq_quantize, written column by column as the Python is, except:
///  * no damping escalation: a failed Cholesky with cfg.damp_percent throws Error;
///  * H -> Hinv in double: Cholesky, H^-1 by solving against the identity, then the upper
///    Cholesky factor of H^-1 (the reference's cholesky -> cholesky_inverse -> cholesky(upper));
///  * the act-order argsort is stable (ties: lower column first);
///  * the grid rounds scales to fp16 (QuantGrid::fp16_scale), as the production code does.
GptqResult gptq_quantize_reference(const MatrixRM& W, const MatrixD& H, const GptqConfig& cfg);

}  // namespace qsweep::detail
