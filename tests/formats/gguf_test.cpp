// GGUF v3 writer and reader: tinycode round trips (F16 exact, block types equal to
// dequantize(quantize(W))), the q/k row permutation, hand-corrupted files, golden header bytes.
#include "formats/gguf.h"
#include "quantize/kquant_mix.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "backends/backend.h"
#include "common/errors.h"
#include "common/half.h"
#include "common/mapped_file.h"
#include "model/transformer.h"
#include "quantizers/kquants/kquants.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;
namespace gt = kquants::ggml_type;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
}

struct Tiny {
  std::string dir = test::tinycode_dir();
  LoadedModel hf = load_model(dir);
  std::string tmp = test::make_temp_dir("gguf");
  std::string f16 = tmp + "/tinycode-f16.gguf";
  Tiny() { write_gguf(f16, hf.spec, hf.weights, dir); }
};
const Tiny& tiny() {
  static const Tiny t;
  return t;
}

template <typename F>
void for_each_tensor(const ModelWeights& a, const ModelWeights& b, F&& f) {
  f("embed", a.embed.to_matrix(), b.embed.to_matrix());
  f("lm_head", a.lm_head.to_matrix(), b.lm_head.to_matrix());
  f("final_norm", MatrixRM(a.final_norm), MatrixRM(b.final_norm));
  for (size_t l = 0; l < a.layers.size(); ++l) {
    for (LinearRole r : kAllLinearRoles)
      f(hf_linear_name(int(l), r), a.layers[l].linear(r).to_matrix(),
        b.layers[l].linear(r).to_matrix());
    f(cat(l, ".attn_norm"), MatrixRM(a.layers[l].attn_norm), MatrixRM(b.layers[l].attn_norm));
    f(cat(l, ".mlp_norm"), MatrixRM(a.layers[l].mlp_norm), MatrixRM(b.layers[l].mlp_norm));
  }
}

MatrixRM fp16_rounded(const MatrixRM& m) {
  return m.unaryExpr([](float x) { return half_to_float(float_to_half(x)); });
}

// (a) F16: the weights come back as the fp16-rounded originals (tinycode is fp16 already, so
// exactly the originals) and the model computes exactly the same logits.
TEST(Gguf, F16RoundTripIsExactAndGivesTheSameLogits) {
  const LoadedModel back = load_model(tiny().f16);  // load_model dispatches on a file
  EXPECT_EQ(back.format, "gguf");
  EXPECT_EQ(back.description, "gguf MOSTLY_F16: 44 x F16, 13 x F32");
  EXPECT_TRUE(back.quantized.empty());
  const ModelSpec& a = tiny().hf.spec;
  const ModelSpec& b = back.spec;
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
  EXPECT_EQ(b.bos_token_id, a.bos_token_id);
  EXPECT_EQ(b.eos_token_id, a.eos_token_id);
  for_each_tensor(tiny().hf.weights, back.weights,
                  [](const std::string& n, const MatrixRM& x, const MatrixRM& y) {
                    ASSERT_EQ(x.rows(), y.rows()) << n;
                    ASSERT_EQ(x.cols(), y.cols()) << n;
                    EXPECT_TRUE(fp16_rounded(x) == y) << n;
                    EXPECT_TRUE(x == y) << n << " (tinycode is stored in fp16)";
                  });
  const Transformer m0(tiny().hf.spec, tiny().hf.weights);
  const Transformer m1(back.spec, back.weights);
  const std::vector<int> tokens = {1, 17, 300, 4000, 25, 99, 3, 1024, 7, 7, 7, 2048, 12};
  const MatrixRM l0 = m0.forward(tokens), l1 = m1.forward(tokens);
  EXPECT_TRUE(l0 == l1) << (l0 - l1).cwiseAbs().maxCoeff();
}

