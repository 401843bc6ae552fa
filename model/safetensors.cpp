#include "model/safetensors.h"

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/half.h"
#include "common/json_reader.h"

namespace qsweep {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct DTypeRow {
  DType type;
  const char* name;
  int64_t size;
};
constexpr DTypeRow kDTypes[] = {
    {DType::F32, "F32", 4},   {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::F64, "F64", 8},   {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},   {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

bool parse_dtype(const std::string& s, DType* out) {
  for (const auto& r : kDTypes)
    if (s == r.name) {
      *out = r.type;
      return true;
    }
  return false;
}

// A header larger than this is certainly corrupt (real ones are a few MB at most).
constexpr uint64_t kMaxHeaderBytes = uint64_t(1) << 30;

}  // namespace

const char* dtype_name(DType t) {
  for (const auto& r : kDTypes)
    if (r.type == t) return r.name;
  return "?";
}

int64_t dtype_size(DType t) {
  for (const auto& r : kDTypes)
    if (r.type == t) return r.size;
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::describe() const {
  std::string s = cat(dtype_name(dtype), "[");
  for (size_t i = 0; i < shape.size(); ++i) s += cat(i ? ", " : "", shape[i]);
  return s + "]";
}

std::vector<float> TensorView::to_float() const {
  const int64_t n = numel();
  std::vector<float> out(static_cast<size_t>(n));
  switch (dtype) {
    case DType::F32:
      std::memcpy(out.data(), data, size_t(n) * 4);
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, data + 2 * i, 2);
        out[size_t(i)] = half_to_float(h);
      }
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, data + 2 * i, 2);
        out[size_t(i)] = bf16_to_float(h);
      }
      break;
    default:
      throw Error(cat(file, ": tensor '", name, "' has dtype ", dtype_name(dtype),
                      "; a floating-point weight (F32, F16 or BF16) is expected here"));
  }
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(std::make_unique<MappedFile>(path)) {
  const uint8_t* base = file_->data();
  const uint64_t size = file_->size();
  QS_THROW_IF_NOT(size >= 8, path, ": truncated safetensors file (", size,
                  " bytes, shorter than the 8-byte header length); re-download or re-export it");
  uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);  // little-endian on every platform we build for
  QS_THROW_IF_NOT(header_len <= kMaxHeaderBytes && header_len <= size - 8, path, ": header length ",
                  header_len, " exceeds the file size ", size,
                  " (truncated or not a safetensors file)");
  // Repeated tensor names are refused by parse_json_text (naming the key).
  const json header =
      parse_json_text(std::string_view(reinterpret_cast<const char*>(base + 8), size_t(header_len)),
                      cat(path, " (safetensors header)"));
  QS_THROW_IF_NOT(header.is_object(), path, ": the safetensors header is not a JSON object");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it.value().is_object())
        for (auto m = it.value().begin(); m != it.value().end(); ++m)
          if (m.value().is_string()) metadata_[m.key()] = m.value().get<std::string>();
      continue;
    }
    const std::string where = cat(path, ": tensor '", it.key(), "'");
    const json& e = it.value();
    QS_THROW_IF_NOT(
        e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"),
        where, ": header entry needs dtype, shape and data_offsets");
    TensorView t;
    t.name = it.key();
    t.file = path;
    QS_THROW_IF_NOT(e["dtype"].is_string() && parse_dtype(e["dtype"].get<std::string>(), &t.dtype),
                    where, ": unknown dtype ", e["dtype"].dump());
    QS_THROW_IF_NOT(e["shape"].is_array(), where, ": shape is not a list");
    int64_t numel = 1;
    for (const auto& d : e["shape"]) {
      QS_THROW_IF_NOT(d.is_number_integer() && d.get<int64_t>() >= 0, where,
                      ": shape has a non-integer or negative dimension ", d.dump());
      t.shape.push_back(d.get<int64_t>());
      numel = mul_checked(numel, t.shape.back(), where);
    }
    const json& off = e["data_offsets"];
    QS_THROW_IF_NOT(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                        off[1].is_number_unsigned(),
                    where, ": data_offsets must be two non-negative integers");
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    QS_THROW_IF_NOT(begin <= end && end <= data_size, where, ": data_offsets [", begin, ", ", end,
                    "] lie beyond the ", data_size,
                    " data bytes of the file (truncated or corrupt file)");
    const int64_t expect = mul_checked(numel, dtype_size(t.dtype), where);
    QS_THROW_IF_NOT(uint64_t(expect) == end - begin, where, ": ", t.describe(), " needs ", expect,
                    " bytes but data_offsets span ", end - begin);
    t.data = base + data_start + begin;
    t.nbytes = expect;
    tensors_.push_back(std::move(t));
  }
  // Keep file order (by offset): deterministic listings and sequential reads.
  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorView& a, const TensorView& b) { return a.data < b.data; });
  // Two tensors may not share bytes (a write to one would change the other).
  for (size_t i = 1; i < tensors_.size(); ++i) {
    const TensorView &a = tensors_[i - 1], &b = tensors_[i];
    QS_THROW_IF_NOT(b.nbytes == 0 || a.data + a.nbytes <= b.data, path, ": tensor '", b.name,
                    "': data_offsets [", b.data - (base + data_start), ", ",
                    b.data - (base + data_start) + b.nbytes, "] overlap tensor '", a.name,
                    "' (corrupt header; each tensor needs its own bytes)");
  }
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& dir) : dir_(dir) {
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single = fs::path(dir) / "model.safetensors";
  if (fs::exists(index)) {
    const json j = read_json_file(index.string());
    QS_THROW_IF_NOT(j.contains("weight_map") && j["weight_map"].is_object(), index.string(),
                    ": no \"weight_map\" object");
    std::map<std::string, std::string> tensor_to_file;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      QS_THROW_IF_NOT(it.value().is_string(), index.string(), ": weight_map entry '", it.key(),
                      "' is not a file name");
      const std::string f = it.value().get<std::string>();
      QS_THROW_IF_NOT(f.find('/') == std::string::npos, index.string(), ": shard name '", f,
                      "' must be a plain file name in the same directory");
      tensor_to_file[it.key()] = f;
      if (std::find(file_names_.begin(), file_names_.end(), f) == file_names_.end())
        file_names_.push_back(f);
    }
    std::sort(file_names_.begin(), file_names_.end());
    for (const auto& f : file_names_)
      files_.push_back(std::make_unique<SafetensorsFile>((fs::path(dir) / f).string()));
    for (const auto& [name, f] : tensor_to_file) {
      const size_t k =
          size_t(std::find(file_names_.begin(), file_names_.end(), f) - file_names_.begin());
      const TensorView* t = files_[k]->find(name);
      QS_THROW_IF_NOT(t, index.string(), ": lists tensor '", name, "' in ", f,
                      " but that shard does not contain it");
      by_name_[name] = t;
    }
  } else if (fs::exists(single)) {
    file_names_.push_back("model.safetensors");
    files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    for (const auto& t : files_[0]->tensors()) by_name_[t.name] = &t;
  } else {
    throw Error(cat(dir, ": no model.safetensors or model.safetensors.index.json found ",
                    "(expected a Hugging Face checkpoint directory)"));
  }
}

