#include <unistd.h>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/json_reader.h"
#include "common/mapped_file.h"
#include "formats/detail/quantized_tensors.h"
#include "formats/formats.h"
#include "formats/gguf.h"
#include "formats/gptq_packing.h"
#include "model/safetensors.h"

namespace qsweep {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string linear_prefix(int layer, LinearRole r) {
  std::string n = hf_linear_name(layer, r);
  return n.substr(0, n.size() - std::string(".weight").size());
}

}  // namespace

void export_gptq(const QuantizedCheckpoint& ckpt, const std::string& source_dir,
                 const std::string& out_dir) {
  const fs::path out(out_dir);
  const fs::path tmp =
      out.parent_path() / (out.filename().string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    const SafetensorsCheckpoint src(source_dir);
    std::map<std::string, const LinearQTensor*> by_name;
    for (const auto& l : ckpt.linears) by_name[hf_linear_name(l.layer, l.role)] = &l;
    QS_THROW_IF_NOT(by_name.size() == ckpt.linears.size(), "export_gptq: duplicate linears");

    std::vector<GptqPacked> packed;
    packed.reserve(ckpt.linears.size());
    std::vector<TensorToWrite> tensors;
    int64_t underflows = 0;
    for (const TensorView* t : src.tensors()) {
      auto it = by_name.find(t->name);
      if (it == by_name.end()) {  // unquantized: bytes as they were
        tensors.push_back({t->name, t->dtype, t->shape, t->data});
        continue;
      }
      const LinearQTensor& ql = *it->second;
      underflows += gptq_v1_zero_underflows(*ql.q);
      packed.push_back(gptq_pack(*ql.q));
      const GptqPacked& p = packed.back();
      const std::string pre = linear_prefix(ql.layer, ql.role);
      tensors.push_back(
          {pre + ".qweight", DType::I32, {p.qweight_rows(), p.out_features}, p.qweight.data()});
      tensors.push_back(
          {pre + ".qzeros", DType::I32, {p.n_groups, p.qzeros_cols()}, p.qzeros.data()});
      tensors.push_back(
          {pre + ".scales", DType::F16, {p.n_groups, p.out_features}, p.scales_f16.data()});
      tensors.push_back({pre + ".g_idx", DType::I32, {p.in_features}, p.g_idx.data()});
      by_name.erase(it);
    }
    QS_THROW_IF_NOT(by_name.empty(), source_dir, ": quantized linear '", by_name.begin()->first,
                    "' is not in the source checkpoint");
    write_safetensors((tmp / "model.safetensors").string(), tensors, {{"format", "pt"}});

    json cfg = read_json_file((fs::path(source_dir) / "config.json").string());
    json q = ckpt.quantization_config;
    q["quant_method"] = "gptq";
    q["checkpoint_format"] = "gptq";
    q["meta"]["zero_point_convention"] =
        "v1: qzeros store (zero - 1) modulo 2^bits, packed along the output dimension";
    q["meta"]["v1_zero_underflows"] = underflows;
    cfg["quantization_config"] = q;
    const std::string cfg_text = cfg.dump(2) + "\n";
    write_file_atomic((tmp / "config.json").string(), cfg_text.data(), cfg_text.size());
    json qc = q;
    qc.erase("quant_method");
    qc["model_file_base_name"] = "model";
    const std::string qc_text = qc.dump(2) + "\n";
    write_file_atomic((tmp / "quantize_config.json").string(), qc_text.data(), qc_text.size());
    for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                          "special_tokens_map.json", "generation_config.json"})
      if (fs::exists(fs::path(source_dir) / f)) {  // read_text_file: regular files only
        const std::string bytes = read_text_file((fs::path(source_dir) / f).string());
        write_file_atomic((tmp / f).string(), bytes.data(), bytes.size());
      }
  } catch (...) {
    fs::remove_all(tmp);
    throw;
  }
  // Replace atomically enough: the old directory disappears only once the new one is complete.
  const fs::path old =
      out.parent_path() / (out.filename().string() + ".old-" + std::to_string(::getpid()));
  if (fs::exists(out)) fs::rename(out, old);
  fs::rename(tmp, out);
  fs::remove_all(old);
}

