#include "quantize/kquant_mix.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include "common/errors.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep {
namespace fs = std::filesystem;
namespace gt = kquants::ggml_type;

namespace {

/// A block type the GGUF writer holds, or nullopt for the float types; Error for the others.
std::optional<kquants::QuantType> block_type(int32_t t, const std::string& where) {
  if (gguf_is_float_type(t)) return std::nullopt;
  const auto q = kquants::type_from_ggml(t);
  QS_THROW_IF_NOT(q && *q != kquants::QuantType::Q8_K, where, ": ggml type ", t,
                  " cannot be written (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, "
                  "Q2_K ... Q6_K)");
  return q;
}

/// The linears' bits per weight of a mix: Σ rows·cols·bpw(type) / Σ rows·cols over blk.*.
double mix_linear_bits_per_weight(const ModelSpec& spec,
                                  const std::vector<kquants::MixChoice>& choices) {
  const std::vector<kquants::MixTensor> tensors = gguf_weight_tensors(spec);
  double bits = 0, n = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].name.rfind("blk.", 0) != 0) continue;  // token_embd, output
    const double k = double(tensors[i].rows) * double(tensors[i].row_length);
    const int32_t t = choices[i].ggml_type;
    const auto q = kquants::type_from_ggml(t);
    bits += k * (q ? kquants::traits(*q).bpw : t == gt::F16 ? 16.0 : 32.0);
    n += k;
  }
  return n > 0 ? bits / n : 0;
}

}  // namespace

int32_t GgufTypePlan::type_for(const std::string& gguf_name, bool two_d) const {
  auto it = per_tensor.find(gguf_name);
  if (it != per_tensor.end()) return it->second;
  return two_d ? weights : norms;
}

GgufTypePlan gguf_mix_plan(kquants::Mix mix, const ModelSpec& spec, bool has_imatrix,
                           std::vector<kquants::MixChoice>* choices) {
  const std::vector<kquants::MixChoice> c =
      kquants::plan_mix(mix, {spec.num_layers, spec.num_heads, spec.num_kv_heads},
                        gguf_weight_tensors(spec), has_imatrix);
  GgufTypePlan plan;
  for (const auto& x : c) plan.per_tensor[x.name] = x.ggml_type;
  plan.file_type = kquants::mix_llama_ftype(mix);
  if (choices) *choices = c;
  return plan;
}

std::vector<GgufTensorData> encode_gguf_tensors(const std::string& where, const ModelSpec& spec,
                                                const ModelWeights& w, const GgufTypePlan& plan) {
  const std::vector<GgufSourceTensor> src = gguf_source_tensors(spec, w);
  for (const auto& [name, imp] : plan.importance) {
    auto it = std::find_if(src.begin(), src.end(),
                           [&](const GgufSourceTensor& t) { return t.name == name; });
    QS_THROW_IF_NOT(it != src.end(), where, ": importance matrix for '", name,
                    "', which is not a tensor of this model");
    QS_THROW_IF_NOT(int64_t(imp.size()) == it->ne[0], where, ": importance matrix for '", name,
                    "' has ", imp.size(), " values; the tensor's rows have ", it->ne[0]);
    for (size_t j = 0; j < imp.size(); ++j)
      QS_THROW_IF_NOT(std::isfinite(imp[j]) && imp[j] >= 0, where, ": importance matrix for '",
                      name, "' has value ", imp[j], " at column ", j, " (must be finite and >= 0)");
  }
  // Types and block sizes are checked in order first (the first bad tensor is the one named);
  // then the tensors are encoded in parallel, each into its own slot (rows in parallel too,
  // inside quantize_tensor), so the bytes do not depend on the thread count.
  std::vector<GgufTensorData> out(src.size());
  std::vector<std::optional<kquants::QuantType>> types(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    const GgufSourceTensor& t = src[i];
    const int32_t type = plan.type_for(t.name, t.two_d());
    const std::string at = cat(where, ": tensor '", t.name, "'");
    out[i] = GgufTensorData{t.name, t.ne, type, {}};
    types[i] = block_type(type, at);
    if (const auto q = types[i]) {
      const auto& tr = kquants::traits(*q);
      QS_THROW_IF_NOT(t.ne[0] % tr.block_size == 0, at, ": row length ", t.ne[0],
                      " is not a multiple of ", tr.name, "'s block size ", tr.block_size);
    }
  }
  tbb::parallel_for(size_t(0), src.size(), [&](size_t i) {
    const GgufSourceTensor& t = src[i];
    if (const auto q = types[i]) {
      auto imp = plan.importance.find(t.name);
      out[i].bytes =
          kquants::quantize_tensor(*q, t.ptr(), t.rows(), t.ne[0],
                                   imp == plan.importance.end() ? nullptr : imp->second.data());
    } else {
      out[i].bytes = gguf_encode_float(out[i].ggml_type, t.ptr(), t.rows() * t.ne[0]);
    }
  });
  return out;
}

void write_gguf(const std::string& path, const ModelSpec& spec, const ModelWeights& w,
                const std::string& model_dir_for_tokenizer, const GgufTypePlan& plan) {
  write_gguf(path, spec, encode_gguf_tensors(path, spec, w, plan), model_dir_for_tokenizer,
             plan.write_options());
}

KQuantMixResult quantize_kquant_mix(const Transformer& model, kquants::Mix mix,
                                    const CalibrationSet* calibration, int batch_windows) {
  const ModelSpec& spec = model.spec();
  KQuantMixResult r;
  r.mix = mix;
  r.imatrix = calibration != nullptr;
  GgufTypePlan plan = gguf_mix_plan(mix, spec, r.imatrix, &r.choices);
  if (calibration)
    for (const auto& [key, v] : importance_matrix(model, *calibration, batch_windows))
      plan.importance[gguf_linear_name(key.first, key.second)] = v;
  r.tensors = encode_gguf_tensors(kquants::mix_name(mix), spec, model.weights(), plan);
  r.write_options = plan.write_options();
  r.linear_bits_per_weight = mix_linear_bits_per_weight(spec, r.choices);
  return r;
}

GgufMixSummary write_gguf_mix(
    const std::string& path, const ModelSpec& spec, const ModelWeights& w,
    const std::string& model_dir_for_tokenizer, kquants::Mix mix,
    const std::map<std::pair<int, LinearRole>, std::vector<float>>* importance) {
  GgufMixSummary sum;
  GgufTypePlan plan = gguf_mix_plan(mix, spec, importance != nullptr, &sum.choices);
  if (importance)
    for (const auto& [key, v] : *importance)
      plan.importance[gguf_linear_name(key.first, key.second)] = v;
  write_gguf(path, spec, w, model_dir_for_tokenizer, plan);
  sum.file_bytes = int64_t(fs::file_size(path));
  sum.file_bits_per_weight = 8.0 * double(sum.file_bytes) / double(spec.parameter_count());
  sum.linear_bits_per_weight = mix_linear_bits_per_weight(spec, sum.choices);
  return sum;
}

}  // namespace qsweep
