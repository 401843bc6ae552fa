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

std::vector<uint8_t> encode_gguf_tensor(const GgufSourceTensor& t, int32_t ggml_type,
                                        const float* importance, int64_t chunk_rows) {
  const int64_t rows = t.rows(), cols = t.ne[0];
  const auto q = gguf_is_float_type(ggml_type) ? std::nullopt : kquants::type_from_ggml(ggml_type);
  const size_t row_bytes =
      q ? kquants::row_size(*q, cols) : size_t(cols) * (ggml_type == gt::F32 ? 4 : 2);
  if (chunk_rows <= 0)
    chunk_rows = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(1, cols));
  chunk_rows = std::min(chunk_rows, std::max<int64_t>(1, rows));
  std::vector<float> buf(size_t(chunk_rows * cols));
  std::vector<uint8_t> out;
  out.reserve(row_bytes * size_t(rows));
  for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
    const int64_t n = std::min(chunk_rows, rows - r0);
    t.read_rows(r0, n, buf.data());
    const std::vector<uint8_t> b = q ? kquants::quantize_tensor(*q, buf.data(), n, cols, importance)
                                     : gguf_encode_float(ggml_type, buf.data(), n * cols);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

std::vector<GgufTensorSpec> gguf_tensor_specs(const std::string& where,
                                              const std::vector<GgufSourceTensor>& src,
                                              const GgufTypePlan& plan) {
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
  std::vector<GgufTensorSpec> out;
  out.reserve(src.size());
  for (const GgufSourceTensor& t : src) {
    const int32_t type = plan.type_for(t.name, t.two_d());
    const std::string at = cat(where, ": tensor '", t.name, "'");
    if (const auto q = block_type(type, at)) {
      const auto& tr = kquants::traits(*q);
      QS_THROW_IF_NOT(t.ne[0] % tr.block_size == 0, at, ": row length ", t.ne[0],
                      " is not a multiple of ", tr.name, "'s block size ", tr.block_size);
    }
    out.push_back({t.name, t.ne, type});
  }
  return out;
}

namespace {

const float* importance_of(const GgufTypePlan& plan, const std::string& name) {
  auto it = plan.importance.find(name);
  return it == plan.importance.end() ? nullptr : it->second.data();
}

}  // namespace

std::vector<GgufTensorData> encode_gguf_tensors(const std::string& where, const ModelSpec& spec,
                                                const ModelWeights& w, const GgufTypePlan& plan) {
  const std::vector<GgufSourceTensor> src = gguf_source_tensors(spec, w);
  const std::vector<GgufTensorSpec> specs = gguf_tensor_specs(where, src, plan);
  std::vector<GgufTensorData> out(src.size());
  tbb::parallel_for(size_t(0), src.size(), [&](size_t i) {
    out[i] = GgufTensorData{
        specs[i].name, specs[i].ne, specs[i].ggml_type,
        encode_gguf_tensor(src[i], specs[i].ggml_type, importance_of(plan, src[i].name))};
  });
  return out;
}

void write_gguf_source(const std::string& path, const ModelSpec& spec,
                       const std::vector<GgufSourceTensor>& src,
                       const std::string& model_dir_for_tokenizer, const GgufTypePlan& plan,
                       int max_in_flight) {
  const std::vector<GgufTensorSpec> specs = gguf_tensor_specs(path, src, plan);
  write_gguf_streamed(
      path, spec, specs,
      [&](size_t i) {
        return encode_gguf_tensor(src[i], specs[i].ggml_type, importance_of(plan, src[i].name));
      },
      model_dir_for_tokenizer, plan.write_options(), max_in_flight);
}

void write_gguf(const std::string& path, const ModelSpec& spec, const ModelWeights& w,
                const std::string& model_dir_for_tokenizer, const GgufTypePlan& plan) {
  write_gguf_source(path, spec, gguf_source_tensors(spec, w), model_dir_for_tokenizer, plan);
}

void write_kquant_mix(const std::string& path, const ModelSpec& spec, const KQuantMixResult& r,
                      const std::string& model_dir_for_tokenizer) {
  GgufTypePlan plan = r.plan;
  plan.file_type = r.write_options.file_type;
  plan.alignment = r.write_options.alignment;
  plan.name = r.write_options.name;
  write_gguf_source(path, spec, r.source, model_dir_for_tokenizer, plan);
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
  r.source = gguf_source_tensors(spec, model.weights());
  gguf_tensor_specs(kquants::mix_name(mix), r.source, plan);  // refuse a bad plan now
  r.write_options = plan.write_options();
  r.plan = std::move(plan);
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
