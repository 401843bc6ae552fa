#if !defined(QSWEEP_IN_PIPELINE)
#error "pipeline/detail/ is private to qsweep_pipeline; include pipeline/sweep.h"
#endif
// What the sweep's files are called and how its JSON artifacts are written, shared by the
// plan (keys), the stage runner (artifacts) and the results (reading them back).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace qsweep::detail {

// Bump when an artifact's content or meaning changes: every key changes with it. <store>/FORMAT
// holds it; a store of another format is refused (ArtifactStore). v3: XXH3-128 keys.
inline constexpr const char* kStoreFormat = "qsweep-store-v3";
inline constexpr const char* kVersion = "0.1.0";
/// The FP16 baseline's stored top-k log-probs, written by its kld eval node.
inline constexpr const char* kKldBaselineFile = "baseline.kld";
/// Per-token NLLs of a perplexity eval (fp32, text order): pairs variants with the baseline.
inline constexpr const char* kTokenNllFile = "token_nll.f32";

/// `j` as indented JSON, written atomically.
void write_json(const std::string& path, const nlohmann::json& j);
nlohmann::json read_json(const std::string& path);

}  // namespace qsweep::detail
