// GGUF for today's models: Qwen3 (q_norm/k_norm, general.architecture qwen3) and Llama-3.1
// (llama3 rope → rope_freqs, byte-level BPE vocabulary), both with tied embeddings and an
// explicit head_dim. The expectations come from llama.cpp's convert_hf_to_gguf.py and
// gguf-py/gguf/constants.py (keys, value types, token types), from the shared models' own
// files and from ../shared/tokenizers/*/reference_ids.jsonl (independent tokenizer ids).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "formats/gguf.h"
#include "model/rope.h"
#include "quantize/kquant_mix.h"
#include "quantizers/kquants/kquants.h"
#include "tests/support/small_model.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace gt = kquants::ggml_type;
using nlohmann::json;

std::string model_dir(const std::string& name) {
  return test::shared_dir() + "/models/" + name;
}

GgufTypePlan f32_plan() {
  GgufTypePlan p;
  p.weights = gt::F32;
  return p;
}

struct Exported {
  std::string dir;
  LoadedModel hf;
  std::string gguf;
};

/// Each shared model exported once, as F32.
const Exported& exported(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Exported>> cache;
  auto& e = cache[name];
  if (!e) {
    e = std::make_unique<Exported>();
    e->dir = model_dir(name);
    e->hf = load_model(e->dir);
    e->gguf = test::make_temp_dir("gguf-arch") + "/" + name + ".gguf";
    write_gguf(e->gguf, e->hf.spec, e->hf.weights, e->dir, f32_plan());
  }
  return *e;
}

void expect_same_weights(const ModelSpec& spec, const ModelWeights& a, const ModelWeights& b) {
  auto same = [](const std::string& what, const auto& x, const auto& y) {
    ASSERT_EQ(x.rows(), y.rows()) << what;
    ASSERT_EQ(x.cols(), y.cols()) << what;
    EXPECT_TRUE(x == y) << what;
  };
  same("embed", a.embed.to_matrix(), b.embed.to_matrix());
  same("lm_head", a.lm_head.to_matrix(), b.lm_head.to_matrix());
  same("final_norm", a.final_norm, b.final_norm);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const LayerWeights &x = a.layers[l], &y = b.layers[l];
    for (LinearRole r : kAllLinearRoles)
      same(hf_linear_name(int(l), r), x.linear(r).to_matrix(), y.linear(r).to_matrix());
    same(cat(l, ".attn_norm"), x.attn_norm, y.attn_norm);
    same(cat(l, ".mlp_norm"), x.mlp_norm, y.mlp_norm);
    same(cat(l, ".q_norm"), x.q_norm, y.q_norm);
    same(cat(l, ".k_norm"), x.k_norm, y.k_norm);
    if (spec.qk_norm) {
      EXPECT_EQ(y.q_norm.size(), spec.head_dim);
    }
  }
}

void expect_same_spec(const ModelSpec& a, const ModelSpec& b) {
  EXPECT_EQ(b.arch, a.arch);
  EXPECT_EQ(b.vocab_size, a.vocab_size);
  EXPECT_EQ(b.hidden_size, a.hidden_size);
  EXPECT_EQ(b.intermediate_size, a.intermediate_size);
  EXPECT_EQ(b.num_layers, a.num_layers);
  EXPECT_EQ(b.num_heads, a.num_heads);
  EXPECT_EQ(b.num_kv_heads, a.num_kv_heads);
  EXPECT_EQ(b.head_dim, a.head_dim);
  EXPECT_EQ(b.rms_norm_eps, a.rms_norm_eps);
  EXPECT_EQ(b.rope_theta, a.rope_theta);
  EXPECT_EQ(b.max_position_embeddings, a.max_position_embeddings);
  EXPECT_EQ(b.tie_word_embeddings, a.tie_word_embeddings);
  EXPECT_EQ(b.qk_norm, a.qk_norm);
  EXPECT_EQ(b.qkv_bias, a.qkv_bias);
  // llama3 scaling comes back as llama.cpp's per-pair factors: the same frequencies, bit for bit.
  EXPECT_EQ(b.rope_scaling.type == RopeScaling::Type::None,
            a.rope_scaling.type == RopeScaling::Type::None);
  EXPECT_EQ(rope_freq_factors(b), rope_freq_factors(a));
  EXPECT_EQ(rope_inv_freq(b), rope_inv_freq(a));
}

class SharedModel : public ::testing::TestWithParam<std::string> {};

