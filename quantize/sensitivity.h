// Sensitivity study (issue #19): for each tensor group (quantize/auto_mix.h) and candidate
// type, the KL divergence KL(P_fp16 || Q) per token when only that group is quantized (its
// dequantized values; every other tensor at its FP16 value) and the bytes the type stores.
//
// The FP16 run is done once per study: the hidden state entering every layer and the FP16
// log-probabilities of every position are cached, so a group of layer l runs layers l..L-1
// and the head only (token_embd: all layers; output: the head only). KL is exact over the
// whole vocabulary (the FP16 log-probs are kept in full: tokens × vocab floats).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/transformer.h"
#include "quantize/auto_mix.h"

namespace qsweep {

/// One (group, type) measurement.
struct SensitivityMeasurement {
  std::string group;  ///< GGUF tensor name
  std::string role;
  int layer = -1;
  int32_t type = 0;       ///< ggml type
  double kl = 0;          ///< mean KL(P_fp16 || Q) per scored token (nats)
  double kl_se = 0;       ///< its standard error over tokens
  int64_t bytes = 0;      ///< the group stored at `type`
  int64_t bytes_f16 = 0;  ///< the group at F16
  double seconds = 0;
};

/// The default candidate types: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_0 (ggml numbers).
std::vector<int32_t> default_sensitivity_types();
/// A candidate type by its sweep-file name ("q4_k", "q8_0", "q4_0" …: the block types a group
/// can be stored in); nullopt for any other name.
std::optional<int32_t> sensitivity_type_from_name(const std::string& name);
/// Every name sensitivity_type_from_name accepts (for messages).
std::vector<std::string> sensitivity_type_names();
/// "q4_k" for ggml Q4_K (the sweep file's spelling; node ids use it).
std::string sensitivity_type_name(int32_t ggml_type);

/// One measurement as stored in a sensitivity node's artifact and results.json:
/// {name, role, layer, type ("Q4_K"), kl, kl_se, bytes, bytes_f16, seconds}.
nlohmann::json sensitivity_to_json(const SensitivityMeasurement& m);
/// Reads it back; Error naming `file` and the key for a missing or wrong value.
SensitivityMeasurement sensitivity_from_json(const nlohmann::json& j, const std::string& file);

class SensitivityStudy {
 public:
  /// Runs `base` once over `windows` (token windows, `batch_windows` per forward batch) and
  /// caches what measure() reuses. Throws Error for no windows or a window shorter than 2.
  SensitivityStudy(const Transformer& base, std::vector<std::vector<int>> windows,
                   int batch_windows = 16);

  /// KL and bytes of group `g` at `type`, computed from g's layer onward (`from_cache`) or,
  /// with from_cache false, by a whole forward pass from the embeddings (the same number; a
  /// test and the timing of the saving use it).
  SensitivityMeasurement measure(const TensorGroup& g, int32_t type, bool from_cache = true);
  /// Every group whose rows split into `type`'s blocks, measured at `type` (what one
  /// sensitivity node of a sweep computes), in groups() order.
  std::vector<SensitivityMeasurement> measure_type(int32_t type);
  /// KL of a whole mix (GGUF name → ggml type; groups not named stay FP16): a full forward pass
  /// with every named group quantized — what the additivity check compares with Σ group KLs.
  SensitivityMeasurement measure_mix(const std::map<std::string, int32_t>& types);

  const std::vector<TensorGroup>& groups() const { return groups_; }
  int64_t tokens() const { return tokens_; }
  double setup_seconds() const { return setup_seconds_; }

 private:
  struct Batch {
    std::vector<std::vector<int>> windows;
    std::vector<int> lengths;
    std::vector<MatrixRM> entering;  ///< [layer] hidden state entering it; [L] after the last
    MatrixRM base_logp;              ///< [tokens, vocab]
  };
  /// KL of the working model against the cache, running layers from `first_layer` (−1: embed).
  void kl_from(int first_layer, SensitivityMeasurement& m);

  Transformer work_;  ///< the FP16 model; measure() swaps one group in and restores it
  std::vector<TensorGroup> groups_;
  std::vector<Batch> batches_;
  int64_t tokens_ = 0;
  double setup_seconds_ = 0;
};

}  // namespace qsweep
