#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string_view>

#include "common/errors.h"
#include "common/json_reader.h"
#include "common/mapped_file.h"
#include "formats/detail/checkpoint_dir.h"
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

/// A module name as a regular expression that matches it only ("model\\.layers\\.3...").
std::string regex_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view(".^$|?*+()[]{}\\").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

/// GPTQModel's per-module overrides (`dynamic` in quantization_config / quantize_config.json;
/// vLLM's gptq_utils.get_dynamic_override reads them the same way): keys are Python regular
/// expressions matched at the start of the module name (re.match), "+:" (or no prefix) for
/// overrides of bits / group_size / sym / desc_act, "-:" for a module left unquantized.
struct DynamicRule {
  std::string key;
  std::regex re;
  bool negative = false;
  std::optional<int> bits, group_size;
  std::optional<bool> sym;
};

std::vector<DynamicRule> read_dynamic(const JsonReader& q) {
  std::vector<DynamicRule> rules;
  if (!q.has("dynamic")) return rules;
  const JsonReader d = q.object("dynamic");
  for (const auto& [key, value] : d.node().items()) {
    DynamicRule r;
    r.key = key;
    std::string pattern = key;
    if (pattern.rfind("-:", 0) == 0) {
      r.negative = true;
      pattern = pattern.substr(2);
    } else if (pattern.rfind("+:", 0) == 0) {
      pattern = pattern.substr(2);
    }
    try {
      r.re = std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      d.fail(key, cat("a regular expression (", e.what(), ")"));
    }
    const JsonReader o = d.object(key);
    if (o.has("bits")) {
      r.bits = int(o.required<int64_t>("bits"));
      o.check(*r.bits == 2 || *r.bits == 3 || *r.bits == 4 || *r.bits == 8, "bits",
              "one of 2, 3, 4, 8");
    }
    if (o.has("group_size")) {
      r.group_size = int(o.required_int("group_size", -1, INT32_MAX));
      o.check(*r.group_size == -1 || *r.group_size >= 1, "group_size",
              "-1 (per-channel) or positive");
    }
    if (o.has("sym")) r.sym = o.required<bool>("sym");
    rules.push_back(std::move(r));
  }
  return rules;
}

}  // namespace

void export_gptq(const QuantizedCheckpoint& ckpt, const std::string& source_dir,
                 const std::string& out_dir) {
  detail::write_directory_atomically(out_dir, [&](const fs::path& tmp) {
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
    // Linears stored with other bits or groups than the config's: one "+:" override each.
    json dynamic = json::object();
    for (const auto& l : ckpt.linears) {
      const bool other_bits = q.contains("bits") && q["bits"] != l.q->bits;
      const bool other_group = q.contains("group_size") && q["group_size"] != l.q->group_size;
      if (other_bits || other_group)
        dynamic["+:" + regex_escape(linear_prefix(l.layer, l.role))] = {
            {"bits", l.q->bits}, {"group_size", l.q->group_size}};
    }
    if (!dynamic.empty()) q["dynamic"] = dynamic;
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
    detail::copy_tokenizer_files(source_dir, tmp);
  });
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
  const std::vector<DynamicRule> dynamic = read_dynamic(q);
  out.format = "gptq";
  out.description =
      cat("gptq ", bits, "-bit ", group_size > 0 ? cat("g", group_size) : "per-channel",
          sym ? " sym" : " asym", desc_act ? " desc_act" : "",
          dynamic.empty() ? "" : cat(" + ", dynamic.size(), " per-module overrides (dynamic)"));
  auto loader = [&](const SafetensorsCheckpoint& ckpt, int layer, LinearRole role, int64_t rows,
                    int64_t cols) -> WeightTensor {
    const std::string pre = linear_prefix(layer, role);
    QS_THROW_IF_NOT(cols % 32 == 0 && rows % 32 == 0, ckpt.dir(), ": ", pre, " is ", rows, "x",
                    cols, "; the GPTQ layout needs multiples of 32");
    GptqPacked p;
    p.bits = bits;
    p.group_size = group_size;
    p.sym = sym;
    const DynamicRule* rule = nullptr;  // the one rule matching this module (re.match)
    for (const DynamicRule& r : dynamic) {
      if (!std::regex_search(pre, r.re, std::regex_constants::match_continuous)) continue;
      QS_THROW_IF_NOT(!rule, cfg_file, ": key 'quantization_config.dynamic': module ", pre,
                      " matches both '", rule ? rule->key : "", "' and '", r.key,
                      "'; qsweep needs one rule per module (GPTQModel takes the first in file "
                      "order)");
      rule = &r;
    }
    if (rule) {
      QS_THROW_IF_NOT(!rule->negative, cfg_file, ": key 'quantization_config.dynamic.", rule->key,
                      "' leaves ", pre,
                      " unquantized; qsweep reads GPTQ checkpoints whose "
                      "linears are all quantized");
      p.bits = rule->bits.value_or(bits);
      p.group_size = rule->group_size.value_or(group_size);
      p.sym = rule->sym.value_or(sym);
    }
    const int64_t gs = p.group_size;
    p.in_features = cols;
    p.out_features = rows;
    p.n_groups = gs > 0 ? (cols + gs - 1) / gs : 1;
    p.qweight =
        detail::read_packed_i32(ckpt.get(pre + ".qweight"), {p.qweight_rows(), rows}, "GPTQ");
    p.qzeros =
        detail::read_packed_i32(ckpt.get(pre + ".qzeros"), {p.n_groups, p.qzeros_cols()}, "GPTQ");
    p.scales_f16 = detail::read_scales_f16(ckpt.get(pre + ".scales"), p.n_groups, rows);
    if (const TensorView* g = ckpt.find(pre + ".g_idx"))
      p.g_idx = detail::read_packed_i32(*g, {cols}, "GPTQ");
    else
      for (int64_t c = 0; c < cols; ++c) p.g_idx.push_back(int32_t(gs > 0 ? c / gs : 0));
    return detail::unpack_and_dequantize(
        cat(ckpt.dir(), ": ", pre), [&] { return gptq_unpack(p); }, &out.quantized);
  };
  out.weights = load_weights(dir, out.spec, loader);
  return out;
}

}  // namespace qsweep