TEST(Gguf, FileLayoutAndMetadataMatchConvertHfToGguf) {
  const GgufFile f(tiny().f16);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_string("general.name"), "tinycode");
  EXPECT_EQ(f.get_int("llama.context_length"), 256);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 256);
  EXPECT_EQ(f.get_int("llama.block_count"), 6);
  EXPECT_EQ(f.get_int("llama.feed_forward_length"), 768);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(f.get_int("llama.rope.dimension_count"), 32);
  EXPECT_EQ(f.get_float("llama.rope.freq_base"), 10000.0);
  EXPECT_EQ(f.get_float("llama.attention.layer_norm_rms_epsilon"), double(1e-5f));
  EXPECT_EQ(f.get_int("general.file_type"), 1);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_EQ(f.get_int("tokenizer.ggml.unknown_token_id"), 0);
  EXPECT_EQ(f.get_bool("tokenizer.ggml.add_bos_token"), true);
  const GgufValue* toks = f.find("tokenizer.ggml.tokens");
  const GgufValue* types = f.find("tokenizer.ggml.token_type");
  ASSERT_TRUE(toks && types);
  ASSERT_EQ(toks->strings.size(), 4096u);
  EXPECT_EQ(toks->strings[0], "<unk>");
  EXPECT_EQ(types->ints[0], 2);  // UNKNOWN
  EXPECT_EQ(toks->strings[1], "<s>");
  EXPECT_EQ(types->ints[1], 3);  // CONTROL
  const auto tok = load_tokenizer(tiny().dir);
  for (int id = 0; id < 4096; id += 97) EXPECT_EQ(toks->strings[size_t(id)], tok->piece(id));
  // 2 + 9 per layer + output_norm + output; ne in ggml order; tensors back to back.
  ASSERT_EQ(f.tensors().size(), 57u);
  const GgufTensorInfo* q = f.find_tensor("blk.0.attn_k.weight");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->ne, (std::vector<int64_t>{256, 128}));
  EXPECT_EQ(q->ggml_type, gt::F16);
  EXPECT_EQ(f.tensors()[0].name, "token_embd.weight");
  EXPECT_EQ(f.tensors()[0].offset, 0u);
  EXPECT_EQ(f.tensors()[1].offset, 4096u * 256 * 2);
  EXPECT_EQ(f.find_tensor("blk.5.attn_norm.weight")->ggml_type, gt::F32);
  EXPECT_TRUE(f.find_tensor("output.weight"));
}

// The GGUF vocabulary rebuilt as a sentencepiece model tokenizes like tokenizer.model.
TEST(Gguf, TokenizerFromGgufMatchesTheOriginal) {
  const auto a = load_tokenizer(tiny().dir);
  const auto b = load_gguf_tokenizer(tiny().f16);
  EXPECT_EQ(b->vocab_size(), a->vocab_size());
  EXPECT_EQ(b->bos_id(), a->bos_id());
  EXPECT_EQ(b->eos_id(), a->eos_id());
  EXPECT_EQ(b->add_bos_token(), a->add_bos_token());
  std::string text = read_text_file(test::data_dir() + "/code/heldout.txt").substr(0, 200000);
  text += "\n  two  spaces, tabs\t\tand ünïcödé — 中文 🙂 \x01 end ";
  EXPECT_EQ(b->encode(text, true), a->encode(text, true));
  EXPECT_EQ(b->encode(" leading space", false), a->encode(" leading space", false));
  const std::vector<int> ids = a->encode("def f(x):\n    return x + 1\n", false);
  EXPECT_EQ(b->decode(ids), a->decode(ids));
}

