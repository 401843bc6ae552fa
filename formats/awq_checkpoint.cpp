// The AutoAWQ "gemm" checkpoint (quant_method "awq"): writer and reader. The bit layout is
// formats/awq_packing.h; this file is the safetensors and config.json side.

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/json_reader.h"
#include "common/mapped_file.h"
#include "formats/awq_packing.h"
#include "formats/detail/checkpoint_dir.h"
#include "formats/detail/quantized_tensors.h"
#include "formats/formats.h"
#include "model/safetensors.h"

namespace qsweep {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string awq_prefix(int layer, LinearRole r) {
  std::string n = hf_linear_name(layer, r);
  return n.substr(0, n.size() - std::string(".weight").size());
}

// The per-layer vectors AWQ may have changed (folded 1/s): written from the model as F32.
std::map<std::string, const VectorF*> folded_vectors(const ModelWeights& w) {
  std::map<std::string, const VectorF*> m;
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    const std::string p = cat("model.layers.", l, ".");
    m[p + "input_layernorm.weight"] = &L.attn_norm;
    m[p + "post_attention_layernorm.weight"] = &L.mlp_norm;
    if (L.bv.size()) m[p + "self_attn.v_proj.bias"] = &L.bv;
  }
  return m;
}

}  // namespace

void export_awq(const QuantizedCheckpoint& ckpt, const std::string& source_dir,
                const std::string& out_dir) {
  for (const auto& l : ckpt.linears)
    QS_THROW_IF_NOT(l.q->bits == 4,
                    "export_awq: the AWQ gemm checkpoint holds 4-bit codes only"
                    " (AutoAWQ WQLinear_GEMM); this model is ",
                    l.q->bits, "-bit");
  QS_THROW_IF_NOT(ckpt.folded != nullptr, "export_awq: the folded float weights are missing");
  detail::write_directory_atomically(out_dir, [&](const fs::path& tmp) {
    const SafetensorsCheckpoint src(source_dir);
    std::map<std::string, const LinearQTensor*> by_name;
    for (const auto& l : ckpt.linears) by_name[hf_linear_name(l.layer, l.role)] = &l;
    QS_THROW_IF_NOT(by_name.size() == ckpt.linears.size(), "export_awq: duplicate linears");
    const auto folded = folded_vectors(*ckpt.folded);

    std::vector<AwqPacked> packed;
    packed.reserve(ckpt.linears.size());
    std::vector<TensorToWrite> tensors;
    for (const TensorView* t : src.tensors()) {
      if (auto f = folded.find(t->name); f != folded.end()) {
        QS_THROW_IF_NOT(t->numel() == f->second->size(), source_dir, ": tensor '", t->name,
                        "' has ", t->numel(), " values, the model ", f->second->size());
        tensors.push_back({t->name, DType::F32, t->shape, f->second->data()});
        continue;
      }
      auto it = by_name.find(t->name);
      if (it == by_name.end()) {  // untouched: bytes as they were
        tensors.push_back({t->name, t->dtype, t->shape, t->data});
        continue;
      }
      const LinearQTensor& ql = *it->second;
      try {
        packed.push_back(awq_pack(*ql.q));
      } catch (const Error& e) {
        throw Error(cat("export_awq: ", t->name, ": ", e.what()));
      }
      const AwqPacked& p = packed.back();
      const std::string pre = awq_prefix(ql.layer, ql.role);
      tensors.push_back(
          {pre + ".qweight", DType::I32, {p.in_features, p.packed_cols()}, p.qweight.data()});
      tensors.push_back(
          {pre + ".qzeros", DType::I32, {p.n_groups, p.packed_cols()}, p.qzeros.data()});
      tensors.push_back(
          {pre + ".scales", DType::F16, {p.n_groups, p.out_features}, p.scales_f16.data()});
      by_name.erase(it);
    }
    QS_THROW_IF_NOT(by_name.empty(), source_dir, ": quantized linear '", by_name.begin()->first,
                    "' is not in the source checkpoint");
    write_safetensors((tmp / "model.safetensors").string(), tensors, {{"format", "pt"}});

    json cfg = read_json_file((fs::path(source_dir) / "config.json").string());
    json q = ckpt.quantization_config;
    q["quant_method"] = "awq";
    q["version"] = "gemm";
    q["modules_to_not_convert"] = nullptr;
    q["meta"]["folded_norms"] = "input_layernorm / post_attention_layernorm hold 1/s (F32)";
    cfg["quantization_config"] = q;
    const std::string cfg_text = cfg.dump(2) + "\n";
    write_file_atomic((tmp / "config.json").string(), cfg_text.data(), cfg_text.size());
    // AutoAWQ's own quant_config.json names.
    const json qc = {{"zero_point", q["zero_point"]},
                     {"q_group_size", q["group_size"]},
                     {"w_bit", q["bits"]},
                     {"version", "GEMM"}};
    const std::string qc_text = qc.dump(2) + "\n";
    write_file_atomic((tmp / "quant_config.json").string(), qc_text.data(), qc_text.size());
    detail::copy_tokenizer_files(source_dir, tmp);
  });
}