namespace {}  // namespace

LoadedModel load_model(const std::string& dir) {
  if (is_gguf_file(dir)) return load_gguf(dir);  // a single file: GGUF (formats/gguf.h)
  LoadedModel out;
  out.spec = load_model_spec(dir);
  const std::string cfg_file = (fs::path(dir) / "config.json").string();
  const json cfg = read_json_file(cfg_file);
  const JsonReader root(cfg, cfg_file);
  if (!cfg.contains("quantization_config")) {
    out.weights = load_weights(dir, out.spec);
    out.format = "hf";
    out.description = cat("unquantized ", out.spec.torch_dtype.empty() ? "" : out.spec.torch_dtype);
    return out;
  }
  const JsonReader q = root.object("quantization_config");  // null or not an object: Error
  const std::string method = q.required<std::string>("quant_method");
  if (method == "awq") return load_awq_checkpoint(dir);
  QS_THROW_IF_NOT(method == "gptq", cfg_file, ": key 'quantization_config.quant_method' = '",
                  method, "' is not supported (qsweep reads gptq and awq)");
  const std::string fmt = q.optional<std::string>("checkpoint_format", "gptq");
  QS_THROW_IF_NOT(fmt == "gptq", cfg_file, ": key 'quantization_config.checkpoint_format' = '", fmt,
                  "' is not supported; qsweep reads the v1 \"gptq\" format");
  const int bits = int(q.required<int64_t>("bits"));
  q.check(bits == 2 || bits == 3 || bits == 4 || bits == 8, "bits", "one of 2, 3, 4, 8");
  const int group_size = int(q.optional_int("group_size", -1, -1, INT32_MAX));
  q.check(group_size == -1 || group_size >= 1, "group_size", "-1 (per-channel) or positive");
  const bool sym = q.optional<bool>("sym", true);
  const bool desc_act = q.optional<bool>("desc_act", false);
  out.format = "gptq";
  out.description =
      cat("gptq ", bits, "-bit ", group_size > 0 ? cat("g", group_size) : "per-channel",
          sym ? " sym" : " asym", desc_act ? " desc_act" : "");
  auto loader = [&](const SafetensorsCheckpoint& ckpt, int layer, LinearRole role, int64_t rows,
                    int64_t cols) -> WeightTensor {
    const std::string pre = linear_prefix(layer, role);
    QS_THROW_IF_NOT(cols % 32 == 0 && rows % 32 == 0, ckpt.dir(), ": ", pre, " is ", rows, "x",
                    cols, "; the GPTQ layout needs multiples of 32");
    GptqPacked p;
    p.bits = bits;
    p.group_size = group_size;
    p.sym = sym;
    p.in_features = cols;
    p.out_features = rows;
    p.n_groups = group_size > 0 ? (cols + group_size - 1) / group_size : 1;
    p.qweight =
        detail::read_packed_i32(ckpt.get(pre + ".qweight"), {p.qweight_rows(), rows}, "GPTQ");
    p.qzeros =
        detail::read_packed_i32(ckpt.get(pre + ".qzeros"), {p.n_groups, p.qzeros_cols()}, "GPTQ");
    p.scales_f16 = detail::read_scales_f16(ckpt.get(pre + ".scales"), p.n_groups, rows);
    if (const TensorView* g = ckpt.find(pre + ".g_idx"))
      p.g_idx = detail::read_packed_i32(*g, {cols}, "GPTQ");
    else
      for (int64_t c = 0; c < cols; ++c)
        p.g_idx.push_back(int32_t(group_size > 0 ? c / group_size : 0));
    return detail::unpack_and_dequantize(
        cat(ckpt.dir(), ": ", pre), [&] { return gptq_unpack(p); }, &out.quantized);
  };
  out.weights = load_weights(dir, out.spec, loader);
  return out;
}

}  // namespace qsweep
