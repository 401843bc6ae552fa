// Calibration: named text sources with a domain label, deterministic sampling of
// token windows, and activation capture on the forward pass's linear-input hooks
// (the Hessian GPTQ needs, plus the per-channel statistics AWQ and K-quant
// importance matrices reuse from the same pass).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/matrix.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "model/weights.h"

namespace qsweep {

// ---------------------------------------------------------------- sources

/// Where calibration text comes from.
///  * built-in names (resolved in the data directory, see ../shared/data/README.md):
///      wikitext2 → wikitext-2/wiki.valid.tokens (domain "wiki"; never the test split)
///      code      → code/calib.txt               (domain "code")
///      docs      → docs/calib.txt               (domain "docs")
///  * a text file path;  * "file.jsonl:field" (one JSON object per line, text in
///    `field`);  * a directory glob "dir/*.py" (files sorted by name, joined by "\n").
struct CalibrationSource {
  std::string name;    ///< as given by the user
  std::string domain;  ///< reports group by it; built-ins have one, users may set it
  std::vector<std::string> files;
  std::string jsonl_field;  ///< non-empty for JSONL sources
};

/// Resolves a source spec; `domain` overrides the default label when non-empty.
/// Throws Error naming what was looked for when nothing matches.
CalibrationSource resolve_calibration_source(const std::string& spec, const std::string& data_dir,
                                             const std::string& domain = "");
/// The source's whole text; throws Error when a file is missing/empty or a JSONL
/// line is malformed (naming file and line).
std::string read_calibration_text(const CalibrationSource& src);

// ---------------------------------------------------------------- sampling

enum class SamplingMode { Random, Contiguous };

struct SamplingOptions {
  int n_samples = 128;
  int seqlen = 256;
  uint64_t seed = 0;
  SamplingMode mode = SamplingMode::Random;
  bool add_bos = false;  ///< prepend BOS to every window (the window stays seqlen long)
};

/// A calibration set: the token windows plus where they came from.
struct CalibrationSet {
  std::string source;
  std::string domain;
  SamplingOptions options;
  int64_t tokens_in_source = 0;
  std::vector<std::vector<int>> windows;  ///< n_samples × seqlen token ids
  std::vector<int64_t> offsets;           ///< start of each window in the source's tokens
};

/// Samples windows from a tokenized source. Random: n_samples windows at offsets
/// drawn uniformly from [0, len − seqlen] by a seeded 64-bit Mersenne Twister with
/// our own (portable) range reduction, so the same seed gives the same tokens on
/// any machine and compiler. Contiguous: consecutive non-overlapping windows from
/// the start. Throws Error saying how many tokens the source has when it is too short.
CalibrationSet sample_calibration(const std::vector<int>& tokens, const SamplingOptions& opt,
                                  const std::string& source, const std::string& domain,
                                  int bos_id = -1);

/// Windows held out from other windows of the same source (the sensitivity study's, disjoint
/// from the calibration windows an importance matrix is computed on): the source cut into
/// consecutive tiles of `seqlen` tokens from the start, every tile that overlaps a token of
/// [o, o + exclude_len) for an o in `exclude_offsets` dropped, and `n_samples` of the rest
/// taken evenly spread (tile i·K/n of the K kept). Deterministic; the windows are disjoint
/// from each other and from the excluded ones. Throws Error naming the source and how many
/// tiles are left when fewer than n_samples are.
CalibrationSet held_out_windows(const std::vector<int>& tokens,
                                const std::vector<int64_t>& exclude_offsets, int exclude_len,
                                int n_samples, int seqlen, const std::string& source,
                                const std::string& domain);

/// resolve + read + tokenize (no BOS) + sample, in one call.
CalibrationSet build_calibration_set(const std::string& spec, const std::string& data_dir,
                                     const Tokenizer& tok, const SamplingOptions& opt,
                                     const std::string& domain = "");

// ---------------------------------------------------------------- capture

/// Linears that share an input share statistics: q/k/v see the attention-norm
/// output, gate/up the MLP-norm output.
enum class LinearInput { Attn, AttnOut, Mlp, MlpOut };
LinearInput linear_input_of(LinearRole role);
const char* linear_input_name(LinearInput in);

/// Statistics of one linear input, accumulated over calibration tokens.
struct ActivationStats {
  int64_t n_tokens = 0;
  MatrixD xtx;              ///< Σ x xᵀ over tokens [in, in] (double); empty when not requested
  Eigen::VectorXd sum_abs;  ///< Σ |x| per input channel
  Eigen::VectorXd sum_sq;   ///< Σ x² per input channel (the K-quant importance matrix)

  /// GPTQ's Hessian H = (2/n) Σ x xᵀ (n = tokens; GPTQ is invariant to H's scale).
  MatrixD hessian() const;
  /// mean |x| per channel (AWQ's activation magnitude).
  Eigen::VectorXd mean_abs() const;
  /// Σ x² / n per channel.
  Eigen::VectorXd mean_sq() const;
  /// Adds a batch of inputs [tokens, in].
  void add(const MatrixRM& x, bool with_xtx);
};

/// Collects ActivationStats for every (layer, input) that the forward pass hooks.
/// Use `hook()` as the LinearInputHook of Transformer::run_layer.
class ActivationCapture {
 public:
  /// with_xtx=false keeps only the per-channel statistics (cheap, for imatrix/AWQ).
  explicit ActivationCapture(bool with_xtx = true) : with_xtx_(with_xtx) {}
  /// Only these inputs are captured (default: all).
  void restrict_to(std::vector<LinearInput> inputs) { only_ = std::move(inputs); }
  std::function<void(int, LinearRole, const MatrixRM&)> hook();
  const ActivationStats& stats(int layer, LinearInput in) const;
  /// stats(layer, in).hessian(), bit for bit, computed in place and moved out; the statistics
  /// of (layer, in) are forgotten. GPTQ solves each input once, so the [in, in] fp64 sums are
  /// not held twice (11,008² × 8 B = 970 MB for a 7B down_proj).
  MatrixD take_hessian(int layer, LinearInput in);
  bool has(int layer, LinearInput in) const { return stats_.count({layer, in}) > 0; }
  void clear() { stats_.clear(); }

 private:
  bool with_xtx_;
  std::vector<LinearInput> only_;
  std::map<std::pair<int, LinearInput>, ActivationStats> stats_;
};

/// The importance matrix of llama.cpp's K-quants: the mean of x² per input column of every
/// linear, from one pass of the unquantized model over all calibration windows (what
/// llama-imatrix collects; q/k/v share their input's values, as do gate/up). Windows run
/// `batch_windows` at a time. Keyed by (layer, role); each vector has in_features entries.
std::map<std::pair<int, LinearRole>, std::vector<float>> importance_matrix(
    const Transformer& model, const CalibrationSet& set, int batch_windows = 16);

}  // namespace qsweep
