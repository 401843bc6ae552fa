// Quantized checkpoints with bad metadata: a wrongly typed or out-of-range
// quantization_config field, or a GGUF size / float out of range, is one Error naming the
// file and the key — never a json type_error, a bad_alloc or a NaN later.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "formats/formats.h"
#include "formats/gguf.h"
#include "model/weights.h"
#include "quantize/kquant_mix.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
using nlohmann::json;

ModelSpec tiny_spec() {
  ModelSpec s;
  s.arch_name = "LlamaForCausalLM";
  s.vocab_size = 16;
  s.hidden_size = 8;
  s.intermediate_size = 8;
  s.num_layers = 1;
  s.num_heads = 2;
  s.num_kv_heads = 2;
  s.head_dim = 4;
  s.max_position_embeddings = 32;
  return s;
}

std::string load_error(const std::string& path) {
  try {
    (void)load_model(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

struct QCase {
  const char* qc;      // quantization_config (JSON text)
  const char* expect;  // fragment after "config.json: "
};

TEST(QuantizedConfig, WrongKindsAndRangesNameTheKey) {
  const std::string dir = test::make_temp_dir("qcfg");
  save_hf_checkpoint(dir, tiny_spec(), random_weights(tiny_spec(), 1), "F16");
  const std::string cfg_file = dir + "/config.json";
  const json base = json::parse(read_text_file(cfg_file));
  const QCase cases[] = {
      {"null", "key 'quantization_config' is missing"},
      {"[]", "key 'quantization_config' must be an object, got []"},
      {R"({"quant_method": 5})", "key 'quantization_config.quant_method' must be a string, got 5"},
      {R"({"bits": 4})", "key 'quantization_config.quant_method' is missing"},
      {R"({"quant_method": "gptq", "bits": 4, "group_size": "128"})",
       "key 'quantization_config.group_size' must be an integer, got \"128\""},
      {R"({"quant_method": "gptq", "bits": 4, "group_size": 128.5})",
       "key 'quantization_config.group_size' must be an integer, got 128.5"},
      {R"({"quant_method": "gptq", "bits": 4, "group_size": 0})",
       "key 'quantization_config.group_size' must be -1 (per-channel) or positive, got 0"},
      {R"({"quant_method": "gptq", "bits": 4, "group_size": -7})",
       "key 'quantization_config.group_size' must be an integer in [-1,"},
      {R"({"quant_method": "gptq", "bits": 4, "sym": "false"})",
       "key 'quantization_config.sym' must be true or false, got \"false\""},
      {R"({"quant_method": "gptq", "bits": 4, "desc_act": 0})",
       "key 'quantization_config.desc_act' must be true or false, got 0"},
      {R"({"quant_method": "gptq", "bits": 4, "checkpoint_format": 2})",
       "key 'quantization_config.checkpoint_format' must be a string, got 2"},
      {R"({"quant_method": "gptq", "bits": "4"})",
       "key 'quantization_config.bits' must be an integer, got \"4\""},
      {R"({"quant_method": "gptq", "bits": 5})",
       "key 'quantization_config.bits' must be one of 2, 3, 4, 8, got 5"},
      {R"({"quant_method": "gptq"})", "key 'quantization_config.bits' is missing"},
      {R"({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": "true"})",
       "key 'quantization_config.zero_point' must be true or false, got \"true\""},
      {R"({"quant_method": "awq", "bits": 4, "group_size": 128, "version": 1})",
       "key 'quantization_config.version' must be a string, got 1"},
      {R"({"quant_method": "awq", "w_bit": 4.0, "q_group_size": 128})",
       "key 'quantization_config.w_bit' must be an integer, got 4.0"},
      {R"({"quant_method": "awq", "bits": 4, "q_group_size": "128"})",
       "key 'quantization_config.q_group_size' must be an integer"},
      {R"({"quant_method": "awq", "bits": 4})",
       "key 'quantization_config.q_group_size' is missing"},
      {R"({"quant_method": "awq", "bits": 3, "group_size": 128})",
       "key 'quantization_config.bits' must be 4 (AWQ gemm), got 3"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.qc);
    json j = base;
    j["quantization_config"] = json::parse(c.qc);
    std::ofstream(cfg_file, std::ios::trunc) << j.dump();
    const std::string msg = load_error(dir);
    EXPECT_EQ(msg.rfind(cfg_file + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "message: " << msg;
  }
}

std::vector<uint8_t> bytes_of(const std::string& path) {
  const std::string s = read_text_file(path);
  return {s.begin(), s.end()};
}

// Overwrites the value of metadata key `key` (a scalar of sizeof(V) bytes) in a GGUF image.
template <typename V>
std::vector<uint8_t> with_value(std::vector<uint8_t> b, const std::string& key, V v) {
  auto it = std::search(b.begin(), b.end(), key.begin(), key.end());
  EXPECT_NE(it, b.end()) << key;
  const size_t value_at = size_t(it - b.begin()) + key.size() + 4;  // after the type (u32)
  std::memcpy(b.data() + value_at, &v, sizeof v);
  return b;
}

TEST(GgufMetadata, SizesAndFloatsOutOfRangeAreErrorsBeforeAllocation) {
  const std::string dir = test::make_temp_dir("ggufmeta");
  const std::string path = dir + "/m.gguf";
  const ModelSpec s = tiny_spec();
  write_gguf(path, s, random_weights(s, 2), "");
  const std::vector<uint8_t> good = bytes_of(path);
  ASSERT_EQ(load_error(path), "");
  struct Case {
    std::vector<uint8_t> bytes;
    const char* expect;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const Case cases[] = {
      {with_value(good, "llama.block_count", uint32_t(INT32_MAX)),
       "key 'llama.block_count' = 2147483647 needs at least"},
      {with_value(good, "llama.block_count", uint32_t(2)), "key 'llama.block_count' = 2 needs"},
      {with_value(good, "llama.embedding_length", uint32_t(INT32_MAX)),
       "key 'llama.rope.dimension_count'"},
      {with_value(good, "llama.feed_forward_length", uint32_t(1) << 30),
       "key 'intermediate_size' = 1073741824 must be in [1, 4194304]"},
      {with_value(good, "llama.context_length", uint32_t(0)), "key 'max_position_embeddings' = 0"},
      {with_value(good, "llama.attention.head_count", uint32_t(3)), "head_count 3"},
      {with_value(good, "llama.attention.layer_norm_rms_epsilon", 0.0f),
       "key 'llama.attention.layer_norm_rms_epsilon' = 0 must be a finite number in (0, 1)"},
      {with_value(good, "llama.attention.layer_norm_rms_epsilon", -1e-5f),
       "'llama.attention.layer_norm_rms_epsilon' = -1e-05"},
      {with_value(good, "llama.attention.layer_norm_rms_epsilon", nan),
       "'llama.attention.layer_norm_rms_epsilon' = nan"},
      {with_value(good, "llama.rope.freq_base", 0.0f),
       "key 'llama.rope.freq_base' = 0 must be a finite number in [1, 1e12]"},
      {with_value(good, "llama.rope.freq_base", inf), "key 'llama.rope.freq_base' = inf"},
      {with_value(good, "llama.rope.freq_base", -1e4f), "key 'llama.rope.freq_base' = -10000"},
  };
  int k = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.expect);
    const std::string p = cat(dir, "/bad", k++, ".gguf");
    std::ofstream(p, std::ios::binary) << std::string(c.bytes.begin(), c.bytes.end());
    const std::string msg = load_error(p);
    EXPECT_EQ(msg.rfind(p + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "message: " << msg;
  }
}

}  // namespace
}  // namespace qsweep
