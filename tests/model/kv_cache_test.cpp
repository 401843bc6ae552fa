// Incremental decoding with the KV cache against the full forward pass: the same
// logits whether the tokens come one at a time, in chunks of any size, or all at
// once — on random Llama / Qwen2 (q/k/v bias, o bias) / Mistral (sliding window
// shorter than the sequence) models and on tinycode; plus the context limit and
// that a refused call leaves the cache usable.
#include <gtest/gtest.h>

#include <random>

#include "common/errors.h"
#include "model/model_spec.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "tests/support/off_host_backend.h"
#include "tests/support/small_model.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

constexpr double kMaxRelErr = 1e-4;

ModelSpec random_spec(Architecture arch) {
  ModelSpec s = test::small_model_spec(arch);
  s.max_position_embeddings = 40;
  s.qkv_bias = arch != Architecture::Mistral;  // Qwen2 always; Llama with attention_bias
  s.o_bias = arch == Architecture::Llama;
  return s;
}

std::vector<int> random_ids(int n, int vocab, std::mt19937& rng) {
  std::uniform_int_distribution<int> d(0, vocab - 1);
  std::vector<int> ids(static_cast<size_t>(n));
  for (auto& x : ids) x = d(rng);
  return ids;
}

// max |got − want| / max |want| over all of `want`'s rows.
double rel_err(const MatrixRM& got, const MatrixRM& want) {
  EXPECT_EQ(got.rows(), want.rows());
  EXPECT_EQ(got.cols(), want.cols());
  if (got.rows() != want.rows() || got.cols() != want.cols()) return 1e30;
  return double((got - want).cwiseAbs().maxCoeff()) / double(want.cwiseAbs().maxCoeff());
}

// Decodes `ids` in chunks of the given sizes (cycled) and stacks the logits.
MatrixRM decode_in_chunks(const Transformer& m, const std::vector<int>& ids,
                          const std::vector<int>& chunks) {
  KvCache cache;
  MatrixRM out(static_cast<int64_t>(ids.size()), m.spec().vocab_size);
  size_t at = 0, c = 0;
  while (at < ids.size()) {
    const size_t n = std::min(ids.size() - at, size_t(chunks[c++ % chunks.size()]));
    const std::vector<int> part(ids.begin() + int64_t(at), ids.begin() + int64_t(at + n));
    const MatrixRM l = m.decode(cache, part);
    EXPECT_EQ(l.rows(), int64_t(n));
    out.middleRows(int64_t(at), int64_t(n)) = l;
    at += n;
    EXPECT_EQ(cache.length(), int(at));
  }
  return out;
}

class KvCacheArch : public ::testing::TestWithParam<Architecture> {};

TEST_P(KvCacheArch, TokenByTokenAndChunkedPrefillEqualForward) {
  const uint64_t seed = test::test_seed(77);
  const ModelSpec spec = random_spec(GetParam());
  const Transformer model(spec, random_weights(spec, seed, 0.3f));
  std::mt19937 rng{uint32_t(seed)};
  const std::vector<int> ids = random_ids(spec.max_position_embeddings, spec.vocab_size, rng);
  const MatrixRM want = model.forward(ids);
  for (const std::vector<int>& chunks : std::vector<std::vector<int>>{
           {1}, {int(ids.size())}, {7, 1, 3}, {2, 9, 1, 1, 5}, {spec.sliding_window + 1}}) {
    std::string name;
    for (int c : chunks) name += cat(c, " ");
    EXPECT_LT(rel_err(decode_in_chunks(model, ids, chunks), want), kMaxRelErr) << "chunks " << name;
  }
}

