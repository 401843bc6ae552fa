// config.json and safetensors headers: every number's kind and range is checked where it
// is read (one Error naming the file and the key), repeated or overlapping tensors refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "model/model_spec.h"
#include "model/safetensors.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
using nlohmann::json;

const char* kValid = R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 11,
  "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1,
  "num_attention_heads": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-6,
  "rope_theta": 10000.0, "max_position_embeddings": 16, "hidden_act": "silu"})";

std::string error_of(const std::string& text) {
  try {
    (void)parse_model_spec(text, "M/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

struct Edit {
  const char* key;
  const char* value;   // JSON text; "DELETE" removes the key
  const char* expect;  // a fragment of the one-line message (after the file name)
};

TEST(ConfigJson, EveryFieldIsCheckedForKindAndRange) {
  ASSERT_EQ(error_of(kValid), "");
  const Edit edits[] = {
      {"rms_norm_eps", "0", "'rms_norm_eps' = 0 must be a finite number in (0, 1)"},
      {"rms_norm_eps", "-1e-6", "'rms_norm_eps' = -1e-06 must be a finite number"},
      {"rms_norm_eps", "\"1e-6\"", "key 'rms_norm_eps' must be a number, got \"1e-6\""},
      {"rms_norm_eps", "1e300", "key 'rms_norm_eps' must be a finite number"},  // float overflow
      {"rope_theta", "0", "'rope_theta' = 0 must be a finite number in [1, 1e12]"},
      {"rope_theta", "-10000", "'rope_theta' = -10000 must be a finite number"},
      {"rope_theta", "1e308", "'rope_theta' = 1e+308 must be a finite number"},
      {"rope_theta", "true", "key 'rope_theta' must be a number, got true"},
      {"hidden_act", "5", "key 'hidden_act' must be a string, got 5"},
      {"hidden_act", "\"gelu\"", "'hidden_act' = 'gelu' is not supported"},
      {"vocab_size", "0", "key 'vocab_size' must be an integer in [1, 2147483647], got 0"},
      {"vocab_size", "11.5", "key 'vocab_size' must be an integer"},
      {"vocab_size", "DELETE", "key 'vocab_size' is missing"},
      {"hidden_size", "-8", "key 'hidden_size' must be an integer in [1,"},
      {"hidden_size", "9", "'hidden_size' = 9 is not divisible by num_attention_heads 2"},
      {"num_hidden_layers", "2147483647", "'num_hidden_layers' = 2147483647 must be in [1, 4096]"},
      {"num_attention_heads", "\"2\"", "key 'num_attention_heads' must be an integer"},
      {"num_key_value_heads", "3", "'num_key_value_heads' = 3 must be in [1, 2]"},
      {"num_key_value_heads", "0", "key 'num_key_value_heads' must be an integer in [1,"},
      {"intermediate_size", "null", "key 'intermediate_size' is missing"},
      {"max_position_embeddings", "0", "key 'max_position_embeddings' must be an integer in [1,"},
      {"head_dim", "3", "'head_dim' = 3 must be even"},
      {"tie_word_embeddings", "\"false\"", "key 'tie_word_embeddings' must be true or false"},
      {"attention_bias", "1", "key 'attention_bias' must be true or false, got 1"},
      {"mlp_bias", "\"no\"", "key 'mlp_bias' must be true or false"},
      {"torch_dtype", "16", "key 'torch_dtype' must be a string, got 16"},
      {"bos_token_id", "\"1\"", "key 'bos_token_id' must be an integer"},
      {"eos_token_id", "-2", "key 'eos_token_id' must be an integer in [0,"},
      {"rope_scaling", "[1]", "key 'rope_scaling' must be an object, got [1]"},
      {"rope_scaling", R"({"type": 3})", "key 'rope_scaling.type' must be a string, got 3"},
      {"architectures", "\"LlamaForCausalLM\"", "key 'architectures' must be a list"},
  };
  for (const auto& e : edits) {
    json j = json::parse(kValid);
    if (std::string(e.value) == "DELETE")
      j.erase(e.key);
    else
      j[e.key] = json::parse(e.value);
    SCOPED_TRACE(std::string(e.key) + " = " + e.value);
    const std::string msg = error_of(j.dump());
    EXPECT_EQ(msg.rfind("M/config.json: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(e.expect), std::string::npos) << "message: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos);
  }
  // Null means "absent" for optional keys (HF writes sliding_window: null).
  json j = json::parse(kValid);
  j["sliding_window"] = nullptr;
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(error_of(j.dump()), "");
}

// A safetensors file from a header (JSON text) and `data_bytes` zero bytes.
std::string safetensors_with(const std::string& tag, const std::string& header, size_t data_bytes) {
  const std::string f = test::make_temp_dir(tag) + "/model.safetensors";
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes += header + std::string(data_bytes, '\0');
  std::ofstream(f, std::ios::binary) << bytes;
  return f;
}

TEST(SafetensorsHeader, RepeatedNamesAndOverlappingBytesAreRefused) {
  struct Case {
    const char* header;
    const char* expect;
  };
  const Case cases[] = {
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
           "a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
       "key 'a' appears twice"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
           "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       "tensor 'b': data_offsets [4, 12] overlap tensor 'a'"},
      {R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},
           "b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       "overlap tensor 'a'"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
           "b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       "overlap tensor"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.header);
    const std::string f = safetensors_with("st", c.header, 16);
    try {
      SafetensorsFile s(f);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << e.what();
    }
  }
  // Adjacent tensors and an empty one sharing an offset are fine.
  const std::string ok = safetensors_with("st-ok",
                                          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
          "e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},
          "b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                          16);
  SafetensorsFile s(ok);
  EXPECT_EQ(s.tensors().size(), 3u);
}

}  // namespace
}  // namespace qsweep