// (b) Block types: what is read back is dequantize(quantize(W)) of the same type, exactly.
// Quantization is row by row, so permuting q/k rows commutes with it.
TEST(Gguf, BlockTypesReadBackAsDequantizeOfQuantize) {
  for (int32_t type : {gt::Q8_0, gt::Q4_K, gt::Q6_K}) {
    const auto q = *kquants::type_from_ggml(type);
    GgufTypePlan plan;
    plan.weights = type;
    const std::string path = cat(tiny().tmp, "/tiny-", kquants::traits(q).name, ".gguf");
    write_gguf(path, tiny().hf.spec, tiny().hf.weights, tiny().dir, plan);
    const LoadedModel back = load_model(path);
    EXPECT_EQ(back.description.find(cat("44 x ", kquants::traits(q).name)),
              back.description.find(":") + 2)
        << back.description;
    for_each_tensor(
        tiny().hf.weights, back.weights,
        [&](const std::string& n, const MatrixRM& x, const MatrixRM& y) {
          if (x.cols() == 1) {  // norms stay F32
            EXPECT_TRUE(x == y) << n;
            return;
          }
          const std::vector<uint8_t> bytes =
              kquants::quantize_tensor(q, x.data(), x.rows(), x.cols());
          const std::vector<float> deq = kquants::dequantize_tensor(q, bytes, x.rows(), x.cols());
          const MatrixRM want = Eigen::Map<const MatrixRM>(deq.data(), x.rows(), x.cols());
          EXPECT_TRUE(want == y) << n << " " << kquants::traits(q).name;
        });
  }
}

// The reader keeps F16 and block tensors in the file's form (mapped, decoded per row); every
// matrix reads as what widening the whole tensor gives (GgufFile::to_float, q/k rows
// un-permuted), whole and in a row range; block tensors expose the file's blocks, the q/k ones
// with their row map; the CPU backend's decode product (m = 1, which multiplies the blocks
// directly, #18) on a one-hot row gives that column of the widened tensor bit for bit.
TEST(Gguf, MatricesStayMappedAndDecodeToTheWholeTensorWidening) {
  for (int32_t type : {gt::F16, gt::Q4_K, gt::Q6_K}) {
    std::string path = tiny().f16;
    if (type != gt::F16) {
      GgufTypePlan plan;
      plan.weights = type;
      path = cat(tiny().tmp, "/mapped-", type, ".gguf");
      write_gguf(path, tiny().hf.spec, tiny().hf.weights, tiny().dir, plan);
    }
    const LoadedModel m = load_gguf(path);
    const GgufFile f(path);
    const ModelSpec& s = m.spec;
    auto check = [&](const std::string& name, const WeightTensor& w, int heads) {
      const GgufTensorInfo* t = f.find_tensor(name);
      ASSERT_TRUE(t) << name;
      const std::vector<float> v = f.to_float(*t);
      MatrixRM want = Eigen::Map<const MatrixRM>(v.data(), w.rows(), w.cols());
      if (heads > 0) want = gguf_unpermute_qk(want, heads);
      EXPECT_NE(w.dtype(), WeightDType::F32) << name;  // not widened at load
      EXPECT_TRUE(w.to_matrix() == want) << name;
      // Block tensors offer their blocks (#16; off-host uploads take those without a row map),
      // the q/k tensors, whose rows the file permutes, with the map (#18); F16 ones only the
      // q/k (the rest are half views), for the fp16 GEMV.
      const GgmlBlocks& g = w.ggml_blocks();
      if (type == gt::F16 && heads == 0) {
        EXPECT_EQ(g.ggml_type, -1) << name;
      } else {
        EXPECT_EQ(g.ggml_type, type) << name;
        EXPECT_EQ(g.row_of != nullptr, heads > 0) << name;
        ASSERT_EQ(g.bytes, size_t(t->nbytes)) << name;
        EXPECT_EQ(std::memcmp(g.data, f.data(*t).data(), g.bytes), 0) << name;
      }
      for (int64_t c : {int64_t(0), w.cols() / 2 + 1, w.cols() - 1}) {
        std::vector<float> x(size_t(w.cols()), 0.0f), y(size_t(w.rows()));
        x[size_t(c)] = 1.0f;
        WeightScratch scratch;
        cpu_backend().gemm_nt_weight(x.data(), w, y.data(), 1, scratch);
        EXPECT_TRUE(Eigen::Map<const Eigen::VectorXf>(y.data(), w.rows()) == want.col(c))
            << name << " column " << c;
      }
      const int64_t r0 = 3, n = std::min<int64_t>(5, w.rows() - r0);
      MatrixRM part(n, w.cols());
      w.decode_rows(r0, n, part.data());
      EXPECT_TRUE(part == want.middleRows(r0, n)) << name;
    };
    check("token_embd.weight", m.weights.embed, 0);
    for (int l = 0; l < s.num_layers; ++l) {
      const LayerWeights& L = m.weights.layers[size_t(l)];
      const std::string b = cat("blk.", l, ".");
      check(b + "attn_q.weight", L.wq, s.num_heads);
      check(b + "attn_k.weight", L.wk, s.num_kv_heads);
      check(b + "attn_v.weight", L.wv, 0);
      check(b + "attn_output.weight", L.wo, 0);
      check(b + "ffn_gate.weight", L.w_gate, 0);
      check(b + "ffn_up.weight", L.w_up, 0);
      check(b + "ffn_down.weight", L.w_down, 0);
    }
  }
}

