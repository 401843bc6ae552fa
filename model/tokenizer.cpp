#include "model/tokenizer.h"

#include <sentencepiece_processor.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/json_reader.h"
#include "common/mapped_file.h"
#include "model/bpe_tokenizer.h"

namespace qsweep {
namespace fs = std::filesystem;

namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& model_file, bool add_bos) : add_bos_(add_bos) {
    // Read through read_text_file (regular files only: a FIFO is an Error, not a hang).
    const auto status = sp_.LoadFromSerializedProto(read_text_file(model_file));
    QS_THROW_IF_NOT(status.ok(), model_file, ": cannot load the sentencepiece model (",
                    status.ToString(), ")");
  }
  /// From a serialized ModelProto; `origin` names it in messages.
  SentencePieceTokenizer(const std::string& serialized, bool add_bos, const std::string& origin,
                         bool /*from_proto*/)
      : add_bos_(add_bos), origin_(origin) {
    const auto status = sp_.LoadFromSerializedProto(serialized);
    QS_THROW_IF_NOT(status.ok(), origin, ": not a valid sentencepiece model (", status.ToString(),
                    ")");
  }

  std::vector<int> encode(const std::string& text, bool add_bos) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    QS_THROW_IF_NOT(status.ok(), "sentencepiece encode failed: ", status.ToString());
    if (add_bos && bos_id() >= 0) ids.insert(ids.begin(), bos_id());
    return ids;
  }

  std::string decode(const std::vector<int>& ids) const override {
    std::string out;
    const auto status = sp_.Decode(ids, &out);
    QS_THROW_IF_NOT(status.ok(), "sentencepiece decode failed: ", status.ToString());
    return out;
  }

  int vocab_size() const override { return sp_.GetPieceSize(); }
  int bos_id() const override { return sp_.bos_id(); }
  int eos_id() const override { return sp_.eos_id(); }
  bool add_bos_token() const override { return add_bos_; }
  std::string piece(int id) const override { return sp_.IdToPiece(id); }
  std::string describe() const override {
    return cat("sentencepiece", origin_.empty() ? "" : " from " + origin_, " (", sp_.GetPieceSize(),
               " pieces)");
  }

 private:
  sentencepiece::SentencePieceProcessor sp_;
  bool add_bos_;
  std::string origin_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const std::string& serialized_proto,
                                                        bool add_bos, const std::string& origin) {
  return std::make_unique<SentencePieceTokenizer>(serialized_proto, add_bos, origin, true);
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir) {
  bool add_bos = true;  // LlamaTokenizer's default
  const fs::path cfg = fs::path(dir) / "tokenizer_config.json";
  if (fs::exists(cfg)) {
    const nlohmann::json j = read_json_file(cfg.string());
    add_bos = JsonReader(j, cfg.string()).optional<bool>("add_bos_token", add_bos);
  }
  const fs::path sp = fs::path(dir) / "tokenizer.model";
  if (fs::exists(sp)) return std::make_unique<SentencePieceTokenizer>(sp.string(), add_bos);
  if (fs::exists(fs::path(dir) / "tokenizer.json")) return load_bpe_tokenizer(dir);
  throw Error(cat(dir,
                  ": no tokenizer.model or tokenizer.json found (a Hugging Face model "
                  "directory holds one of them)"));
}

}  // namespace qsweep
