// Bad checkpoints give one clear Error that names the file and what is wrong —
// never a crash (this suite also runs under ASan/UBSan in CI).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "model/model_spec.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "model/weights.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;

ModelSpec tiny_spec() {
  ModelSpec s;
  s.arch_name = "LlamaForCausalLM";
  s.vocab_size = 11;
  s.hidden_size = 8;
  s.intermediate_size = 12;
  s.num_layers = 1;
  s.num_heads = 2;
  s.num_kv_heads = 1;
  s.head_dim = 4;
  s.max_position_embeddings = 16;
  return s;
}

std::string write_tiny(const std::string& tag) {
  const std::string dir = test::make_temp_dir(tag);
  save_hf_checkpoint(dir, tiny_spec(), random_weights(tiny_spec(), 1), "F16");
  return dir;
}

std::string bytes_of(const std::string& path) {
  return read_text_file(path);
}
void put(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Runs `f`, expects an Error whose message contains every fragment.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> fragments) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& frag : fragments)
      EXPECT_NE(msg.find(frag), std::string::npos) << "message: " << msg << "\nmissing: " << frag;
  }
}

void load(const std::string& dir) {
  const ModelSpec s = load_model_spec(dir);
  (void)load_weights(dir, s);
}

TEST(BadInput, ValidTinyCheckpointLoads) {
  EXPECT_NO_THROW(load(write_tiny("ok")));
}

TEST(BadInput, TruncatedSafetensors) {
  const std::string dir = write_tiny("trunc");
  const std::string f = dir + "/model.safetensors";
  const std::string b = bytes_of(f);
  put(f, b.substr(0, b.size() - 100));
  expect_error([&] { load(dir); }, {f, "beyond", "truncated"});
  put(f, b.substr(0, 5));
  expect_error([&] { load(dir); }, {f, "truncated"});
  put(f, b.substr(0, 40));  // header length survives, header itself does not
  expect_error([&] { load(dir); }, {f, "exceeds the file size"});
}

TEST(BadInput, GarbageHeaderJson) {
  const std::string dir = write_tiny("garbage");
  const std::string f = dir + "/model.safetensors";
  std::string b = bytes_of(f);
  std::memcpy(&b[8], "{nonsense", 9);
  put(f, b);
  expect_error([&] { load(dir); }, {f, "not valid JSON"});
}

std::string with_header(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(&out[0], &n, 8);
  return out + header + std::string(data_bytes, '\0');
}

TEST(BadInput, OffsetsBeyondFileAndSizeMismatch) {
  const std::string dir = test::make_temp_dir("offsets");
  const std::string f = dir + "/x.safetensors";
  put(f, with_header(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,1000000]}})", 16));
  expect_error([&] { SafetensorsFile s(f); }, {f, "'w'", "beyond"});
  put(f, with_header(R"({"w":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}})", 16));
  expect_error([&] { SafetensorsFile s(f); }, {f, "'w'", "needs 20 bytes"});
  put(f,
      with_header(R"({"w":{"dtype":"F32","shape":[4611686018427387904, 4],"data_offsets":[0,16]}})",
                  16));
  expect_error([&] { SafetensorsFile s(f); }, {f, "overflow"});
  put(f, with_header(R"({"w":{"dtype":"Q4","shape":[4],"data_offsets":[0,16]}})", 16));
  expect_error([&] { SafetensorsFile s(f); }, {f, "unknown dtype"});
  put(f, with_header(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[8,4]}})", 16));
  expect_error([&] { SafetensorsFile s(f); }, {f, "beyond"});
}

// Rewrites one tensor of the tiny checkpoint (name, dtype, shape, raw bytes).
void replace_tensor(const std::string& dir, const std::string& name, DType dt,
                    std::vector<int64_t> shape, const std::vector<uint8_t>& bytes,
                    bool drop = false) {
  const std::string f = dir + "/model.safetensors";
  std::vector<std::vector<uint8_t>> keep;
  std::vector<TensorToWrite> out;
  {
    SafetensorsFile in(f);
    for (const auto& t : in.tensors()) {
      if (t.name == name) {
        if (drop) continue;
        keep.push_back(bytes);
        out.push_back({name, dt, shape, keep.back().data()});
      } else {
        keep.emplace_back(t.data, t.data + t.nbytes);
        out.push_back({t.name, t.dtype, t.shape, keep.back().data()});
      }
    }
  }
  // `keep` may have reallocated: rebuild pointers.
  for (size_t i = 0; i < out.size(); ++i) out[i].data = keep[i].data();
  write_safetensors(f, out);
}

TEST(BadInput, DtypeContradictsConfig) {
  const std::string dir = write_tiny("dtype");
  replace_tensor(dir, "model.norm.weight", DType::I32, {8}, std::vector<uint8_t>(32, 0));
  expect_error([&] { load(dir); }, {"model.safetensors", "'model.norm.weight'", "dtype I32"});
}

TEST(BadInput, ShapeContradictsConfig) {
  const std::string dir = write_tiny("shape");
  replace_tensor(dir, "model.layers.0.self_attn.k_proj.weight", DType::F32, {8, 8},
                 std::vector<uint8_t>(256, 0));
  expect_error([&] { load(dir); },
               {"model.safetensors", "k_proj", "[8, 8]", "config.json implies [4, 8]"});
}

TEST(BadInput, MissingTensor) {
  const std::string dir = write_tiny("missing");
  replace_tensor(dir, "model.layers.0.mlp.up_proj.weight", DType::F32, {}, {}, /*drop=*/true);
  expect_error([&] { load(dir); }, {dir, "'model.layers.0.mlp.up_proj.weight' is missing"});
}

TEST(BadInput, NanInWeights) {
  const std::string dir = write_tiny("nan");
  std::vector<float> v(8, 1.0f);
  v[3] = std::nanf("");
  std::vector<uint8_t> b(32);
  std::memcpy(b.data(), v.data(), 32);
  replace_tensor(dir, "model.norm.weight", DType::F32, {8}, b);
  expect_error([&] { load(dir); },
               {"model.safetensors", "'model.norm.weight'", "non-finite", "index 3"});
}

TEST(BadInput, UnknownArchitectureAndBadConfig) {
  expect_error([] { parse_model_spec(R"({"architectures":["GPT2LMHeadModel"]})", "c.json"); },
               {"c.json", "unsupported architecture 'GPT2LMHeadModel'"});
  expect_error([] { parse_model_spec("{oops", "c.json"); }, {"c.json", "not valid JSON"});
  expect_error(
      [] {
        parse_model_spec(R"({"architectures":["LlamaForCausalLM"],"vocab_size":"many"})", "c.json");
      },
      {"c.json", "key 'vocab_size' must be an integer"});
  expect_error([] { load_model_spec("/nonexistent/model"); }, {"config.json", "not found"});
  expect_error([] { SafetensorsCheckpoint c(test::make_temp_dir("empty")); },
               {"no model.safetensors"});
}

TEST(BadInput, ShardIndexNamingMissingTensor) {
  const std::string dir = write_tiny("shard");
  put(dir + "/model.safetensors.index.json",
      R"({"weight_map":{"model.norm.weight":"model.safetensors","ghost":"model.safetensors"}})");
  expect_error([&] { SafetensorsCheckpoint c(dir); }, {"model.safetensors.index.json", "'ghost'"});
}

}  // namespace
}  // namespace qsweep