TEST(Gguf, PlanOverridesAndFileType) {
  GgufTypePlan plan;
  plan.weights = gt::Q4_K;
  plan.per_tensor["output.weight"] = gt::Q6_K;
  plan.per_tensor["blk.0.attn_v.weight"] = gt::Q8_0;
  plan.file_type = 15;
  const std::string path = tiny().tmp + "/mix.gguf";
  write_gguf(path, tiny().hf.spec, tiny().hf.weights, tiny().dir, plan);
  const GgufFile f(path);
  EXPECT_EQ(f.find_tensor("output.weight")->ggml_type, gt::Q6_K);
  EXPECT_EQ(f.find_tensor("blk.0.attn_v.weight")->ggml_type, gt::Q8_0);
  EXPECT_EQ(f.find_tensor("blk.1.attn_v.weight")->ggml_type, gt::Q4_K);
  EXPECT_EQ(f.get_int("general.file_type"), 15);
  EXPECT_EQ(f.get_int("general.quantization_version"), 2);
  EXPECT_EQ(load_gguf(path).description,
            "gguf MOSTLY_Q4_K_M: 42 x Q4_K, 13 x F32, 1 x Q6_K, 1 x Q8_0");
  // A row length that is not a multiple of the block size is refused, naming the tensor.
  ModelSpec s = tiny().hf.spec;
  GgufTypePlan bad;
  bad.per_tensor["blk.0.ffn_down.weight"] = gt::Q4_K;  // ne[0] = 768 = 3 x 256: fine
  EXPECT_NO_THROW(write_gguf(tiny().tmp + "/ok.gguf", s, tiny().hf.weights, "", bad));
  bad.per_tensor["output_norm.weight"] = gt::Q4_K;  // 256: fine as well
  EXPECT_NO_THROW(write_gguf(tiny().tmp + "/ok2.gguf", s, tiny().hf.weights, "", bad));
  bad.per_tensor["blk.0.attn_norm.weight"] = 99;
  EXPECT_THROW(write_gguf(tiny().tmp + "/bad.gguf", s, tiny().hf.weights, "", bad), Error);
}

// (c) The permutation: round trip, hand-computed rows, and what it is for (ggml's adjacent-pair
// RoPE on the permuted rows equals HF's rotate-half RoPE on the original rows).
TEST(Gguf, QkPermutationHandExamples) {
  EXPECT_EQ(gguf_qk_row_source(8, 2), (std::vector<int64_t>{0, 2, 1, 3, 4, 6, 5, 7}));
  EXPECT_EQ(gguf_qk_row_source(12, 2),
            (std::vector<int64_t>{0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11}));
  EXPECT_EQ(gguf_qk_row_source(4, 1), (std::vector<int64_t>{0, 2, 1, 3}));
  EXPECT_THROW(gguf_qk_row_source(6, 2), Error);  // head size 3 is odd
  MatrixRM w(8, 2);
  for (int r = 0; r < 8; ++r) w.row(r) << float(r), float(10 * r);
  const MatrixRM p = gguf_permute_qk(w, 2);
  const float want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int r = 0; r < 8; ++r) {
    EXPECT_EQ(p(r, 0), want[r]);
    EXPECT_EQ(p(r, 1), 10 * want[r]);
  }
}

