// quantize/method.h: the one method table and the typed configurations.
#include <gtest/gtest.h>

#include <set>

#include "common/errors.h"
#include "quantize/method.h"

namespace qsweep {
namespace {

const char* const kAllNames[] = {"rtn",    "gptq",   "awq",  "q2_k",   "q3_k_s",
                                 "q3_k_m", "q3_k_l", "q4_0", "q4_k_s", "q4_k_m",
                                 "q5_k_s", "q5_k_m", "q6_k", "q8_0",   "auto_mix"};

std::set<std::string> keys_of(const nlohmann::json& j) {
  std::set<std::string> k;
  for (const auto& [key, v] : j.items()) k.insert(key);
  return k;
}

TEST(MethodTable, EveryNameParsesToItsRow) {
  ASSERT_EQ(all_methods().size(), size_t(kMethodCount));
  ASSERT_EQ(method_names().size(), std::size(kAllNames));
  for (size_t i = 0; i < std::size(kAllNames); ++i) {
    const auto m = method_from_name(kAllNames[i]);
    ASSERT_TRUE(m.has_value()) << kAllNames[i];
    EXPECT_EQ(int(*m), int(i));
    EXPECT_EQ(method_info(*m).name, kAllNames[i]);
    EXPECT_EQ(method_names()[i], kAllNames[i]);
    const MethodInfo& info = method_info(*m);
    if (info.family == MethodFamily::KQuantMix) {
      ASSERT_TRUE(info.mix.has_value());
      EXPECT_EQ(info.display, kquants::mix_name(*info.mix));
      EXPECT_EQ(info.layout, CheckpointLayout::Gguf);
      EXPECT_EQ(info.calibration, CalibrationUse::Optional);
      EXPECT_EQ(info.nominal_bits, info.name[1] - '0');
      EXPECT_EQ(info.keys, std::vector<std::string>{"calibration"});
    }
  }
  EXPECT_FALSE(method_from_name("GPTQ").has_value());  // as written in YAML, lower case
  EXPECT_EQ(method_info(Method::Q3_K_M).nominal_bits, 3);
  EXPECT_EQ(method_info(Method::Gptq).display, "GPTQ");
  EXPECT_EQ(method_info(Method::Awq).layout, CheckpointLayout::AwqGemmSafetensors);
  EXPECT_EQ(method_info(Method::Rtn).layout, CheckpointLayout::GptqSafetensors);
  EXPECT_EQ(method_info(Method::Rtn).calibration, CalibrationUse::None);
  EXPECT_EQ(method_info(Method::Gptq).calibration, CalibrationUse::Required);
  EXPECT_EQ(
      method_info(Method::Gptq).keys,
      (std::vector<std::string>{"bits", "group_size", "sym", "desc_act", "static_groups",
                                "true_sequential", "damp_percent", "budget_bpw", "calibration"}));
  EXPECT_EQ(method_info(Method::Awq).keys,
            (std::vector<std::string>{"bits", "group_size", "sym", "calibration"}));
  EXPECT_EQ(method_info(Method::Rtn).keys, (std::vector<std::string>{"bits", "group_size", "sym"}));
}

TEST(MethodTable, AnUnknownNameListsEveryMethod) {
  try {
    parse_method("f16");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "unknown method 'f16' (methods: rtn, gptq, awq, q2_k, q3_k_s, q3_k_m, q3_k_l, q4_0, "
              "q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, q8_0, auto_mix)");
  }
}

TEST(QuantMethodConfig, JsonRoundTripForEveryMethod) {
  for (const MethodInfo& info : all_methods()) {
    SCOPED_TRACE(info.name);
    QuantMethodConfig c = QuantMethodConfig::defaults(info.method);
    // Non-default options where the method has them.
    if (auto* g = std::get_if<GptqOptions>(&c.options)) {
      *g = GptqOptions{3, 64, true, true, true, false, 0.05, 64};
    } else if (auto* r = std::get_if<RtnOptions>(&c.options)) {
      *r = RtnOptions{2, -1, true};
    } else if (auto* a = std::get_if<AwqOptions>(&c.options)) {
      *a = AwqOptions{4, 32, false};
    }
    const nlohmann::json j = c.to_json();
    EXPECT_EQ(j.at("method"), info.name);
    const QuantMethodConfig back = QuantMethodConfig::from_json(j);
    EXPECT_TRUE(back == c);
    EXPECT_EQ(back.to_json(), j);
    EXPECT_THROW(QuantMethodConfig::from_json(nlohmann::json(j.dump())), Error);  // not an object
    std::set<std::string> want;
    switch (info.family) {
      case MethodFamily::Rtn:
      case MethodFamily::Awq:
        want = {"method", "bits", "group_size", "sym"};
        break;
      case MethodFamily::Gptq:
        want = {"method",          "bits",         "group_size", "sym", "desc_act", "static_groups",
                "true_sequential", "damp_percent", "block_size"};
        break;
      case MethodFamily::KQuantMix:
        want = {"method"};
        break;
      case MethodFamily::AutoMix:
        want = {"method", "budget", "budget_bpw"};
        break;
    }
    EXPECT_EQ(keys_of(j), want);
    // Missing options take their defaults.
    EXPECT_TRUE(QuantMethodConfig::from_json({{"method", info.name}}) ==
                QuantMethodConfig::defaults(info.method));
  }
}

TEST(QuantMethodConfig, FromJsonRefusesWhatTheMethodDoesNotTake) {
  EXPECT_THROW(QuantMethodConfig::from_json({{"method", "q4_k_m"}, {"bits", 4}}), Error);
  EXPECT_THROW(QuantMethodConfig::from_json({{"method", "rtn"}, {"damp_percent", 0.1}}), Error);
  EXPECT_THROW(QuantMethodConfig::from_json({{"method", "gptq"}, {"bits", "four"}}), Error);
  EXPECT_THROW(QuantMethodConfig::from_json({{"method", "f16"}}), Error);
  EXPECT_THROW(QuantMethodConfig::from_json({{"bits", 4}}), Error);
}

TEST(QuantMethodConfig, LabelsAndIdsAreTodaysStrings) {
  // Expected strings: what pipeline/sweep.cpp variant_label() and pipeline/spec.cpp
  // variant_id() produced before the method table (minus the calibration suffix).
  GptqOptions act;
  act.desc_act = true;
  EXPECT_EQ((QuantMethodConfig{Method::Gptq, act}).label(), "GPTQ 4-bit g128 act-order");
  EXPECT_EQ((QuantMethodConfig{Method::Gptq, act}).id(), "gptq-b4-g128-act");
  EXPECT_EQ((QuantMethodConfig{Method::Rtn, RtnOptions{3, -1, true}}).label(),
            "RTN 3-bit per-channel sym");
  EXPECT_EQ((QuantMethodConfig{Method::Rtn, RtnOptions{3, -1, true}}).id(), "rtn-b3-gch-sym");
  // configs/demo.yaml's variants.
  EXPECT_EQ((QuantMethodConfig{Method::Rtn, RtnOptions{8, 128, false}}).id(), "rtn-b8-g128");
  EXPECT_EQ((QuantMethodConfig{Method::Rtn, RtnOptions{8, 128, false}}).label(), "RTN 8-bit g128");
  GptqOptions g3;
  g3.bits = 3;
  EXPECT_EQ((QuantMethodConfig{Method::Gptq, g3}).id(), "gptq-b3-g128");
  EXPECT_EQ((QuantMethodConfig{Method::Gptq, g3}).label(), "GPTQ 3-bit g128");
  GptqOptions all{3, -1, true, false, false, false, 0.1, 128};
  EXPECT_EQ((QuantMethodConfig{Method::Gptq, all}).id(), "gptq-b3-gch-sym-nts-damp0.1");
  EXPECT_EQ((QuantMethodConfig{Method::Gptq, all}).label(), "GPTQ 3-bit per-channel sym non-seq");
  GptqOptions st;
  st.desc_act = true;
  st.static_groups = true;
  EXPECT_EQ((QuantMethodConfig{Method::Gptq, st}).id(), "gptq-b4-g128-act-static");
  EXPECT_EQ((QuantMethodConfig{Method::Gptq, st}).label(), "GPTQ 4-bit g128 act-order static");
  EXPECT_EQ(QuantMethodConfig::defaults(Method::Awq).label(), "AWQ 4-bit g128");
  EXPECT_EQ(QuantMethodConfig::defaults(Method::Awq).id(), "awq-b4-g128");
  EXPECT_EQ(QuantMethodConfig::defaults(Method::Q4_K_M).label(), "Q4_K_M");
  EXPECT_EQ(QuantMethodConfig::defaults(Method::Q4_K_M).id(), "q4_k_m");
  EXPECT_EQ(QuantMethodConfig::defaults(Method::Q3_K_M).bits(), 3);
  EXPECT_EQ(QuantMethodConfig::defaults(Method::Q3_K_M).group_size(), 0);
}

TEST(QuantMethodConfig, ValidateKeepsTheOldRulesAndTheAwqLayoutsRestriction) {
  EXPECT_NO_THROW(QuantMethodConfig::defaults(Method::Gptq).validate());
  EXPECT_THROW((QuantMethodConfig{Method::Rtn, RtnOptions{9, 128, false}}).validate(), Error);
  EXPECT_THROW((QuantMethodConfig{Method::Rtn, RtnOptions{4, 0, false}}).validate(), Error);
  GptqOptions g;
  g.damp_percent = 1.5;
  EXPECT_THROW((QuantMethodConfig{Method::Gptq, g}).validate(), Error);
  const QuantMethodConfig awq3{Method::Awq, AwqOptions{3, 128, false}};
  EXPECT_THROW(awq3.validate(), Error);
  EXPECT_NO_THROW(awq3.validate(/*for_export=*/false));
  EXPECT_EQ(awq3.problem()->key, "bits");
  const QuantMethodConfig awq_sym{Method::Awq, AwqOptions{4, 128, true}};
  EXPECT_EQ(awq_sym.problem()->key, "sym");
  EXPECT_THROW((QuantMethodConfig{Method::Q4_K_M, RtnOptions{}}).validate(), Error);
}

}  // namespace
}  // namespace qsweep