TEST_P(KvCacheArch, ContextLimitThrowsAndLeavesTheCacheUsable) {
  const ModelSpec spec = random_spec(GetParam());
  const Transformer model(spec, random_weights(spec, 5, 0.3f));
  std::mt19937 rng(11);
  const std::vector<int> ids = random_ids(spec.max_position_embeddings, spec.vocab_size, rng);
  const MatrixRM want = model.forward(ids);
  KvCache cache;
  const std::vector<int> head(ids.begin(), ids.end() - 1);
  model.decode(cache, head);
  // Two more tokens do not fit; a bad id is refused; neither changes the cache.
  EXPECT_THROW(model.decode(cache, {1, 2}), Error);
  EXPECT_THROW(model.decode(cache, {spec.vocab_size}), Error);
  EXPECT_THROW(model.decode(cache, {}), Error);
  EXPECT_EQ(cache.length(), spec.max_position_embeddings - 1);
  const MatrixRM last = model.decode(cache, {ids.back()});
  EXPECT_LT(rel_err(last, want.bottomRows(1)), kMaxRelErr);
  EXPECT_EQ(cache.length(), spec.max_position_embeddings);
  EXPECT_THROW(model.decode(cache, {0}), Error);
  // clear() starts a new sequence at position 0.
  cache.clear();
  EXPECT_LT(rel_err(model.decode(cache, {ids[0], ids[1]}), want.topRows(2)), kMaxRelErr);
}

// The device-resident cache of off-host backends: on the off-host CPU test backend (every op
// the CPU's) the logits equal the host cache's bit for bit, whatever the chunking (growth
// copies included). A cache filled on one backend is refused on another. Needs no GPU: it runs
// in every build, CUDA or not.
TEST_P(KvCacheArch, DeviceResidentCacheDecodesAsTheHostCache) {
  const uint64_t seed = test::test_seed(78);
  const ModelSpec spec = random_spec(GetParam());
  const ModelWeights w = random_weights(spec, seed, 0.3f);
  const Transformer cpu(spec, w);
  test::OffHostCpuBackend off;
  const Transformer dev(spec, w, off);
  std::mt19937 rng{uint32_t(seed)};
  const std::vector<int> ids = random_ids(spec.max_position_embeddings, spec.vocab_size, rng);
  for (const std::vector<int>& chunks : std::vector<std::vector<int>>{{1}, {7, 1, 3}, {40}}) {
    const MatrixRM a = decode_in_chunks(dev, ids, chunks), b = decode_in_chunks(cpu, ids, chunks);
    EXPECT_TRUE((a.array() == b.array()).all()) << "chunks " << chunks[0];
  }
  KvCache cache;
  cpu.decode(cache, {ids[0]});
  EXPECT_THROW(dev.decode(cache, {ids[1]}), Error);
}

// On CUDA (skipped without a device) token-by-token decoding with the device-resident cache is
// within kMaxRelErr of the CPU forward pass.
TEST_P(KvCacheArch, CudaResidentCacheDecodesAsTheCpuForwardPass) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA: " << cuda_unavailable_reason();
  const uint64_t seed = test::test_seed(78);
  const ModelSpec spec = random_spec(GetParam());
  const ModelWeights w = random_weights(spec, seed, 0.3f);
  const Transformer cpu(spec, w);
  std::mt19937 rng{uint32_t(seed)};
  const std::vector<int> ids = random_ids(spec.max_position_embeddings, spec.vocab_size, rng);
  const auto cuda = make_backend("cuda");
  const Transformer on_cuda(spec, w, *cuda);
  EXPECT_LT(rel_err(decode_in_chunks(on_cuda, ids, {1}), cpu.forward(ids)), kMaxRelErr);
}

INSTANTIATE_TEST_SUITE_P(Architectures, KvCacheArch,
                         ::testing::Values(Architecture::Llama, Architecture::Qwen2,
                                           Architecture::Mistral));

TEST(KvCacheTinycode, PrefillThenTokenByTokenEqualsForward) {
  const std::string dir = test::tinycode_dir();
  const ModelSpec spec = load_model_spec(dir);
  const Transformer model(spec, load_weights(dir, spec));
  const auto tok = load_tokenizer(dir);
  std::vector<int> ids = tok->encode(
      "import os\n\n\ndef walk(top):\n    \"\"\"Yield every file under top.\"\"\"\n"
      "    for root, dirs, files in os.walk(top):\n        for name in files:\n"
      "            yield os.path.join(root, name)\n",
      true);
  ASSERT_GT(ids.size(), 40u);
  const MatrixRM want = model.forward(ids);
  EXPECT_LT(rel_err(decode_in_chunks(model, ids, {int(ids.size()) - 20, 1}), want), kMaxRelErr);
  EXPECT_LT(rel_err(decode_in_chunks(model, ids, {1}), want), kMaxRelErr);
  EXPECT_LT(rel_err(decode_in_chunks(model, ids, {13, 4}), want), kMaxRelErr);
}

}  // namespace
}  // namespace qsweep
