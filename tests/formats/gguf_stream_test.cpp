// The streamed GGUF writer (write_gguf_streamed) and the K-quant mix that streams through it:
// tensors that finish encoding out of order still land in file order at their offsets, the
// number of tensors in flight is bounded, an error leaves neither the file nor its temporary,
// and encoding a tensor in chunks of rows gives the bytes of encoding it whole.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "formats/gguf.h"
#include "quantize/kquant_mix.h"
#include "quantizers/kquants/kquants.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {
namespace fs = std::filesystem;
namespace gt = kquants::ggml_type;

struct Tiny {
  std::string dir = test::tinycode_dir();
  LoadedModel hf = load_model(dir);
  std::string tmp = test::make_temp_dir("gguf-stream");
  GgufTypePlan plan = gguf_mix_plan(kquants::Mix::Q4_K_M, hf.spec, false);
  std::vector<GgufSourceTensor> src = gguf_source_tensors(hf.spec, hf.weights);
  std::vector<GgufTensorSpec> specs = gguf_tensor_specs("test", src, plan);
};
const Tiny& tiny() {
  static const Tiny t;
  return t;
}

// Each tensor's expected bytes, encoded here straight from the fp32 weights (q/k rows permuted
// by gguf_permute_qk, not by the readers) with kquants / gguf_encode_float.
std::vector<std::vector<uint8_t>> compute_expected_bytes() {
  const Tiny& t = tiny();
  const ModelSpec& s = t.hf.spec;
  std::vector<std::vector<uint8_t>> out;
  for (const GgufTensorSpec& ts : t.specs) {
    std::vector<float> x;
    if (ts.name == "token_embd.weight") {
      const MatrixRM e = t.hf.weights.embed.to_matrix();
      x.assign(e.data(), e.data() + e.size());
    } else if (ts.name == "output.weight") {
      const MatrixRM h = t.hf.weights.lm_head.to_matrix();
      x.assign(h.data(), h.data() + h.size());
    } else if (ts.name == "output_norm.weight") {
      x.assign(t.hf.weights.final_norm.data(),
               t.hf.weights.final_norm.data() + t.hf.weights.final_norm.size());
    } else {
      const int l = std::stoi(ts.name.substr(4));
      const LayerWeights& L = t.hf.weights.layers[size_t(l)];
      const std::string role = ts.name.substr(ts.name.find('.', 4) + 1);
      MatrixRM m;
      if (role == "attn_norm.weight") m = L.attn_norm.transpose();
      if (role == "ffn_norm.weight") m = L.mlp_norm.transpose();
      if (role == "attn_q.weight") m = gguf_permute_qk(L.wq.to_matrix(), s.num_heads);
      if (role == "attn_k.weight") m = gguf_permute_qk(L.wk.to_matrix(), s.num_kv_heads);
      if (role == "attn_v.weight") m = L.wv.to_matrix();
      if (role == "attn_output.weight") m = L.wo.to_matrix();
      if (role == "ffn_gate.weight") m = L.w_gate.to_matrix();
      if (role == "ffn_up.weight") m = L.w_up.to_matrix();
      if (role == "ffn_down.weight") m = L.w_down.to_matrix();
      EXPECT_GT(m.size(), 0) << ts.name;
      x.assign(m.data(), m.data() + m.size());
    }
    const int64_t rows = ts.ne.size() == 2 ? ts.ne[1] : 1;
    if (gguf_is_float_type(ts.ggml_type)) {
      out.push_back(gguf_encode_float(ts.ggml_type, x.data(), int64_t(x.size())));
    } else {
      out.push_back(kquants::quantize_tensor(*kquants::type_from_ggml(ts.ggml_type), x.data(), rows,
                                             ts.ne[0], nullptr));
    }
  }
  return out;
}

const std::vector<std::vector<uint8_t>>& expected_bytes() {
  static const auto b = compute_expected_bytes();
  return b;
}

