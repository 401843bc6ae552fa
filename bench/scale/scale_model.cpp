// qsweep_scale_model: writes a random-weight Llama checkpoint of a given shape in Hugging Face
// layout (config.json, one fp16 model.safetensors, tinycode's sentencepiece tokenizer files)
// tensor by tensor through a small buffer, so a 13.5 GB 7B-shaped model is written in a few
// MiB of memory. Used by bench/scale/run_scale.sh (issue #15) to measure peak RSS per layer.
//
//   qsweep_scale_model --out DIR --layers N [--hidden 4096] [--ffn 11008] [--heads 32]
//                      [--kv-heads 32] [--vocab 32000] [--tokenizer-from DIR] [--seed 1]
//
// Weights are uniform with standard deviation 0.02 (norms 1.0): what matters is the shape
// and the fp16 bytes, not the values. The tokenizer (tinycode's, 4096 pieces by default) only
// emits ids below its size; the embedding and lm_head keep --vocab rows (Llama-2's 32000).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/half.h"

namespace {

namespace fs = std::filesystem;

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  bool norm = false;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

struct Args {
  std::string out, tokenizer_from = "../shared/models/tinycode";
  int64_t layers = -1, hidden = 4096, ffn = 11008, heads = 32, kv_heads = 32, vocab = 32000;
  uint64_t seed = 1;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) throw std::runtime_error("option " + k + " needs a value");
    const std::string v = argv[++i];
    if (k == "--out")
      a.out = v;
    else if (k == "--tokenizer-from")
      a.tokenizer_from = v;
    else if (k == "--layers")
      a.layers = std::stoll(v);
    else if (k == "--hidden")
      a.hidden = std::stoll(v);
    else if (k == "--ffn")
      a.ffn = std::stoll(v);
    else if (k == "--heads")
      a.heads = std::stoll(v);
    else if (k == "--kv-heads")
      a.kv_heads = std::stoll(v);
    else if (k == "--vocab")
      a.vocab = std::stoll(v);
    else if (k == "--seed")
      a.seed = std::stoull(v);
    else
      throw std::runtime_error("unknown option " + k);
  }
  if (a.out.empty() || a.layers < 1)
    throw std::runtime_error(
        "usage: qsweep_scale_model --out DIR --layers N [--hidden 4096] "
        "[--ffn 11008] [--heads 32] [--kv-heads 32] [--vocab 32000]");
  if (a.hidden % a.heads != 0 || a.heads % a.kv_heads != 0)
    throw std::runtime_error("--hidden must be a multiple of --heads, --heads of --kv-heads");
  return a;
}

std::vector<Tensor> tensors_of(const Args& a) {
  const int64_t H = a.hidden, F = a.ffn, V = a.vocab, kv = a.kv_heads * (a.hidden / a.heads);
  std::vector<Tensor> t{{"model.embed_tokens.weight", {V, H}}};
  for (int64_t l = 0; l < a.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", {H}, true});
    t.push_back({p + "self_attn.q_proj.weight", {H, H}});
    t.push_back({p + "self_attn.k_proj.weight", {kv, H}});
    t.push_back({p + "self_attn.v_proj.weight", {kv, H}});
    t.push_back({p + "self_attn.o_proj.weight", {H, H}});
    t.push_back({p + "post_attention_layernorm.weight", {H}, true});
    t.push_back({p + "mlp.gate_proj.weight", {F, H}});
    t.push_back({p + "mlp.up_proj.weight", {F, H}});
    t.push_back({p + "mlp.down_proj.weight", {H, F}});
  }
  t.push_back({"model.norm.weight", {H}, true});
  t.push_back({"lm_head.weight", {V, H}});
  return t;
}

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void write_model(const Args& a) {
  fs::create_directories(a.out);
  const std::vector<Tensor> ts = tensors_of(a);
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  int64_t offset = 0;
  for (const Tensor& t : ts) {
    header[t.name] = {
        {"dtype", "F16"}, {"shape", t.shape}, {"data_offsets", {offset, offset + 2 * t.numel()}}};
    offset += 2 * t.numel();
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h += ' ';
  const std::string path = a.out + "/model.safetensors", tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot create " + tmp);
  const uint64_t hn = h.size();
  std::fwrite(&hn, 8, 1, f);
  std::fwrite(h.data(), 1, h.size(), f);
  // 4096 fp16 levels uniform on [-b, b], b = 0.02·√3 (standard deviation 0.02).
  std::vector<uint16_t> levels(4096);
  const float b = 0.02f * std::sqrt(3.0f);
  for (int i = 0; i < 4096; ++i)
    levels[size_t(i)] = qsweep::float_to_half(-b + 2 * b * (float(i) + 0.5f) / 4096.0f);
  const uint16_t one = qsweep::float_to_half(1.0f);
  std::vector<uint16_t> buf(size_t(1) << 22);
  for (size_t ti = 0; ti < ts.size(); ++ti) {
    uint64_t state = a.seed * 1000003ull + ti;
    for (int64_t left = ts[ti].numel(); left > 0;) {
      const int64_t n = std::min<int64_t>(left, int64_t(buf.size()));
      if (ts[ti].norm) {
        std::fill(buf.begin(), buf.begin() + n, one);
      } else {
        for (int64_t i = 0; i < n; i += 4) {
          const uint64_t r = splitmix64(state);
          for (int k = 0; k < 4 && i + k < n; ++k)
            buf[size_t(i + k)] = levels[(r >> (16 * k)) & 4095];
        }
      }
      if (std::fwrite(buf.data(), 2, size_t(n), f) != size_t(n))
        throw std::runtime_error("write failed: " + tmp + " (disk full?)");
      left -= n;
    }
  }
  if (std::fclose(f) != 0) throw std::runtime_error("write failed: " + tmp);
  fs::rename(tmp, path);

  const int64_t kv = a.kv_heads;
  nlohmann::ordered_json config = {{"architectures", {"LlamaForCausalLM"}},
                                   {"model_type", "llama"},
                                   {"vocab_size", a.vocab},
                                   {"hidden_size", a.hidden},
                                   {"intermediate_size", a.ffn},
                                   {"num_hidden_layers", a.layers},
                                   {"num_attention_heads", a.heads},
                                   {"num_key_value_heads", kv},
                                   {"hidden_act", "silu"},
                                   {"max_position_embeddings", 4096},
                                   {"rms_norm_eps", 1e-5},
                                   {"rope_theta", 10000.0},
                                   {"rope_scaling", nullptr},
                                   {"attention_bias", false},
                                   {"mlp_bias", false},
                                   {"tie_word_embeddings", false},
                                   {"bos_token_id", 1},
                                   {"eos_token_id", 2},
                                   {"torch_dtype", "float16"}};
  std::ofstream(a.out + "/config.json") << config.dump(2) << "\n";
  for (const char* name : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path from = fs::path(a.tokenizer_from) / name;
    if (fs::exists(from))
      fs::copy_file(from, fs::path(a.out) / name, fs::copy_options::overwrite_existing);
  }
  std::printf("%s: %zu tensors, %lld bytes of fp16\n", path.c_str(), ts.size(), (long long)offset);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    write_model(parse(argc, argv));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qsweep_scale_model: %s\n", e.what());
    return 2;
  }
}
