#include "model/memory_estimate.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "common/errors.h"

namespace qsweep {

int64_t mapped_model_bytes(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path)) return int64_t(fs::file_size(path));
  int64_t mapped = 0;
  for (const auto& f : fs::directory_iterator(path))
    if (f.path().extension() == ".safetensors") mapped += int64_t(f.file_size());
  return mapped;
}

MemoryEstimate estimate_peak_memory(const ModelSpec& s, const MemoryEstimateInput& in) {
  const int64_t H = s.hidden_size, I = s.intermediate_size, V = s.vocab_size;
  const int64_t Q = int64_t(s.num_heads) * s.head_dim;
  MemoryEstimate e;
  e.model = in.mapped_bytes;
  e.scratch = 4 * std::max({V * H, I * H, Q * H});
  e.activations = 4 * in.tokens * (6 * H + 2 * I + V) + 4 * int64_t(s.num_heads) * in.ctx * in.ctx;
  if (in.calib_tokens > 0)
    e.calibration = 2 * in.calib_tokens * H + 8 * (H * H + Q * Q + H * H + I * I);
  return e;
}

void check_memory_budget(const MemoryEstimate& e, int64_t max_bytes, const std::string& what,
                         const std::string& lower) {
  if (max_bytes <= 0 || e.total() <= max_bytes) return;
  auto gib = [](int64_t b) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", double(b) / double(int64_t(1) << 30));
    return std::string(buf);
  };
  throw Error(cat(what, " needs about ", gib(e.total()), " GiB (model ", gib(e.model),
                  ", weight scratch ", gib(e.scratch), ", activations ", gib(e.activations),
                  ", calibration ", gib(e.calibration), ") but --max-memory is ", gib(max_bytes),
                  " GiB: ", lower));
}

}  // namespace qsweep
