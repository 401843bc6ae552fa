// GGUF writer: the model's tensors in llama.cpp's names and row order (q/k permuted), float
// encodings, and the file (header, metadata from the ModelSpec, tokenizer keys, aligned data).
// Block-quantized tensors arrive encoded (quantize/kquant_mix.h encodes them), either all at
// once (write_gguf) or one by one from an encoder (write_gguf_streamed, which both use).
#include <fcntl.h>
#include <tbb/parallel_pipeline.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "common/errors.h"
#include "common/half.h"
#include "common/mapped_file.h"
#include "formats/detail/gguf_internal.h"
#include "model/rope.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep {
namespace fs = std::filesystem;
namespace gt = kquants::ggml_type;
using namespace gguf_detail;

namespace {

/// A file written front to back into `path`.tmp.<pid> and renamed onto `path` by commit();
/// removed when destroyed uncommitted (an error on the way).
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path)
      : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(cat(tmp_, ": cannot create (", std::strerror(errno), ")"));
  }
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }
  void write(const void* data, size_t size) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (size > 0) {
      const ssize_t n = ::write(fd_, p, size);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw Error(cat(tmp_, ": write failed (", std::strerror(errno), ")"));
      }
      p += n;
      size -= size_t(n);
      written_ += uint64_t(n);
    }
  }
  void pad_to(uint64_t alignment) {
    static const uint8_t zeros[256] = {};
    uint64_t pad = align_up(written_, alignment) - written_;
    while (pad > 0) {
      const size_t n = size_t(std::min<uint64_t>(pad, sizeof(zeros)));
      write(zeros, n);
      pad -= n;
    }
  }
  void commit() {
    ::fsync(fd_);
    ::close(fd_);
    fd_ = -1;
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
      const int e = errno;
      ::unlink(tmp_.c_str());
      throw Error(cat(path_, ": rename failed (", std::strerror(e), ")"));
    }
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
};

/// The byte count of a tensor, or Error for a type the writer cannot hold / a bad row length.
uint64_t checked_nbytes(const std::string& path, const std::string& name,
                        const std::vector<int64_t>& ne, int32_t type) {
  QS_THROW_IF_NOT(supported_type(type), path, ": tensor '", name, "': ggml type ",
                  ggml_type_name(type), " cannot be written (supported: F32, F16, BF16, ",
                  "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K ... Q6_K)");
  const int64_t rows = ne.size() == 2 ? ne[1] : 1;
  return uint64_t(tensor_bytes(type, ne[0], rows, cat(path, ": tensor '", name, "'")));
}

}  // namespace

bool gguf_is_float_type(int32_t t) {
  return is_float_type(t);
}

