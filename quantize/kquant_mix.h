// llama.cpp's quantization mixes (Q2_K ... Q8_0) over a whole model: the per-tensor type plan
// (quantizers/kquants/mixes.h rules on the model's GGUF tensor list), the optional importance
// matrix (calibration's importance_matrix, llama-imatrix's figure), and the ggml block
// encoding of every tensor — what `llama-imatrix` + `llama-quantize` do to an F16 GGUF. The
// encoding streams: each tensor is read (formats/gguf.h's GgufSourceTensor::read_rows, in
// chunks of rows), encoded and appended to the file by write_gguf_streamed, a few tensors in
// flight at a time, so memory stays at a few tensors whatever the model's size.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "calibration/calibration.h"
#include "formats/gguf.h"
#include "model/transformer.h"
#include "quantizers/kquants/mixes.h"

namespace qsweep {

/// Which ggml type each tensor is stored as (ggml_type numbers, kquants::ggml_type::*).
/// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
/// A quantized type needs the row length (ne[0]) to be a multiple of its block size (32 or
/// 256); otherwise encoding throws naming the tensor (no silent fallback).
struct GgufTypePlan {
  int32_t weights = 1;  ///< 2-D tensors (token_embd, linears, output); default F16
  int32_t norms = 0;    ///< 1-D tensors (norms, biases); default F32
  /// Per-tensor overrides by GGUF name ("blk.3.ffn_down.weight"); win over the two above.
  std::map<std::string, int32_t> per_tensor;
  /// general.file_type (llama_ftype); -1 derives it from the most common 2-D type.
  int32_t file_type = -1;
  /// general.alignment; written as a key only when it differs from the default 32.
  uint32_t alignment = 32;
  /// general.name; empty = the model directory's base name, else "qsweep".
  std::string name;
  /// Importance matrix by GGUF name: one value per column (ne[0] = input feature) of that
  /// tensor, e.g. the mean of x² over calibration tokens. Quantized types weight their
  /// rounding error with it, as `llama-quantize --imatrix` does; tensors without an entry
  /// are quantized plainly. Column order is unaffected by the q/k row permutation.
  std::map<std::string, std::vector<float>> importance;

  int32_t type_for(const std::string& gguf_name, bool two_d) const;
  GgufWriteOptions write_options() const { return {file_type, alignment, name}; }
};

/// The type plan of a llama.cpp quantization mix for `spec`: every 2-D tensor placed by the
/// mix's rules, norms F32, general.file_type the mix's ftype. `choices` (optional) receives
/// each tensor's type and the rule that chose it.
GgufTypePlan gguf_mix_plan(kquants::Mix mix, const ModelSpec& spec, bool has_imatrix,
                           std::vector<kquants::MixChoice>* choices = nullptr);

/// One tensor encoded as `ggml_type`, read `chunk_rows` rows at a time (0: about 16 MiB of
/// fp32 per chunk): block types through kquants (each row weighted by `importance`, one value
/// per column, when non-null), float types through formats. The bytes do not depend on the
/// chunk size (every row is encoded on its own).
std::vector<uint8_t> encode_gguf_tensor(const GgufSourceTensor& t, int32_t ggml_type,
                                        const float* importance, int64_t chunk_rows = 0);

/// Checks `plan` against `src` (gguf_source_tensors order) and returns every tensor's
/// name, shape and type. Throws Error (prefixed with `where`) for an importance matrix that
/// names no tensor, has the wrong length or a negative / non-finite value, for a type the
/// writer cannot hold, and for a row length that is not a multiple of the block size (the
/// first bad tensor in file order is the one named).
std::vector<GgufTensorSpec> gguf_tensor_specs(const std::string& where,
                                              const std::vector<GgufSourceTensor>& src,
                                              const GgufTypePlan& plan);

/// Every tensor of `w` encoded as `plan` says, held in memory (for tests and small models;
/// writers stream with write_gguf_source instead). Errors as gguf_tensor_specs.
std::vector<GgufTensorData> encode_gguf_tensors(const std::string& where, const ModelSpec& spec,
                                                const ModelWeights& w, const GgufTypePlan& plan);

/// `src` (gguf_source_tensors order) as a GGUF v3 file typed by `plan`, streamed: one tensor
/// read, encoded and appended at a time (`max_in_flight` in parallel, written in order).
void write_gguf_source(const std::string& path, const ModelSpec& spec,
                       const std::vector<GgufSourceTensor>& src,
                       const std::string& model_dir_for_tokenizer, const GgufTypePlan& plan,
                       int max_in_flight = 4);

/// write_gguf_source of `w`'s tensors.
void write_gguf(const std::string& path, const ModelSpec& spec, const ModelWeights& w,
                const std::string& model_dir_for_tokenizer, const GgufTypePlan& plan = {});

/// A mix applied to a model: what a GGUF file of it needs. No tensor is encoded until the file
/// is written (write_kquant_mix).
struct KQuantMixResult {
  kquants::Mix mix = kquants::Mix::Q4_K_M;
  bool imatrix = false;                     ///< an importance matrix weighted the rounding
  std::vector<kquants::MixChoice> choices;  ///< every 2-D tensor's type and rule
  GgufTypePlan plan;                        ///< every tensor's type and importance matrix
  /// Every tensor's reader, in file order. They read the source model's weights: keep the
  /// source alive until the file is written.
  std::vector<GgufSourceTensor> source;
  GgufWriteOptions write_options;     ///< general.file_type = the mix's ftype
  double linear_bits_per_weight = 0;  ///< over the decoder linears only (as GPTQ/AWQ rows)
};

/// Streams `r` into a GGUF file at `path` (write_gguf_source of r.source typed by r.plan).
void write_kquant_mix(const std::string& path, const ModelSpec& spec, const KQuantMixResult& r,
                      const std::string& model_dir_for_tokenizer);

/// Applies `mix` to `model`. With a calibration set, its importance matrix (calibration's
/// importance_matrix, `batch_windows` windows per batch) weights each linear's rounding error
/// like `--imatrix`; token_embd and output get none, as with llama-imatrix's default (no
/// --process-output).
KQuantMixResult quantize_kquant_mix(const Transformer& model, kquants::Mix mix,
                                    const CalibrationSet* calibration, int batch_windows = 16);

/// What write_gguf_mix produced.
struct GgufMixSummary {
  std::vector<kquants::MixChoice> choices;  ///< every 2-D tensor's type and rule
  int64_t file_bytes = 0;
  double linear_bits_per_weight = 0;  ///< over the decoder linears only (as GPTQ/AWQ rows)
  double file_bits_per_weight = 0;    ///< file bytes × 8 / parameters (llama.cpp's figure)
};

/// Quantizes `w` with a llama.cpp mix and writes the GGUF. `importance` (optional, from
/// calibration's importance_matrix) weights each linear's rounding error like `--imatrix`.
GgufMixSummary write_gguf_mix(
    const std::string& path, const ModelSpec& spec, const ModelWeights& w,
    const std::string& model_dir_for_tokenizer, kquants::Mix mix,
    const std::map<std::pair<int, LinearRole>, std::vector<float>>* importance = nullptr);

}  // namespace qsweep
