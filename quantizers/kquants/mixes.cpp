#include "quantizers/kquants/mixes.h"

#include <cctype>

#include "common/errors.h"

namespace qsweep::kquants {

namespace {

using QT = QuantType;

/// When a tensor class gets the promoted type instead of its normal one. `i` is the running
/// index of that tensor kind (attn_v or ffn_down), `n` how many the model has.
enum class When : uint8_t {
  Never,
  GqaAtLeast4,           ///< n_head / n_head_kv ≥ 4
  FirstTwo,              ///< i < 2
  FirstFour,             ///< i < 4
  FirstSixteenth,        ///< i < n/16
  FirstEighth,           ///< i < n/8
  MoreBitsLayer,         ///< use_more_bits(i, n)
  FirstEighthIfImatrix,  ///< i < n/8 and an imatrix is given (Q4_0's ffn_down guard)
};

struct Promotion {
  QT normal;
  QT promoted;
  When when;
};

struct MixRow {
  Mix mix;
  const char* name;
  int32_t llama_ftype;
  QT base;  ///< token_embd (untied), attn_q, attn_k, ffn_gate, ffn_up
  Promotion attn_v;
  Promotion ffn_down;
  Promotion attn_output;
};

// field-notes.md section D, column by column. output.weight (and a tied token_embd) is not in
// the table: it is Q6_K unless the mix is Q8_0 (see output_type()).
// clang-format off
constexpr MixRow kMixTable[kMixCount] = {
//   mix          name      ftype base      attn_v                                  ffn_down                                         attn_output
    {Mix::Q2_K,   "Q2_K",   10, QT::Q2_K, {QT::Q3_K, QT::Q4_K, When::GqaAtLeast4},   {QT::Q3_K, QT::Q3_K, When::Never},                {QT::Q3_K, QT::Q3_K, When::Never}},
    {Mix::Q3_K_S, "Q3_K_S", 11, QT::Q3_K, {QT::Q3_K, QT::Q3_K, When::Never},         {QT::Q3_K, QT::Q3_K, When::Never},                {QT::Q3_K, QT::Q3_K, When::Never}},
    {Mix::Q3_K_M, "Q3_K_M", 12, QT::Q3_K, {QT::Q4_K, QT::Q5_K, When::FirstTwo},      {QT::Q4_K, QT::Q5_K, When::FirstSixteenth},       {QT::Q4_K, QT::Q4_K, When::Never}},
    {Mix::Q3_K_L, "Q3_K_L", 13, QT::Q3_K, {QT::Q5_K, QT::Q5_K, When::Never},         {QT::Q5_K, QT::Q5_K, When::Never},                {QT::Q5_K, QT::Q5_K, When::Never}},
    {Mix::Q4_0,   "Q4_0",    2, QT::Q4_0, {QT::Q4_0, QT::Q4_0, When::Never},         {QT::Q4_0, QT::Q4_1, When::FirstEighthIfImatrix}, {QT::Q4_0, QT::Q4_0, When::Never}},
    {Mix::Q4_K_S, "Q4_K_S", 14, QT::Q4_K, {QT::Q4_K, QT::Q5_K, When::FirstFour},     {QT::Q4_K, QT::Q5_K, When::FirstEighth},          {QT::Q4_K, QT::Q4_K, When::Never}},
    {Mix::Q4_K_M, "Q4_K_M", 15, QT::Q4_K, {QT::Q4_K, QT::Q6_K, When::MoreBitsLayer}, {QT::Q4_K, QT::Q6_K, When::MoreBitsLayer},        {QT::Q4_K, QT::Q4_K, When::Never}},
    {Mix::Q5_K_S, "Q5_K_S", 16, QT::Q5_K, {QT::Q5_K, QT::Q5_K, When::Never},         {QT::Q5_K, QT::Q5_K, When::Never},                {QT::Q5_K, QT::Q5_K, When::Never}},
    {Mix::Q5_K_M, "Q5_K_M", 17, QT::Q5_K, {QT::Q5_K, QT::Q6_K, When::MoreBitsLayer}, {QT::Q5_K, QT::Q6_K, When::MoreBitsLayer},        {QT::Q5_K, QT::Q5_K, When::Never}},
    {Mix::Q6_K,   "Q6_K",   18, QT::Q6_K, {QT::Q6_K, QT::Q6_K, When::Never},         {QT::Q6_K, QT::Q6_K, When::Never},                {QT::Q6_K, QT::Q6_K, When::Never}},
    {Mix::Q8_0,   "Q8_0",    7, QT::Q8_0, {QT::Q8_0, QT::Q8_0, When::Never},         {QT::Q8_0, QT::Q8_0, When::Never},                {QT::Q8_0, QT::Q8_0, When::Never}},
};
// clang-format on

constexpr bool table_in_enum_order() {
  for (int i = 0; i < kMixCount; ++i)
    if (static_cast<int>(kMixTable[i].mix) != i) return false;
  return true;
}
static_assert(table_in_enum_order(), "kMixTable must follow the Mix enum");

const MixRow& row_of(Mix m) {
  return kMixTable[static_cast<int>(m)];
}

const char* when_text(When w) {
  switch (w) {
    case When::Never:
      return "";
    case When::GqaAtLeast4:
      return "GQA >= 4";
    case When::FirstTwo:
      return "first 2";
    case When::FirstFour:
      return "first 4";
    case When::FirstSixteenth:
      return "first n/16";
    case When::FirstEighth:
      return "first n/8";
    case When::MoreBitsLayer:
      return "more-bits layer";
    case When::FirstEighthIfImatrix:
      return "first n/8 with imatrix";
  }
  return "";
}

bool holds(When w, int i, int n, int gqa, bool has_imatrix) {
  switch (w) {
    case When::Never:
      return false;
    case When::GqaAtLeast4:
      return gqa >= 4;
    case When::FirstTwo:
      return i < 2;
    case When::FirstFour:
      return i < 4;
    case When::FirstSixteenth:
      return i < n / 16;
    case When::FirstEighth:
      return i < n / 8;
    case When::MoreBitsLayer:
      return use_more_bits(i, n);
    case When::FirstEighthIfImatrix:
      return has_imatrix && i < n / 8;
  }
  return false;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// llama.cpp's fallback when the row length does not split into blocks of `t`.
std::optional<QT> fallback_of(QT t) {
  switch (t) {
    case QT::Q2_K:
    case QT::Q3_K:
      return QT::Q4_0;
    case QT::Q4_K:
      return QT::Q5_0;
    case QT::Q5_K:
      return QT::Q5_1;
    case QT::Q6_K:
      return QT::Q8_0;
    default:
      return std::nullopt;
  }
}

}  // namespace

bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

const char* mix_name(Mix m) {
  return row_of(m).name;
}
QuantType mix_base_type(Mix m) {
  return row_of(m).base;
}
int32_t mix_llama_ftype(Mix m) {
  return row_of(m).llama_ftype;
}

std::optional<Mix> mix_from_name(std::string_view name) {
  std::string upper(name);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const MixRow& r : kMixTable)
    if (upper == r.name) return r.mix;
  return std::nullopt;
}

std::vector<MixChoice> plan_mix(Mix m, const MixModel& model, const std::vector<MixTensor>& tensors,
                                bool has_imatrix) {
  QS_THROW_IF_NOT(model.n_layer > 0 && model.n_head > 0 && model.n_head_kv > 0 &&
                      model.n_head % model.n_head_kv == 0,
                  "quantization mix ", mix_name(m), ": impossible model shape (", model.n_layer,
                  " layers, ", model.n_head, " heads, ", model.n_head_kv, " kv heads)");
  const MixRow& row = row_of(m);
  const int gqa = model.n_head / model.n_head_kv;
  bool has_output = false;
  int n_attn_v = 0, n_ffn_down = 0;
  for (const auto& t : tensors) {
    has_output |= t.name == "output.weight";
    n_attn_v += t.name.find("attn_v.weight") != std::string::npos;
    n_ffn_down += t.name.find("ffn_down") != std::string::npos;
  }
  int i_attn_v = 0, i_ffn_down = 0;
  std::vector<MixChoice> out;
  for (const auto& t : tensors) {
    QS_THROW_IF_NOT(t.row_length > 0 && ends_with(t.name, "weight"), "quantization mix ",
                    mix_name(m), ": tensor '", t.name, "' (row length ", t.row_length,
                    ") is not a weight matrix a mix can place");
    QT type = row.base;
    std::string rule = "default";
    auto apply = [&](const Promotion& p, const char* what, int i, int n) {
      const bool promote = holds(p.when, i, n, gqa, has_imatrix);
      type = promote ? p.promoted : p.normal;
      rule = promote ? cat(what, ": ", when_text(p.when)) : std::string(what);
    };
    if (t.name == "output.weight" || (!has_output && t.name == "token_embd.weight")) {
      // The output projection decides most of the next-token distribution: Q6_K (Q8_0 when
      // the row does not split into the mix's blocks, or when the mix is Q8_0 already).
      const int block = traits(row.base).block_size;
      if (t.row_length % block != 0 || row.base == QT::Q8_0) {
        type = QT::Q8_0;
        rule = t.row_length % block != 0 ? cat("output: row not a multiple of ", block) : "output";
      } else {
        type = QT::Q6_K;
        rule = "output";
      }
    } else if (t.name == "token_embd.weight") {
      rule = "token_embd";
    } else if (t.name.find("attn_v.weight") != std::string::npos) {
      apply(row.attn_v, "attn_v", i_attn_v++, n_attn_v);
    } else if (t.name.find("ffn_down") != std::string::npos) {
      apply(row.ffn_down, "ffn_down", i_ffn_down++, n_ffn_down);
    } else if (t.name.find("attn_output.weight") != std::string::npos) {
      apply(row.attn_output, "attn_output", 0, 0);
    }
    MixChoice c{t.name, traits(type).ggml_type, rule, false};
    const int block = traits(type).block_size;
    if (t.row_length % block != 0) {
      // llama.cpp swaps in a 32-weight type of about the same size, and F16 when even that
      // does not fit (llama.cpp aborts for types it has no fallback for; we use F16 too).
      const std::optional<QT> fb = fallback_of(type);
      c.fallback = true;
      if (fb && t.row_length % traits(*fb).block_size == 0) {
        c.ggml_type = traits(*fb).ggml_type;
        c.rule += cat(" -> fallback ", traits(*fb).name);
      } else {
        c.ggml_type = ggml_type::F16;
        c.rule += " -> fallback F16";
      }
      c.rule += cat(" (row ", t.row_length, " not a multiple of ", block, ")");
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace qsweep::kquants