std::vector<GgufSourceTensor> gguf_source_tensors(const ModelSpec& spec, const ModelWeights& w) {
  QS_THROW_IF_NOT(int(w.layers.size()) == spec.num_layers, "GGUF export: weights have ",
                  w.layers.size(), " layers, the spec ", spec.num_layers);
  std::vector<GgufSourceTensor> ts;
  auto perm_of = [](int64_t rows, int permute_heads) {
    return permute_heads > 0 ? std::make_shared<const std::vector<int64_t>>(
                                   gguf_qk_row_source(rows, permute_heads))
                             : nullptr;
  };
  auto add2 = [&](std::string name, const WeightTensor& m, int permute_heads) {
    GgufSourceTensor t;
    t.name = std::move(name);
    t.ne = {m.cols(), m.rows()};
    // Rows are decoded from the weight as stored when the writer asks for them (a WeightTensor
    // copy shares its storage; decode_rows is safe to call concurrently), so no tensor is
    // widened whole ahead of its turn.
    t.read_rows = [m, perm = perm_of(m.rows(), permute_heads)](int64_t r0, int64_t n, float* out) {
      if (!perm) return m.decode_rows(r0, n, out);
      for (int64_t r = 0; r < n; ++r) m.decode_rows((*perm)[size_t(r0 + r)], 1, out + r * m.cols());
    };
    ts.push_back(std::move(t));
  };
  auto add1 = [&](std::string name, const VectorF& v, int permute_heads) {
    if (v.size() == 0) return;
    GgufSourceTensor t;
    t.name = std::move(name);
    t.ne = {v.size()};
    // A 1-D tensor is one row of ne[0] values; its permutation moves single values.
    auto perm = perm_of(v.size(), permute_heads);
    const float* data = v.data();
    const int64_t n = v.size();
    t.read_rows = [data, n, perm](int64_t, int64_t, float* out) {
      for (int64_t i = 0; i < n; ++i) out[i] = data[perm ? (*perm)[size_t(i)] : i];
    };
    ts.push_back(std::move(t));
  };
  // llama.cpp's Llama graph rotates adjacent pairs (rope type NORM): convert_hf_to_gguf permutes
  // the q/k rows. Qwen2/3 rotate halves (NEOX) as HF does: rows stay as they are.
  const bool permute = gguf_arch(spec) == "llama";
  const int q_heads = permute ? spec.num_heads : 0, k_heads = permute ? spec.num_kv_heads : 0;
  if (std::vector<float> f = rope_freq_factors(spec); !f.empty()) {
    // LlamaModel.generate_extra_tensors: rope_freqs.weight, F32 [head_dim / 2].
    GgufSourceTensor t;
    t.name = "rope_freqs.weight";
    t.ne = {int64_t(f.size())};
    auto v = std::make_shared<const std::vector<float>>(std::move(f));
    t.read_rows = [v](int64_t, int64_t, float* out) {
      std::memcpy(out, v->data(), sizeof(float) * v->size());
    };
    ts.push_back(std::move(t));
  }
  add2("token_embd.weight", w.embed, 0);
  for (int l = 0; l < spec.num_layers; ++l) {
    const LayerWeights& L = w.layers[size_t(l)];
    const std::string b = cat("blk.", l, ".");
    add1(b + "attn_norm.weight", L.attn_norm, 0);
    add2(b + "attn_q.weight", L.wq, q_heads);
    add1(b + "attn_q.bias", L.bq, q_heads);
    add2(b + "attn_k.weight", L.wk, k_heads);
    add1(b + "attn_k.bias", L.bk, k_heads);
    add2(b + "attn_v.weight", L.wv, 0);
    add1(b + "attn_v.bias", L.bv, 0);
    add2(b + "attn_output.weight", L.wo, 0);
    add1(b + "attn_output.bias", L.bo, 0);
    if (spec.qk_norm) {
      QS_THROW_IF_NOT(L.q_norm.size() == spec.head_dim && L.k_norm.size() == spec.head_dim,
                      "GGUF export: layer ", l, ": q_norm/k_norm must hold head_dim ",
                      spec.head_dim, " values");
      add1(b + "attn_q_norm.weight", L.q_norm, 0);
      add1(b + "attn_k_norm.weight", L.k_norm, 0);
    }
    add1(b + "ffn_norm.weight", L.mlp_norm, 0);
    add2(b + "ffn_gate.weight", L.w_gate, 0);
    add2(b + "ffn_up.weight", L.w_up, 0);
    add2(b + "ffn_down.weight", L.w_down, 0);
  }
  add1("output_norm.weight", w.final_norm, 0);
  if (!spec.tie_word_embeddings) add2("output.weight", w.lm_head, 0);
  return ts;
}

std::vector<float> GgufSourceTensor::to_vector() const {
  std::vector<float> out(size_t(rows() * ne[0]));
  if (!out.empty()) read_rows(0, rows(), out.data());
  return out;
}

