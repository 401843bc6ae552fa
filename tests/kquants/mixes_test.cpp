// The llama.cpp mixes against two independent references:
//  * llama.cpp's published file sizes: tools/quantize/README.md lists the bits per weight of
//    every mix of Llama-3.1-8B (field-notes.md B.3). The whole file's bpw follows from the
//    type of every tensor, so matching all nine figures to 4 decimals pins the table;
//  * the per-layer promotions of field-notes.md section D, hand-expanded for 32 layers.
#include "quantizers/kquants/mixes.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "common/errors.h"

namespace qsweep::kquants {
namespace {

struct Shape {
  int64_t vocab, hidden, inter;
  int layers, heads, kv_heads;
};

// Tensor list in GGUF file order (as formats/gguf.h writes it).
std::vector<MixTensor> tensors_of(const Shape& s) {
  std::vector<MixTensor> t;
  t.push_back({"token_embd.weight", s.hidden});
  for (int l = 0; l < s.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"})
      t.push_back({b + n + ".weight", s.hidden});
    t.push_back({b + "ffn_down.weight", s.inter});
  }
  t.push_back({"output.weight", s.hidden});
  return t;
}

int64_t numel(const Shape& s, const std::string& name) {
  const int64_t kv = s.hidden / s.heads * s.kv_heads;
  if (name == "token_embd.weight" || name == "output.weight") return s.vocab * s.hidden;
  if (name.find("attn_k") != std::string::npos || name.find("attn_v") != std::string::npos)
    return kv * s.hidden;
  if (name.find("attn_") != std::string::npos) return s.hidden * s.hidden;
  return s.hidden * s.inter;
}

double bpw_of_ggml(int32_t t) {
  if (t == ggml_type::F16) return 16;
  return traits(*type_from_ggml(t)).bpw;
}

// Bits per weight of the whole GGUF file as llama.cpp's README counts it: every tensor,
// norms in F32.
double file_bpw(Mix m, const Shape& s) {
  double bits = 0, n = 0;
  for (const MixChoice& c : plan_mix(m, {s.layers, s.heads, s.kv_heads}, tensors_of(s), false)) {
    const double k = double(numel(s, c.name));
    bits += k * bpw_of_ggml(c.ggml_type);
    n += k;
  }
  const double norms = double(s.hidden) * (2 * s.layers + 1);
  return (bits + 32 * norms) / (n + norms);
}

const Shape kLlama31_8B{128256, 4096, 14336, 32, 32, 8};

TEST(KQuantMixes, ReproduceLlamaCppPublishedBitsPerWeightOfLlama31_8B) {
  // tools/quantize/README.md (field-notes.md B.3); the README has no Q3_K_M row.
  const std::map<Mix, double> published = {
      {Mix::Q2_K, 3.1593},   {Mix::Q3_K_S, 3.6429}, {Mix::Q3_K_L, 4.2979},
      {Mix::Q4_K_S, 4.6672}, {Mix::Q4_K_M, 4.8944}, {Mix::Q5_K_S, 5.5704},
      {Mix::Q5_K_M, 5.7036}, {Mix::Q6_K, 6.5633},   {Mix::Q8_0, 8.5008}};
  for (const auto& [m, bpw] : published)
    EXPECT_NEAR(file_bpw(m, kLlama31_8B), bpw, 0.00005) << mix_name(m);
}

TEST(KQuantMixes, Llama2_7BSizesOfTheOlderReadme) {
  // examples/quantize/README.md (before Q2_K was redefined, so Q2_K is left out): 2 decimals.
  const Shape llama2{32000, 4096, 11008, 32, 32, 32};
  const std::map<Mix, double> published = {
      {Mix::Q3_K_S, 3.50}, {Mix::Q3_K_M, 3.91}, {Mix::Q3_K_L, 4.27}, {Mix::Q4_K_S, 4.58},
      {Mix::Q4_K_M, 4.84}, {Mix::Q5_K_S, 5.52}, {Mix::Q5_K_M, 5.68}, {Mix::Q6_K, 6.56}};
  for (const auto& [m, bpw] : published)
    EXPECT_NEAR(file_bpw(m, llama2), bpw, 0.006) << mix_name(m);
}

// One character per layer: the digit of the K type (2..6), '8' for Q8_0.
std::string per_layer(Mix m, const Shape& s, const std::string& kind) {
  std::string out;
  for (const MixChoice& c : plan_mix(m, {s.layers, s.heads, s.kv_heads}, tensors_of(s), false)) {
    // "=name" matches one tensor exactly ("output.weight" is also a suffix of attn_output's).
    const bool match =
        kind[0] == '=' ? c.name == kind.substr(1) : c.name.find(kind) != std::string::npos;
    if (!match) continue;
    const std::string n = traits(*type_from_ggml(c.ggml_type)).name;
    out += n[1];
  }
  return out;
}

TEST(KQuantMixes, PerLayerPromotionsMatchFieldNotesSectionD) {
  const Shape s = kLlama31_8B;  // GQA 4
  // more-bits layers for n = 32: 0-3, 6, 9, ..., 27, 28-31
  const std::string mb =
      "6666"
      "446446446446446446446446"
      "6666";
  EXPECT_EQ(per_layer(Mix::Q4_K_M, s, "attn_v"), mb);
  EXPECT_EQ(per_layer(Mix::Q4_K_M, s, "ffn_down"), mb);
  std::string mb5 = mb;
  for (char& c : mb5) c = c == '4' ? '5' : c;
  EXPECT_EQ(per_layer(Mix::Q5_K_M, s, "ffn_down"), mb5);
  EXPECT_EQ(per_layer(Mix::Q3_K_M, s, "attn_v"), "55" + std::string(30, '4'));
  EXPECT_EQ(per_layer(Mix::Q3_K_M, s, "ffn_down"), "55" + std::string(30, '4'));  // n/16 = 2
  EXPECT_EQ(per_layer(Mix::Q4_K_S, s, "attn_v"), "5555" + std::string(28, '4'));
  EXPECT_EQ(per_layer(Mix::Q4_K_S, s, "ffn_down"), "5555" + std::string(28, '4'));  // n/8 = 4
  EXPECT_EQ(per_layer(Mix::Q2_K, s, "attn_v"), std::string(32, '4'));               // GQA 4
  EXPECT_EQ(per_layer(Mix::Q2_K, {32000, 4096, 11008, 32, 32, 32}, "attn_v"),
            std::string(32, '3'));  // no GQA
  EXPECT_EQ(per_layer(Mix::Q2_K, s, "ffn_down"), std::string(32, '3'));
  EXPECT_EQ(per_layer(Mix::Q2_K, s, "attn_output"), std::string(32, '3'));
  EXPECT_EQ(per_layer(Mix::Q2_K, s, "ffn_up"), std::string(32, '2'));
  EXPECT_EQ(per_layer(Mix::Q3_K_L, s, "attn_output"), std::string(32, '5'));
  EXPECT_EQ(per_layer(Mix::Q8_0, s, "=output.weight"), "8");
  EXPECT_EQ(per_layer(Mix::Q2_K, s, "=output.weight"), "6");
  EXPECT_EQ(per_layer(Mix::Q2_K, s, "token_embd"), "2");
}

TEST(KQuantMixes, TiedEmbeddingsFollowTheOutputRule) {
  std::vector<MixTensor> t = tensors_of({4096, 256, 768, 2, 8, 4});
  t.pop_back();  // no output.weight: token_embd is the output projection
  const auto c = plan_mix(Mix::Q2_K, {2, 8, 4}, t, false);
  EXPECT_EQ(c.front().name, "token_embd.weight");
  EXPECT_EQ(c.front().ggml_type, ggml_type::Q6_K);
}

TEST(KQuantMixes, MoreBitsLayersForSmallModels) {
  // tinycode has 6 layers: n/8 = 0, 7n/8 = 5, so layers 2 and 5.
  std::string got;
  for (int i = 0; i < 6; ++i) got += use_more_bits(i, 6) ? '1' : '0';
  EXPECT_EQ(got, "001001");
}

TEST(KQuantMixes, RowsThatDoNotSplitIntoSuperBlocksFallBack) {
  // 320 = 10 × 32 but not a multiple of 256; ffn_down rows 864 = 27 × 32.
  const Shape s{1000, 320, 864, 8, 8, 2};
  for (Mix m : {Mix::Q2_K, Mix::Q4_K_M, Mix::Q5_K_S, Mix::Q6_K}) {
    for (const MixChoice& c : plan_mix(m, {8, 8, 2}, tensors_of(s), false)) {
      const QuantType planned = mix_base_type(m);
      if (c.name == "output.weight") {
        EXPECT_EQ(c.ggml_type, ggml_type::Q8_0) << c.rule;  // output: Q8_0 when rows don't split
        continue;
      }
      EXPECT_TRUE(c.fallback) << mix_name(m) << " " << c.name;
      EXPECT_NE(c.rule.find("fallback"), std::string::npos);
      if (c.name.find("ffn_gate") != std::string::npos) {
        const int32_t want = planned == QuantType::Q2_K   ? ggml_type::Q4_0
                             : planned == QuantType::Q4_K ? ggml_type::Q5_0
                             : planned == QuantType::Q5_K ? ggml_type::Q5_1
                                                          : ggml_type::Q8_0;
        EXPECT_EQ(c.ggml_type, want) << mix_name(m);
      }
    }
  }
  // Not even a multiple of 32: F16.
  const auto c = plan_mix(Mix::Q4_K_M, {1, 1, 1}, {{"blk.0.ffn_up.weight", 100}}, false);
  EXPECT_EQ(c[0].ggml_type, ggml_type::F16);
  // Legacy Q8_0 with rows of 320 fits its 32-blocks: no fallback.
  const auto q8 = plan_mix(Mix::Q8_0, {1, 1, 1}, {{"blk.0.ffn_up.weight", 320}}, false);
  EXPECT_EQ(q8[0].ggml_type, ggml_type::Q8_0);
  EXPECT_FALSE(q8[0].fallback);
}

TEST(KQuantMixes, Q4_0GuardsEarlyFfnDownOnlyWithAnImatrix) {
  const Shape s{1000, 256, 512, 16, 8, 8};
  auto down = [&](bool imatrix) {
    std::string out;
    for (const MixChoice& c : plan_mix(Mix::Q4_0, {16, 8, 8}, tensors_of(s), imatrix))
      if (c.name.find("ffn_down") != std::string::npos)
        out += c.ggml_type == ggml_type::Q4_1 ? '1' : '0';
    return out;
  };
  EXPECT_EQ(down(false), std::string(16, '0'));
  EXPECT_EQ(down(true), "11" + std::string(14, '0'));
}

TEST(KQuantMixes, NamesAndBadInput) {
  EXPECT_EQ(mix_from_name("q4_k_m"), Mix::Q4_K_M);
  EXPECT_EQ(mix_from_name("Q3_K_S"), Mix::Q3_K_S);
  EXPECT_FALSE(mix_from_name("q4_k_x").has_value());
  EXPECT_EQ(mix_llama_ftype(Mix::Q4_K_M), 15);
  EXPECT_EQ(mix_llama_ftype(Mix::Q8_0), 7);
  for (int i = 0; i < kMixCount; ++i)
    EXPECT_EQ(mix_from_name(mix_name(static_cast<Mix>(i))), static_cast<Mix>(i));
  EXPECT_THROW(plan_mix(Mix::Q2_K, {0, 8, 8}, {}, false), Error);
  EXPECT_THROW(plan_mix(Mix::Q2_K, {2, 8, 3}, {}, false), Error);
  EXPECT_THROW(plan_mix(Mix::Q2_K, {2, 8, 8}, {{"blk.0.attn_norm.bias", 256}}, false), Error);
}

}  // namespace
}  // namespace qsweep::kquants