LoadedModel load_awq_checkpoint(const std::string& dir) {
  LoadedModel out;
  out.spec = load_model_spec(dir);
  const std::string cfg_file = (fs::path(dir) / "config.json").string();
  const json cfg = read_json_file(cfg_file);
  const JsonReader q = JsonReader(cfg, cfg_file).object("quantization_config");
  QS_THROW_IF_NOT(q.required<std::string>("quant_method") == "awq", cfg_file,
                  ": key 'quantization_config.quant_method' is not \"awq\"");
  std::string version = q.optional<std::string>("version", "gemm");
  for (char& c : version) c = char(std::tolower(static_cast<unsigned char>(c)));
  QS_THROW_IF_NOT(version == "gemm", cfg_file, ": key 'quantization_config.version' = '", version,
                  "' is not supported; qsweep reads the \"gemm\" layout");
  const char* bits_key = q.has("bits") ? "bits" : "w_bit";
  const int bits = int(q.required<int64_t>(bits_key));
  q.check(bits == 4, bits_key, "4 (AWQ gemm)");
  const char* group_key = q.has("group_size") ? "group_size" : "q_group_size";
  const int group_size = int(q.required_int(group_key, -1, INT32_MAX));
  q.check(group_size == -1 || group_size >= 1, group_key, "-1 (per-channel) or positive");
  QS_THROW_IF_NOT(q.optional<bool>("zero_point", true), cfg_file,
                  ": key 'quantization_config.zero_point' = false: AWQ without zero_point is not "
                  "supported");
  out.format = "awq";
  out.description =
      cat("awq ", bits, "-bit ", group_size > 0 ? cat("g", group_size) : "per-channel", " gemm");
  auto loader = [&](const SafetensorsCheckpoint& ckpt, int layer, LinearRole role, int64_t rows,
                    int64_t cols) -> WeightTensor {
    const std::string pre = awq_prefix(layer, role);
    if (!ckpt.find(pre + ".qweight"))  // modules_to_not_convert: a plain weight
      return load_linear_weight(ckpt, layer, role, rows, cols);
    QS_THROW_IF_NOT(rows % 8 == 0 && (group_size == -1 || cols % group_size == 0), ckpt.dir(), ": ",
                    pre, " is ", rows, "x", cols,
                    "; the AWQ layout needs out % 8 == 0 and in % group_size == 0");
    AwqPacked p;
    p.bits = bits;
    p.group_size = group_size;
    p.in_features = cols;
    p.out_features = rows;
    p.n_groups = group_size > 0 ? cols / group_size : 1;
    p.qweight =
        detail::read_packed_i32(ckpt.get(pre + ".qweight"), {cols, p.packed_cols()}, "AWQ gemm");
    p.qzeros = detail::read_packed_i32(ckpt.get(pre + ".qzeros"), {p.n_groups, p.packed_cols()},
                                       "AWQ gemm");
    p.scales_f16 = detail::read_scales_f16(ckpt.get(pre + ".scales"), p.n_groups, rows);
    return detail::unpack_and_dequantize(
        cat(ckpt.dir(), ": ", pre), [&] { return awq_unpack(p); }, &out.quantized);
  };
  out.weights = load_weights(dir, out.spec, loader);
  return out;
}

}  // namespace qsweep
