// Writes a random-weight Llama model in HF layout (config.json + model.safetensors, F16) of a
// given shape, for memory and speed measurements (docs/performance.md, issue #15):
//   bench_write_random_model DIR HIDDEN FFN LAYERS VOCAB HEADS KV_HEADS
// The weights are generated row by row on demand (a Quantized WeightTensor over a hash), so
// writing a 1B-class model does not first hold it in fp32.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "model/model_spec.h"
#include "model/weights.h"

namespace {

using qsweep::WeightTensor;

// A deterministic, roughly N(0, scale²) value per (tensor, row, col): the sum of four uniforms.
WeightTensor hashed(uint64_t id, int64_t rows, int64_t cols, float scale) {
  return WeightTensor::quantized(
      rows, cols, size_t(rows * cols) * 2, "random", [=](int64_t r0, int64_t n, float* out) {
        for (int64_t i = 0; i < n * cols; ++i) {
          uint64_t x = (id << 40) ^ uint64_t(r0 * cols + i) * 0x9E3779B97F4A7C15ull;
          float s = 0;
          for (int k = 0; k < 4; ++k) {
            x ^= x >> 31;
            x *= 0xBF58476D1CE4E5B9ull;
            x ^= x >> 29;
            s += float(x >> 40) / float(1 << 24) - 0.5f;
          }
          out[i] = scale * s * 1.7320508f;
        }
      });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr, "usage: %s DIR HIDDEN FFN LAYERS VOCAB HEADS KV_HEADS\n", argv[0]);
    return 2;
  }
  qsweep::ModelSpec s;
  s.arch = qsweep::Architecture::Llama;
  s.arch_name = "LlamaForCausalLM";
  s.hidden_size = std::atoi(argv[2]);
  s.intermediate_size = std::atoi(argv[3]);
  s.num_layers = std::atoi(argv[4]);
  s.vocab_size = std::atoi(argv[5]);
  s.num_heads = std::atoi(argv[6]);
  s.num_kv_heads = std::atoi(argv[7]);
  s.head_dim = s.hidden_size / s.num_heads;
  s.max_position_embeddings = 2048;
  s.rms_norm_eps = 1e-5f;
  s.rope_theta = 10000.0;
  s.torch_dtype = "float16";
  qsweep::ModelWeights w = qsweep::random_weights(
      [&] {
        qsweep::ModelSpec t = s;  // norms only: a 0-layer, 1-token shell
        t.num_layers = 0;
        t.vocab_size = 1;
        return t;
      }(),
      1);
  const int64_t H = s.hidden_size, I = s.intermediate_size;
  const int64_t q = int64_t(s.num_heads) * s.head_dim, kv = int64_t(s.num_kv_heads) * s.head_dim;
  uint64_t id = 1;
  w.embed = hashed(id++, s.vocab_size, H, 1.0f);
  w.lm_head = hashed(id++, s.vocab_size, H, 0.02f);
  for (int l = 0; l < s.num_layers; ++l) {
    qsweep::LayerWeights L;
    L.wq = hashed(id++, q, H, 0.02f);
    L.wk = hashed(id++, kv, H, 0.02f);
    L.wv = hashed(id++, kv, H, 0.02f);
    L.wo = hashed(id++, H, q, 0.02f);
    L.w_gate = hashed(id++, I, H, 0.02f);
    L.w_up = hashed(id++, I, H, 0.02f);
    L.w_down = hashed(id++, H, I, 0.02f);
    L.attn_norm = qsweep::VectorF::Ones(H);
    L.mlp_norm = qsweep::VectorF::Ones(H);
    w.layers.push_back(std::move(L));
  }
  qsweep::save_hf_checkpoint(argv[1], s, w, "F16");
  std::printf("wrote %s\n", argv[1]);
  return 0;
}