TEST(Gguf, QkPermutationRoundTripsAndTurnsRotateHalfIntoAdjacentPairs) {
  std::mt19937 rng(uint32_t(test::test_seed(7)));
  std::normal_distribution<float> nd;
  for (int heads : {1, 2, 4, 8}) {
    const int hd = 16;
    MatrixRM w(heads * hd, 5);
    for (int i = 0; i < w.size(); ++i) w.data()[i] = nd(rng);
    EXPECT_TRUE(gguf_unpermute_qk(gguf_permute_qk(w, heads), heads) == w);
    EXPECT_FALSE(gguf_permute_qk(w, heads) == w);
    // q = W x for one input; RoPE at position pos.
    Eigen::VectorXf x(5);
    for (int i = 0; i < 5; ++i) x[i] = nd(rng);
    const Eigen::VectorXf q_hf = w * x, q_gg = gguf_permute_qk(w, heads) * x;
    const int pos = 7, half = hd / 2;
    for (int h = 0; h < heads; ++h) {
      for (int j = 0; j < half; ++j) {
        const double theta = pos * std::pow(10000.0, -2.0 * j / hd);
        const double c = std::cos(theta), s = std::sin(theta);
        // HF rotate_half: (x_j, x_{j+half}) rotated together.
        const double a = q_hf[h * hd + j], b = q_hf[h * hd + j + half];
        const double hf0 = a * c - b * s, hf1 = b * c + a * s;
        // ggml mode 0: (y_{2j}, y_{2j+1}) rotated together.
        const double y0 = q_gg[h * hd + 2 * j], y1 = q_gg[h * hd + 2 * j + 1];
        EXPECT_EQ(y0, a);
        EXPECT_EQ(y1, b);
        EXPECT_NEAR(y0 * c - y1 * s, hf0, 1e-12);
        EXPECT_NEAR(y1 * c + y0 * s, hf1, 1e-12);
      }
    }
  }
}

// ---- hand-made files ------------------------------------------------------------------

struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& put(T v) {
    const size_t at = b.size();
    b.resize(at + sizeof(T));
    std::memcpy(b.data() + at, &v, sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
};

// A v3 file with three KVs (a string, a u32, a 2-element f32 array) and one F32 tensor [4].
// Byte positions: magic 0, version 4, n_tensors 8, n_kv 16, first key length 24.
std::vector<uint8_t> hand_file(uint32_t version = 3, const std::string& arch = "llama") {
  Bytes f;
  f.put<uint32_t>(0x46554747u).put<uint32_t>(version).put<uint64_t>(1).put<uint64_t>(3);
  f.str("general.architecture").put<uint32_t>(8).str(arch);  // key at 24, value at 52
  f.str("x.count").put<uint32_t>(4).put<uint32_t>(42);
  f.str("x.arr").put<uint32_t>(9).put<uint32_t>(6).put<uint64_t>(2).put(1.5f).put(-2.0f);
  f.str("w").put<uint32_t>(1).put<uint64_t>(4).put<uint32_t>(0).put<uint64_t>(0);
  while (f.b.size() % 32) f.b.push_back(0);
  for (float v : {1.0f, 2.0f, 3.0f, 4.0f}) f.put(v);
  return f.b;
}
constexpr size_t kArrLenPos = 24 + 8 + 20 + 4 + 8 + 5 + 8 + 7 + 4 + 4 + 8 + 5 + 4 + 4;
constexpr size_t kTensorInfoPos = kArrLenPos + 8 + 8;
constexpr size_t kTensorTypePos = kTensorInfoPos + 8 + 1 + 4 + 8;

std::string error_of(const std::vector<uint8_t>& bytes, const std::string& name) {
  const std::string path = cat(tiny().tmp, "/", name, ".gguf");
  write_bytes(path, bytes);
  try {
    GgufFile f(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Gguf, HandMadeFileParses) {
  const std::string path = tiny().tmp + "/hand.gguf";
  write_bytes(path, hand_file());
  const GgufFile f(path);
  EXPECT_EQ(f.metadata().size(), 3u);
  EXPECT_EQ(f.get_int("x.count"), 42);
  EXPECT_EQ(f.find("x.arr")->floats, (std::vector<double>{1.5, -2.0}));
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_EQ(f.data_offset(), 192u);  // 162 bytes of header, padded to 32
  EXPECT_EQ(f.to_float(f.tensors()[0]), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_THROW(f.get_string("x.count"), Error);
  write_bytes(path, hand_file(2));  // v2 has the same layout
  EXPECT_EQ(GgufFile(path).version(), 2u);
  // A non-llama architecture is refused by name.
  write_bytes(path, hand_file(3, "qwen2"));
  try {
    load_gguf(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'qwen2'"), std::string::npos) << e.what();
  }
}

// (d) Corrupted files: a clean Error naming the file and what is wrong.
TEST(Gguf, CorruptedFilesGiveCleanErrors) {
  const std::vector<uint8_t> good = hand_file();
  ASSERT_EQ(error_of(good, "good"), "");
  auto patched = [&](size_t pos, auto v) {
    std::vector<uint8_t> b = good;
    std::memcpy(b.data() + pos, &v, sizeof(v));
    return b;
  };
  auto expect_error = [&](const std::vector<uint8_t>& b, const std::string& name,
                          const std::string& needle) {
    const std::string e = error_of(b, name);
    EXPECT_NE(e.find(needle), std::string::npos) << name << ": " << e;
    EXPECT_NE(e.find(name + ".gguf"), std::string::npos) << name << ": " << e;
  };
  expect_error(patched(0, uint32_t(0x46554748)), "magic", "bad magic");
  expect_error(patched(4, uint32_t(1)), "version1", "version 1");
  expect_error(patched(4, uint32_t(7)), "version7", "version 7");
  expect_error(patched(4, uint32_t(0x03000000)), "bigendian", "big-endian");
  expect_error(patched(8, uint64_t(1) << 50), "ntensors", "tensor count");
  expect_error(patched(16, uint64_t(1) << 60), "nkv", "metadata count");
  expect_error(patched(24, uint64_t(1) << 62), "strlen", "string length");
  expect_error(patched(kArrLenPos, uint64_t(1) << 61), "arrlen", "array length");
  expect_error(patched(kTensorTypePos, uint32_t(99)), "type99", "unknown");
  expect_error(patched(kTensorTypePos, uint32_t(16)), "iq2", "IQ2_XXS");
  expect_error(patched(kTensorTypePos + 4, uint64_t(1) << 40), "offset", "offset");
  expect_error(patched(kTensorInfoPos + 8 + 1 + 4, uint64_t(1) << 62), "dims", "overflow");
  expect_error(patched(kTensorInfoPos + 8 + 1, uint32_t(5)), "ndims", "n_dims");
  std::vector<uint8_t> cut = good;
  cut.resize(cut.size() - 4);
  expect_error(cut, "truncated", "extends past the end");
  // Every prefix and every single-byte change of the header: an Error or a valid parse.
  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> b(good.begin(), good.begin() + std::ptrdiff_t(n));
    EXPECT_NE(error_of(b, "prefix"), "") << n;
  }
  for (size_t i = 0; i < 128; ++i)
    for (uint8_t v : {uint8_t(0x00), uint8_t(0x7f), uint8_t(0xff)}) {
      std::vector<uint8_t> b = good;
      b[i] = v;
      (void)error_of(b, "flip");  // must not crash (run under ASan+UBSan)
    }
}

TEST(Gguf, MissingTensorAndWrongShapeAreNamed) {
  ModelSpec s = tiny().hf.spec;
  s.num_layers = 1;
  s.vocab_size = 64;
  ModelWeights w = random_weights(s, 3);
  const std::string path = tiny().tmp + "/small.gguf";
  write_gguf(path, s, w, "");
  EXPECT_NO_THROW(load_gguf(path));
  std::vector<uint8_t> b = read_bytes(path);
  // Rename blk.0.ffn_up.weight to blk.0.ffn_xx.weight (same length).
  const std::string from = "blk.0.ffn_up.weight";
  auto it = std::search(b.begin(), b.end(), from.begin(), from.end());
  ASSERT_NE(it, b.end());
  std::memcpy(&*it, "blk.0.ffn_xx.weight", from.size());
  write_bytes(path, b);
  try {
    load_gguf(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'blk.0.ffn_up.weight' is missing"), std::string::npos)
        << e.what();
  }
}

// (e) Golden header bytes of a tiny model written without tokenizer, computed by hand:
// 13 KVs (architecture, name, vocab_size, context_length, embedding_length, block_count,
// feed_forward_length, head_count, head_count_kv, rope.freq_base, rms_epsilon,
// rope.dimension_count, file_type) and 12 tensors (token_embd, 9 per layer, output_norm,
// output).
TEST(Gguf, GoldenHeaderBytes) {
  ModelSpec s;
  s.vocab_size = 32;
  s.hidden_size = 64;
  s.intermediate_size = 128;
  s.num_layers = 1;
  s.num_heads = 4;
  s.num_kv_heads = 2;
  s.head_dim = 16;
  s.max_position_embeddings = 128;
  s.rms_norm_eps = 1e-5f;
  const ModelWeights w = random_weights(s, 1);
  GgufTypePlan plan;
  plan.name = "t";
  const std::string path = tiny().tmp + "/golden.gguf";
  write_gguf(path, s, w, "", plan);
  const std::vector<uint8_t> b = read_bytes(path);
  const std::vector<uint8_t> want = {'G', 'G', 'U', 'F', 3,   0,   0,   0,  // magic, version 3
                                     12,  0,   0,   0,   0,   0,   0,   0,   13,
                                     0,   0,   0,   0,   0,   0,   0,       // tensors, KVs
                                     20,  0,   0,   0,   0,   0,   0,   0,  // key length
                                     'g', 'e', 'n', 'e', 'r', 'a', 'l', '.', 'a',
                                     'r', 'c', 'h', 'i', 't', 'e', 'c', 't', 'u',
                                     'r', 'e', 8,   0,   0,   0,  // STRING
                                     5,   0,   0,   0,   0,   0,   0,   0,   'l',
                                     'l', 'a', 'm', 'a',  // "llama"
                                     12,  0,   0,   0,   0,   0,   0,   0,   'g',
                                     'e', 'n', 'e', 'r', 'a', 'l', '.', 'n', 'a',
                                     'm', 'e', 8,   0,   0,   0,   1,   0,   0,
                                     0,   0,   0,   0,   0,   't',  // general.name = "t"
                                     16,  0,   0,   0,   0,   0,   0,   0,   'l',
                                     'l', 'a', 'm', 'a', '.', 'v', 'o', 'c', 'a',
                                     'b', '_', 's', 'i', 'z', 'e', 4,   0,   0,
                                     0,   32,  0,   0,   0};  // llama.vocab_size: UINT32 32
  ASSERT_GE(b.size(), want.size());
  EXPECT_EQ(std::vector<uint8_t>(b.begin(), b.begin() + std::ptrdiff_t(want.size())), want);
  const GgufFile f(path);
  // token_embd: ne {64, 32} F16 = 4096 bytes at offset 0; attn_norm next at 4096.
  EXPECT_EQ(f.tensors()[0].ne, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(f.tensors()[1].name, "blk.0.attn_norm.weight");
  EXPECT_EQ(f.tensors()[1].offset, 4096u);
  EXPECT_EQ(f.tensors()[2].offset, 4096u + 256);  // 64 F32 = 256 bytes
  // Data: F16 of the first embedding value, at data_offset.
  uint16_t h;
  std::memcpy(&h, b.data() + f.data_offset(), 2);
  EXPECT_EQ(h, float_to_half(w.embed.to_matrix()(0, 0)));
  EXPECT_EQ(b.size() % 32, 0u);
}

}  // namespace
}  // namespace qsweep
