// The thread limit (set_backend_threads, QSWEEP_THREADS) is honoured, and results do not
// depend on it (the limit is observed as the number of distinct threads a
// parallel loop runs on): logits (packed, and decoded token by token on fp16/bf16 weights, the
// CPU's GEMV path), GPTQ codes and K-quant bytes are bit-identical for 1 and 2 threads.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <tbb/info.h>
#include <tbb/parallel_for.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "backends/backend.h"
#include "common/errors.h"
#include "common/mapped_file.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "quantize/kquant_mix.h"
#include "quantizers/quantizers.h"
#include "tests/quantizers/quantizer_test_util.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

// Runs `f` once limited to 1 thread and once to 2; returns both results.
template <class F>
auto one_and_two(F f) {
  set_backend_threads(1);
  auto one = f();
  set_backend_threads(2);
  auto two = f();
  set_backend_threads(0);
  return std::make_pair(std::move(one), std::move(two));
}

// How many distinct threads run the iterations of a parallel loop of small sleeps.
int threads_seen() {
  std::mutex m;
  std::set<std::thread::id> ids;
  tbb::parallel_for(0, 200, [&](int) {
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    std::lock_guard<std::mutex> lock(m);
    ids.insert(std::this_thread::get_id());
  });
  return int(ids.size());
}

ModelSpec wide_spec() {
  ModelSpec s;
  s.arch_name = "LlamaForCausalLM";
  s.vocab_size = 300;
  s.hidden_size = 256;
  s.intermediate_size = 512;
  s.num_layers = 2;
  s.num_heads = 4;
  s.num_kv_heads = 2;
  s.head_dim = 64;
  s.max_position_embeddings = 128;
  return s;
}

TEST(Threads, LimitIsHonouredAndReplaced) {
  const int cores = tbb::info::default_concurrency();
  set_backend_threads(1);
  EXPECT_EQ(threads_seen(), 1);
  EXPECT_EQ(backend_threads(), 1);
  // A later limit replaces the earlier one (two live global_controls would take the minimum).
  set_backend_threads(2);
  EXPECT_EQ(threads_seen(), std::min(2, cores));
  EXPECT_EQ(backend_threads(), std::min(2, cores));
  set_backend_threads(0);
  EXPECT_EQ(backend_threads(), cores);
  EXPECT_THROW(set_backend_threads(-1), Error);
}

TEST(Threads, EnvironmentVariable) {
  ::setenv("QSWEEP_THREADS", "1", 1);
  apply_thread_env();
  EXPECT_EQ(threads_seen(), 1);
  for (const char* bad : {"0", "-2", "two", "3x", "99999"}) {
    ::setenv("QSWEEP_THREADS", bad, 1);
    try {
      apply_thread_env();
      ADD_FAILURE() << "QSWEEP_THREADS=" << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("QSWEEP_THREADS"), std::string::npos) << e.what();
    }
  }
  ::unsetenv("QSWEEP_THREADS");
  set_backend_threads(0);
}

TEST(Threads, LogitsBitIdentical) {
  const ModelSpec s = wide_spec();
  const Transformer model(s, random_weights(s, 7));
  std::mt19937 rng(test::test_seed(3));
  std::vector<std::vector<int>> seqs(3, std::vector<int>(96));
  for (auto& q : seqs)
    for (int& t : q) t = int(rng() % uint32_t(s.vocab_size));
  const auto [one, two] = one_and_two([&] { return model.forward(seqs); });
  ASSERT_EQ(one.size(), two.size());
  EXPECT_EQ(std::memcmp(one.data(), two.data(), sizeof(float) * size_t(one.size())), 0);
}

// Decode on a model stored as F16 and as BF16 (m = 1 and m = 2 steps: cpu_gemv_w16 over
// threaded row chunks; the linears here, 256×512, are above its serial threshold).
TEST(Threads, DecodeOn16BitWeightsBitIdentical) {
  const ModelSpec s = wide_spec();
  const ModelWeights w = random_weights(s, 13);
  for (const char* dtype : {"F16", "BF16"}) {
    const std::string dir = test::make_temp_dir(cat("threads-decode-", dtype));
    save_hf_checkpoint(dir, s, w, dtype);
    const Transformer model(s, load_weights(dir, s));
    ASSERT_EQ(model.weights().layers[0].w_up.type_name(), dtype);
    const auto [one, two] = one_and_two([&] {
      KvCache cache;
      std::vector<float> out;
      std::vector<int> step = {5};
      for (int t = 0; t < 12; ++t) {
        const MatrixRM logits = model.decode(cache, step);
        out.insert(out.end(), logits.data(), logits.data() + logits.size());
        step = t % 3 == 2 ? std::vector<int>{(t * 37) % 300, (t * 11) % 300}
                          : std::vector<int>{(t * 53 + 1) % 300};
      }
      return out;
    });
    EXPECT_EQ(one, two) << dtype;
  }
}

TEST(Threads, GptqCodesBitIdentical) {
  std::mt19937_64 rng(test::test_seed(29));
  const MatrixRM W = test::random_weight(256, 512, rng);
  const MatrixD H = test::hessian_of(test::random_activations(600, 512, rng));
  GptqConfig cfg;
  cfg.group_size = 128;
  cfg.desc_act = true;
  const auto [one, two] = one_and_two([&] { return gptq_quantize(W, H, cfg); });
  EXPECT_EQ(one.q.codes, two.q.codes);
  EXPECT_EQ(one.q.scales, two.q.scales);
  EXPECT_EQ(one.loss, two.loss);
}

TEST(Threads, KQuantBytesBitIdentical) {
  const ModelSpec s = wide_spec();
  const Transformer model(s, random_weights(s, 11));
  for (kquants::Mix mix : {kquants::Mix::Q4_K_M, kquants::Mix::Q2_K}) {
    // The whole streamed GGUF (tensors encoded in parallel, written in order).
    const std::string path = test::make_temp_dir("threads-kquant") + "/m.gguf";
    const auto [one, two] = one_and_two([&] {
      write_kquant_mix(path, s, quantize_kquant_mix(model, mix, nullptr), "");
      return read_text_file(path);
    });
    EXPECT_TRUE(one == two) << kquants::mix_name(mix);
  }
}

}  // namespace
}  // namespace qsweep