const TensorView* SafetensorsCheckpoint::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView& SafetensorsCheckpoint::get(const std::string& name) const {
  const TensorView* t = find(name);
  QS_THROW_IF_NOT(t, dir_, ": tensor '", name, "' is missing from ",
                  files_.size() == 1 ? file_names_[0] : std::string("the shards"),
                  " (the checkpoint is incomplete or not of the declared architecture)");
  return *t;
}

std::vector<const TensorView*> SafetensorsCheckpoint::tensors() const {
  std::vector<const TensorView*> out;
  for (const auto& f : files_)
    for (const auto& t : f->tensors()) out.push_back(&t);
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const auto& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel = mul_checked(numel, d, cat(path, ": tensor ", t.name));
    const uint64_t nbytes = uint64_t(numel * dtype_size(t.dtype));
    offsets.push_back(offset);
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // pad so tensor data is 8-byte aligned
  std::vector<uint8_t> buf(8 + h.size() + offset);
  const uint64_t hlen = h.size();
  std::memcpy(buf.data(), &hlen, 8);
  std::memcpy(buf.data() + 8, h.data(), h.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t next = i + 1 < tensors.size() ? offsets[i + 1] : offset;
    if (next > offsets[i])
      std::memcpy(buf.data() + 8 + h.size() + offsets[i], tensors[i].data, next - offsets[i]);
  }
  write_file_atomic(path, buf.data(), buf.size());
}

}  // namespace qsweep