namespace qsweep {
namespace {

// An auto mix counts in the width class of its budget, like the hand mix of that size
// (the tables group variants by bits; 0 would put it beside FP16).
TEST(QuantMethodConfig, AutoMixBitsAreItsBudgetsWidthClass) {
  EXPECT_EQ(QuantMethodConfig::from_json({{"method", "auto_mix"}, {"budget", "q3_k_m"}}).bits(), 3);
  EXPECT_EQ(QuantMethodConfig::from_json({{"method", "auto_mix"}, {"budget", "q2_k"}}).bits(), 2);
  EXPECT_EQ(QuantMethodConfig::from_json({{"method", "auto_mix"}, {"budget_bpw", 3.9}}).bits(), 3);
  EXPECT_EQ(QuantMethodConfig::from_json({{"method", "auto_mix"}, {"budget_bpw", 5.5}}).bits(), 5);
}

// GPTQ's budget_bpw: absent from the JSON of a uniform GPTQ (its keys and cache keys stay as
// they were), read back when set, named in id and label, range-checked like auto_mix's.
TEST(QuantMethodConfig, GptqBudgetBpwRoundTripsAndIsValidated) {
  EXPECT_FALSE(QuantMethodConfig::defaults(Method::Gptq).to_json().contains("budget_bpw"));
  const QuantMethodConfig c =
      QuantMethodConfig::from_json({{"method", "gptq"}, {"budget_bpw", 3.5}, {"group_size", 64}});
  ASSERT_NE(c.gptq(), nullptr);
  EXPECT_EQ(c.gptq()->budget_bpw, 3.5);
  EXPECT_EQ(c.to_json()["budget_bpw"], 3.5);
  EXPECT_EQ(QuantMethodConfig::from_json(c.to_json()), c);
  EXPECT_EQ(c.id(), "gptq-bpw3.5-g64");
  EXPECT_EQ(c.label(), "GPTQ mixed 3.5 bpw g64");
  EXPECT_EQ(c.bits(), 3);
  EXPECT_THROW(QuantMethodConfig::from_json({{"method", "awq"}, {"budget_bpw", 3.5}}), Error);
  for (double bad : {1.5, -3.0, 17.0}) {
    GptqOptions o;
    o.budget_bpw = bad;
    const auto p = QuantMethodConfig{Method::Gptq, o}.problem();
    ASSERT_TRUE(p.has_value()) << bad;
    EXPECT_EQ(p->key, "budget_bpw");
  }
}

}  // namespace
}  // namespace qsweep