TEST_P(SharedModel, SpecTensorsAndTokenizerRoundTrip) {
  const Exported& e = exported(GetParam());
  const LoadedModel back = load_model(e.gguf);
  expect_same_spec(e.hf.spec, back.spec);
  expect_same_weights(e.hf.spec, e.hf.weights, back.weights);

  // The GGUF vocabulary tokenizes every reference record as the tokenizer.json tokenizer does
  // and as the independent reference says.
  const auto from_json = load_tokenizer(e.dir);
  const auto from_gguf = load_gguf_tokenizer(e.gguf);
  const bool qwen3 = GetParam() == "qwen3-tiny-random";
  // The GGUF's bos is what convert writes: Qwen3's tokenizer_config.json has none, config.json
  // says 151643. add_bos: Qwen3 writes false; Llama-3's files say nothing, so llama.cpp's
  // llama-bpe default (true) applies.
  EXPECT_EQ(from_gguf->bos_id(), e.hf.spec.bos_token_id);
  EXPECT_EQ(from_json->bos_id(), qwen3 ? -1 : e.hf.spec.bos_token_id);
  EXPECT_EQ(from_gguf->eos_id(), from_json->eos_id());
  EXPECT_FALSE(from_json->add_bos_token());
  EXPECT_EQ(from_gguf->add_bos_token(), !qwen3);
  const std::string tok = qwen3 ? "qwen3" : "llama3";
  std::ifstream in(test::shared_dir() + "/tokenizers/" + tok + "/reference_ids.jsonl");
  std::string line;
  int n = 0, wrong = 0;
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    const std::string text = j["text"];
    const std::vector<int> ids = from_gguf->encode(text, false);
    if ((ids != j["ids"].get<std::vector<int>>() || ids != from_json->encode(text, false)) &&
        ++wrong <= 3)
      ADD_FAILURE() << "record " << n << ": " << text;
    ++n;
  }
  EXPECT_EQ(n, 1048);
  EXPECT_EQ(wrong, 0);
}

INSTANTIATE_TEST_SUITE_P(Gguf, SharedModel,
                         ::testing::Values("qwen3-tiny-random", "llama31-tiny-random"));