TEST(GgufStream, TensorsFinishedOutOfOrderLandInFileOrder) {
  const Tiny& t = tiny();
  const auto& expect = expected_bytes();
  ASSERT_EQ(expect.size(), t.specs.size());
  // Early tensors take longest, so later ones finish first.
  const std::string path = t.tmp + "/ooo.gguf";
  write_gguf_streamed(
      path, t.hf.spec, t.specs,
      [&](size_t i) {
        std::this_thread::sleep_for(std::chrono::microseconds(200 * (t.specs.size() - i)));
        return expect[i];
      },
      "", t.plan.write_options(), 6);
  const GgufFile f(path);
  ASSERT_EQ(f.tensors().size(), expect.size());
  for (size_t i = 0; i < expect.size(); ++i) {
    const GgufTensorInfo& info = f.tensors()[i];
    EXPECT_EQ(info.name, t.specs[i].name);
    EXPECT_EQ(info.ggml_type, t.specs[i].ggml_type);
    const auto d = f.data(info);
    EXPECT_TRUE(std::equal(d.begin(), d.end(), expect[i].begin(), expect[i].end())) << info.name;
  }
  // The mix's streamed writer (readers → chunked encoding) writes the very same file.
  const std::string mixed = t.tmp + "/mix.gguf";
  write_gguf_source(mixed, t.hf.spec, t.src, "", t.plan, 3);
  EXPECT_EQ(read_text_file(path), read_text_file(mixed));
}

TEST(GgufStream, AtMostMaxInFlightTensorsAreEncodedAtOnce) {
  const Tiny& t = tiny();
  const auto& expect = expected_bytes();
  for (int max_in_flight : {1, 2}) {
    std::atomic<int> now{0}, peak{0};
    write_gguf_streamed(
        t.tmp + "/bound.gguf", t.hf.spec, t.specs,
        [&](size_t i) {
          const int n = ++now;
          int p = peak.load();
          while (n > p && !peak.compare_exchange_weak(p, n)) {
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          --now;
          return expect[i];
        },
        "", t.plan.write_options(), max_in_flight);
    EXPECT_LE(peak.load(), max_in_flight);
    EXPECT_GE(peak.load(), 1);
  }
}

// No file and no temporary is left by a failing encoder or a wrong byte count, and a file
// already at the path is untouched.
TEST(GgufStream, ErrorsLeaveNoFileBehind) {
  const Tiny& t = tiny();
  const auto& expect = expected_bytes();
  const std::string dir = test::make_temp_dir("gguf-stream-err");
  const std::string path = dir + "/m.gguf";
  auto only_file = [&] {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
    return names;
  };
  EXPECT_THROW(write_gguf_streamed(
                   path, t.hf.spec, t.specs,
                   [&](size_t i) -> std::vector<uint8_t> {
                     if (i == 5) throw Error("encoder failed");
                     return expect[i];
                   },
                   "", t.plan.write_options()),
               Error);
  EXPECT_TRUE(only_file().empty());
  write_file_atomic(path, "keep", 4);
  try {
    write_gguf_streamed(
        path, t.hf.spec, t.specs,
        [&](size_t i) {
          auto b = expect[i];
          if (i == 7) b.pop_back();
          return b;
        },
        "", t.plan.write_options());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(cat("tensor '", t.specs[7].name, "' has ", expect[7].size() - 1,
                            " bytes, its type and shape take ", expect[7].size())),
              std::string::npos)
        << what;
  }
  EXPECT_EQ(only_file(), std::vector<std::string>{"m.gguf"});
  EXPECT_EQ(read_text_file(path), "keep");
}

TEST(GgufStream, ChunkedEncodingEqualsWholeTensorEncoding) {
  const Tiny& t = tiny();
  const auto& expect = expected_bytes();
  std::mt19937 rng(test::test_seed(5));
  std::uniform_real_distribution<float> u(0.01f, 4.0f);
  for (size_t i = 0; i < t.src.size(); ++i) {
    const GgufSourceTensor& s = t.src[i];
    for (int64_t chunk : {int64_t(1), int64_t(7), int64_t(0)})
      EXPECT_TRUE(encode_gguf_tensor(s, t.specs[i].ggml_type, nullptr, chunk) == expect[i])
          << s.name << " chunk " << chunk;
    if (!s.two_d()) continue;
    // With an importance matrix (every row weighted by the same columns): Q3_K's weighted path.
    std::vector<float> imp(size_t(s.ne[0]));
    for (float& v : imp) v = u(rng);
    const std::vector<float> x = s.to_vector();
    const auto whole =
        kquants::quantize_tensor(kquants::QuantType::Q3_K, x.data(), s.rows(), s.ne[0], imp.data());
    EXPECT_TRUE(encode_gguf_tensor(s, gt::Q3_K, imp.data(), 5) == whole) << s.name;
  }
}

}  // namespace
}  // namespace qsweep
