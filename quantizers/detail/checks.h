#if !defined(QSWEEP_IN_QUANTIZERS)
#error "quantizers/detail/ is private to qsweep_quantizers; include quantizers/quantizers.h"
#endif
// Config checks shared by the quantizers (internal).
#pragma once

#include <string>

#include "common/errors.h"

namespace qsweep::detail {

/// Throws Error unless bits is 2..8 and group_size is -1 or >= 1; `who` prefixes the message.
inline void check_grid_config(int bits, int group_size, const std::string& who) {
  QS_THROW_IF_NOT(bits >= 2 && bits <= 8, who, ": bits must be 2..8, got ", bits);
  QS_THROW_IF_NOT(group_size == -1 || group_size >= 1, who,
                  ": group_size must be -1 (per output channel) or >= 1, got ", group_size);
}

}  // namespace qsweep::detail