// The keys and value types convert_hf_to_gguf.py writes (TextModel.set_gguf_parameters,
// LlamaModel.set_gguf_parameters, _set_vocab_gpt2 + gguf-py/gguf/vocab.py SpecialVocab) under
// gguf-py/gguf/constants.py's names, and the tensor names llama.cpp's loaders require
// (src/models/qwen3.cpp, llama.cpp: attn_q_norm/attn_k_norm [head_dim], output optional).
TEST(GgufArch, Qwen3KeysTokensAndTensorsAreWhatLlamaCppExpects) {
  const Exported& e = exported("qwen3-tiny-random");
  const GgufFile f(e.gguf);
  auto type_of = [&](const std::string& k) {
    const GgufValue* v = f.find(k);
    return v ? int(v->type) : -1;
  };
  EXPECT_EQ(f.get_string("general.architecture"), "qwen3");
  for (const char* k :
       {"qwen3.context_length", "qwen3.embedding_length", "qwen3.block_count",
        "qwen3.feed_forward_length", "qwen3.attention.head_count", "qwen3.attention.head_count_kv",
        "qwen3.attention.key_length", "qwen3.attention.value_length", "general.file_type"})
    EXPECT_EQ(type_of(k), int(GgufType::UINT32)) << k;
  EXPECT_EQ(type_of("qwen3.rope.freq_base"), int(GgufType::FLOAT32));
  EXPECT_EQ(type_of("qwen3.attention.layer_norm_rms_epsilon"), int(GgufType::FLOAT32));
  EXPECT_EQ(f.get_int("qwen3.attention.key_length"), 32);
  EXPECT_EQ(f.get_int("qwen3.context_length"), 40960);
  EXPECT_EQ(f.get_float("qwen3.rope.freq_base"), 1e6);
  EXPECT_EQ(f.find("qwen3.vocab_size"), nullptr);  // LlamaModel only
  EXPECT_EQ(f.find("qwen3.rope.dimension_count"), nullptr);
  EXPECT_EQ(f.get_int("general.file_type"), 0);  // ALL_F32

  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "qwen2");
  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  const GgufValue* types = f.find("tokenizer.ggml.token_type");
  const GgufValue* merges = f.find("tokenizer.ggml.merges");
  ASSERT_TRUE(tokens && types && merges);
  EXPECT_EQ(tokens->array_type, GgufType::STRING);
  EXPECT_EQ(types->array_type, GgufType::INT32);
  EXPECT_EQ(merges->array_type, GgufType::STRING);
  ASSERT_EQ(tokens->strings.size(), 151669u);
  EXPECT_EQ(merges->strings.size(), 151387u);
  EXPECT_EQ(merges->strings[0], "\xc4\xa0 \xc4\xa0");  // pair form ["Ġ", "Ġ"] → "Ġ Ġ"
  EXPECT_EQ(merges->strings[1], "\xc4\xa0\xc4\xa0 \xc4\xa0\xc4\xa0");
  EXPECT_EQ(f.find("tokenizer.ggml.scores"), nullptr);  // _set_vocab_gpt2 writes none
  // TokenType: NORMAL 1, CONTROL 3 (special, or not special but "<|...|>"), USER_DEFINED 4.
  EXPECT_EQ(tokens->strings[0], "!");
  EXPECT_EQ(types->ints[0], 1);
  EXPECT_EQ(tokens->strings[151643], "<|endoftext|>");
  EXPECT_EQ(types->ints[151643], 3);
  EXPECT_EQ(tokens->strings[151659], "<|fim_prefix|>");  // special: false in tokenizer.json
  EXPECT_EQ(types->ints[151659], 3);
  EXPECT_EQ(tokens->strings[151667], "<think>");  // special: false
  EXPECT_EQ(types->ints[151667], 4);
  // SpecialVocab: eos/pad from tokenizer_config.json, bos from config.json; add_bos_token false.
  EXPECT_EQ(type_of("tokenizer.ggml.bos_token_id"), int(GgufType::UINT32));
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), 151643);
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 151645);
  EXPECT_EQ(f.get_int("tokenizer.ggml.padding_token_id"), 151643);
  EXPECT_EQ(f.get_bool("tokenizer.ggml.add_bos_token"), false);
  EXPECT_EQ(f.find("tokenizer.ggml.add_eos_token"), nullptr);
  EXPECT_TRUE(f.get_string("tokenizer.chat_template").has_value());

  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);  // tied
  EXPECT_EQ(f.find_tensor("rope_freqs.weight"), nullptr);
  for (int l = 0; l < 2; ++l)
    for (const char* n : {"attn_q_norm", "attn_k_norm"}) {
      const GgufTensorInfo* t = f.find_tensor(cat("blk.", l, ".", n, ".weight"));
      ASSERT_TRUE(t) << n;
      EXPECT_EQ(t->ggml_type, gt::F32);
      EXPECT_EQ(t->ne, std::vector<int64_t>{32});
    }
  // NEOX rope: attn_q rows stay in HF order (no permutation).
  const std::vector<float> q = f.to_float(*f.find_tensor("blk.0.attn_q.weight"));
  const MatrixRM wq = e.hf.weights.layers[0].wq.to_matrix();
  for (int64_t r : {1, 16, 33})
    for (int64_t c = 0; c < wq.cols(); ++c) ASSERT_EQ(q[size_t(r * wq.cols() + c)], wq(r, c));
}

TEST(GgufArch, Llama31KeysRopeFreqsAndPermutation) {
  const Exported& e = exported("llama31-tiny-random");
  const GgufFile f(e.gguf);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.vocab_size"), 128256);
  EXPECT_EQ(f.get_int("llama.rope.dimension_count"), 32);
  EXPECT_EQ(f.get_int("llama.attention.key_length"), 32);
  EXPECT_EQ(f.get_int("llama.attention.value_length"), 32);
  EXPECT_EQ(f.get_int("llama.context_length"), 131072);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "llama-bpe");
  EXPECT_EQ(f.find("tokenizer.ggml.merges")->strings.size(), 280147u);
  EXPECT_EQ(f.find("tokenizer.ggml.merges")->strings[1], "\xc4\xa0 \xc4\xa0\xc4\xa0\xc4\xa0");
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), 128000);
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 128001);
  // No TemplateProcessing and no add_bos_token in tokenizer_config.json: no key (llama.cpp
  // then adds BOS by its llama-bpe default).
  EXPECT_EQ(f.find("tokenizer.ggml.add_bos_token"), nullptr);
  EXPECT_EQ(f.find("tokenizer.ggml.padding_token_id"), nullptr);
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->ints[128000], 3);
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);
  EXPECT_EQ(f.find_tensor("blk.0.attn_q_norm.weight"), nullptr);
  // rope_freqs: F32 [head_dim/2]; values of the llama3 formula (factor 8, low 1, high 4,
  // original context 256, theta 5e5), computed in Python double precision.
  const GgufTensorInfo* rf = f.find_tensor("rope_freqs.weight");
  ASSERT_TRUE(rf);
  EXPECT_EQ(rf->ggml_type, gt::F32);
  EXPECT_EQ(rf->ne, std::vector<int64_t>{16});
  const std::vector<float> got = f.to_float(*rf);
  const double want[16] = {1, 1, 1, 1.1790288392276598, 3.5685329633199863, 8, 8, 8, 8, 8, 8, 8, 8,
                           8, 8, 8};
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(got[size_t(i)], want[i], 1e-6) << i;
  // NORM rope: GGUF row 2j+i of a head holds HF row i·16+j (head_dim 32).
  const std::vector<float> k = f.to_float(*f.find_tensor("blk.1.attn_k.weight"));
  const MatrixRM wk = e.hf.weights.layers[1].wk.to_matrix();
  for (auto [g, h] : {std::pair{1, 16}, {2, 1}, {33, 48}})
    for (int64_t c = 0; c < wk.cols(); ++c) ASSERT_EQ(k[size_t(g * wk.cols() + c)], wk(h, c));
}