std::vector<uint8_t> gguf_encode_float(int32_t ggml_type, const float* x, int64_t n) {
  ByteWriter out;
  if (ggml_type == gt::F32) {
    out.put_bytes(x, sizeof(float) * size_t(n));
  } else if (ggml_type == gt::F16) {
    out.buf.reserve(2 * size_t(n));
    for (int64_t i = 0; i < n; ++i) out.put<uint16_t>(float_to_half(x[i]));
  } else if (ggml_type == gt::BF16) {
    out.buf.reserve(2 * size_t(n));
    for (int64_t i = 0; i < n; ++i) out.put<uint16_t>(float_to_bf16(x[i]));
  } else {
    throw Error(cat("gguf_encode_float: ggml type ", ggml_type_name(ggml_type),
                    " is not a float type (block types are encoded by quantize/kquant_mix.h)"));
  }
  return std::move(out.buf);
}

void write_gguf_streamed(const std::string& path, const ModelSpec& spec,
                         const std::vector<GgufTensorSpec>& ts, const GgufTensorEncoder& encode,
                         const std::string& model_dir_for_tokenizer, const GgufWriteOptions& opt,
                         int max_in_flight) {
  std::string arch;
  try {
    arch = gguf_arch(spec);  // refuses what llama.cpp cannot run
  } catch (const Error& e) {
    throw Error(cat(path, ": ", e.what()));
  }
  QS_THROW_IF_NOT(spec.sliding_window == 0, path,
                  ": GGUF architecture 'llama' has no sliding window; this model uses ",
                  spec.sliding_window);
  QS_THROW_IF_NOT(opt.alignment > 0 && std::has_single_bit(opt.alignment), path, ": alignment ",
                  opt.alignment, " is not a power of two");
  {
    // gguf_weight_tensors() is what mix plans are made from: it must list exactly these.
    const std::vector<kquants::MixTensor> listed = gguf_weight_tensors(spec);
    size_t k = 0;
    for (const GgufTensorSpec& t : ts)
      if (t.ne.size() == 2) {
        QS_THROW_IF_NOT(k < listed.size() && listed[k].name == t.name &&
                            listed[k].row_length == t.ne[0] && listed[k].rows == t.ne[1],
                        path, ": tensor '", t.name, "' is not the next 2-D tensor of this model");
        ++k;
      }
    QS_THROW_IF_NOT(k == listed.size(), path, ": the model has ", listed.size(), " 2-D tensors, ",
                    k, " were given");
  }

  std::map<int32_t, int> two_d_types;
  std::vector<uint64_t> nbytes(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    nbytes[i] = checked_nbytes(path, ts[i].name, ts[i].ne, ts[i].ggml_type);
    if (ts[i].ne.size() == 2) ++two_d_types[ts[i].ggml_type];
  }
  int32_t file_type = opt.file_type;
  if (file_type < 0) {
    int32_t best = gt::F16;
    int best_n = -1;
    for (auto [t, n] : two_d_types)
      if (n > best_n) best = t, best_n = n;
    file_type = ftype_of(best);
  }

  // Keys as convert_hf_to_gguf.py writes them (TextModel.set_gguf_parameters; LlamaModel adds
  // vocab_size and rope.dimension_count) under gguf-py/gguf/constants.py's names.
  KvWriter kv;
  const int head_dim = spec.head_dim;
  const std::string a = arch + ".";
  kv.str("general.architecture", arch);
  std::string name = opt.name;
  if (name.empty() && !model_dir_for_tokenizer.empty())
    name = fs::path(model_dir_for_tokenizer).lexically_normal().filename().string();
  if (name.empty()) name = "qsweep";
  kv.str("general.name", name);
  if (opt.alignment != kDefaultAlignment) kv.u32("general.alignment", opt.alignment);
  if (arch == "llama") kv.u32(a + "vocab_size", uint32_t(spec.vocab_size));
  kv.u32(a + "context_length", uint32_t(spec.max_position_embeddings));
  kv.u32(a + "embedding_length", uint32_t(spec.hidden_size));
  kv.u32(a + "block_count", uint32_t(spec.num_layers));
  kv.u32(a + "feed_forward_length", uint32_t(spec.intermediate_size));
  kv.u32(a + "attention.head_count", uint32_t(spec.num_heads));
  kv.u32(a + "attention.head_count_kv", uint32_t(spec.num_kv_heads));
  kv.f32(a + "rope.freq_base", float(spec.rope_theta));
  kv.f32(a + "attention.layer_norm_rms_epsilon", spec.rms_norm_eps);
  if (head_dim * spec.num_heads != spec.hidden_size) {
    kv.u32(a + "attention.key_length", uint32_t(head_dim));
    kv.u32(a + "attention.value_length", uint32_t(head_dim));
  }
  if (arch == "llama") kv.u32(a + "rope.dimension_count", uint32_t(head_dim));
  kv.u32("general.file_type", uint32_t(file_type));
  bool any_quant = false;
  for (const GgufTensorSpec& t : ts) any_quant |= !is_float_type(t.ggml_type);
  if (any_quant) kv.u32("general.quantization_version", 2);  // GGML_QNT_VERSION
  if (!model_dir_for_tokenizer.empty()) write_tokenizer_kv(kv, model_dir_for_tokenizer, spec);

  ByteWriter out;
  out.put_bytes("GGUF", 4);
  out.put<uint32_t>(3);
  out.put<uint64_t>(ts.size());
  out.put<uint64_t>(kv.count);
  out.put_bytes(kv.w.buf.data(), kv.w.buf.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const GgufTensorSpec& t = ts[i];
    out.put_str(t.name);
    out.put<uint32_t>(uint32_t(t.ne.size()));
    for (int64_t d : t.ne) out.put<uint64_t>(uint64_t(d));
    out.put<uint32_t>(uint32_t(t.ggml_type));
    out.put<uint64_t>(offset);
    offset = align_up(offset + nbytes[i], opt.alignment);
  }
  out.pad_to(opt.alignment);

  // The data: tensors encoded in parallel (at most max_in_flight at a time, counting those
  // waiting for their turn), written strictly in file order.
  AtomicFileWriter file(path);
  file.write(out.buf.data(), out.buf.size());
  out.buf = {};
  // Only indices travel between filters; the bytes wait in `encoded`, owned out here, because
  // oneTBB (2021.8) does not destroy the items in flight when a filter throws: a vector passed
  // between filters would leak on every error (LeakSanitizer saw it).
  std::vector<std::vector<uint8_t>> encoded(ts.size());
  size_t next = 0;
  tbb::parallel_pipeline(
      size_t(std::max(1, max_in_flight)),
      tbb::make_filter<void, size_t>(tbb::filter_mode::serial_in_order,
                                     [&](tbb::flow_control& fc) -> size_t {
                                       if (next == ts.size()) {
                                         fc.stop();
                                         return 0;
                                       }
                                       return next++;
                                     }) &
          tbb::make_filter<size_t, size_t>(tbb::filter_mode::parallel,
                                           [&](size_t i) {
                                             encoded[i] = encode(i);
                                             return i;
                                           }) &
          tbb::make_filter<size_t, void>(tbb::filter_mode::serial_in_order, [&](size_t i) {
            std::vector<uint8_t> bytes = std::move(encoded[i]);
            const GgufTensorSpec& t = ts[i];
            QS_THROW_IF_NOT(bytes.size() == nbytes[i], path, ": tensor '", t.name, "' has ",
                            bytes.size(), " bytes, its type and shape take ", nbytes[i]);
            file.write(bytes.data(), bytes.size());
            file.pad_to(opt.alignment);
          }));
  file.commit();
}

void write_gguf(const std::string& path, const ModelSpec& spec,
                const std::vector<GgufTensorData>& ts, const std::string& model_dir_for_tokenizer,
                const GgufWriteOptions& opt) {
  std::vector<GgufTensorSpec> specs;
  specs.reserve(ts.size());
  for (const GgufTensorData& t : ts) specs.push_back({t.name, t.ne, t.ggml_type});
  write_gguf_streamed(
      path, spec, specs, [&](size_t i) { return ts[i].bytes; }, model_dir_for_tokenizer, opt);
}

}  // namespace qsweep