// Random small models with what the shared ones do not vary: a head_dim that is not
// hidden / heads, llama3 rope on a Llama, untied output.
TEST(GgufArch, RandomQwen3AndLlama3RopeModelsRoundTrip) {
  const std::string tmp = test::make_temp_dir("gguf-arch-random");
  for (Architecture arch : {Architecture::Qwen3, Architecture::Llama}) {
    ModelSpec s = test::small_model_spec(Architecture::Llama);
    s.arch = arch;
    s.head_dim = 12;  // 6 heads × 12 ≠ hidden 48
    s.tie_word_embeddings = arch == Architecture::Qwen3;
    if (arch == Architecture::Qwen3) {
      s.arch_name = "Qwen3ForCausalLM";
      s.qk_norm = true;
    } else {
      s.rope_scaling.type = RopeScaling::Type::Llama3;
      s.rope_scaling.factor = 4;
      s.rope_scaling.original_max_position_embeddings = 16;
    }
    const ModelWeights w = random_weights(s, 7 + uint64_t(arch));
    const std::string path = cat(tmp, "/m", int(arch), ".gguf");
    write_gguf(path, s, w, "", f32_plan());
    const LoadedModel back = load_model(path);
    expect_same_spec(s, back.spec);
    expect_same_weights(s, w, back.weights);
    EXPECT_EQ(GgufFile(path).find_tensor("output.weight") != nullptr, !s.tie_word_embeddings);
  }
}

void patch(const std::string& path, const std::string& from, const std::string& to) {
  ASSERT_EQ(from.size(), to.size());
  std::string bytes = read_text_file(path);
  const size_t at = bytes.find(from);
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, from.size(), to);
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(GgufArch, UnknownPreTokenizersAndArchitecturesAreRefusedInOneLine) {
  const std::string tmp = test::make_temp_dir("gguf-arch-bad");
  // Reader: a pre name qsweep does not know.
  const std::string copy = tmp + "/q.gguf";
  std::filesystem::copy_file(exported("qwen3-tiny-random").gguf, copy);
  patch(copy, std::string("\x05\0\0\0\0\0\0\0qwen2", 13),
        std::string("\x05\0\0\0\0\0\0\0qwen9", 13));
  try {
    load_gguf_tokenizer(copy);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.pre' = 'qwen9'"), std::string::npos)
        << e.what();
  }
  // Writer: a tokenizer.json whose pre-tokenizer llama.cpp does not name.
  const std::string dir = tmp + "/tok";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer.json")
      << R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
            "pre_tokenizer": {"type": "ByteLevel"}})";
  ModelSpec s = test::small_model_spec(Architecture::Llama);
  const ModelWeights w = random_weights(s, 3);
  try {
    write_gguf(tmp + "/x.gguf", s, w, dir, f32_plan());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not one llama.cpp names"), std::string::npos)
        << e.what();
  }
  // Writer: Qwen2 has no GGUF export.
  s = test::small_model_spec(Architecture::Qwen2);
  EXPECT_THROW(write_gguf(tmp + "/y.gguf", s, random_weights(s, 4), "", f32_plan()), Error);
  // Reader: a qwen3 file without its q_norm tensors is named.
  s = test::small_model_spec(Architecture::Llama);
  s.arch = Architecture::Qwen3;
  s.qk_norm = true;
  write_gguf(tmp + "/z.gguf", s, random_weights(s, 5), "", f32_plan());
  patch(tmp + "/z.gguf", "blk.0.attn_q_norm", "blk.0.attn_x_norm");
  try {
    load_model(tmp + "/z.gguf");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("attn_q_norm.weight' is missing"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace qsweep
