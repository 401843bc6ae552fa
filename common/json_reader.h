// One typed reader for every JSON file qsweep reads (config.json, quantize_config.json,
// quant_config.json, tokenizer_config.json, the safetensors header, results.json,
// meta.json, metrics.json, ...). A JsonReader is a view of one JSON object that knows
// its file and its key path, so every error is one line naming both and the kind wanted:
//
//   FILE: key 'quantization_config.group_size' must be an integer, got "128"
//
// Kinds are strict: an integer is a JSON integer (128.5 and "128" are refused), a
// number is any finite JSON number, a bool is true/false (never "false" or 0), a
// string is a string. `optional` treats a missing key and null alike (the default).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace qsweep {

/// Parses a whole JSON text; an Error names `file` when it is not valid JSON.
nlohmann::json parse_json_text(std::string_view text, const std::string& file);
/// Reads (regular files only, see open_regular_file) and parses a JSON file.
nlohmann::json read_json_file(const std::string& file);

class JsonReader {
 public:
  /// `j` must outlive the reader. Throws when `j` is not an object.
  JsonReader(const nlohmann::json& j, std::string file, std::string path = "");

  const std::string& file() const { return file_; }
  const nlohmann::json& node() const { return *j_; }
  /// "a.b.key" (the full key path of `key` in this object).
  std::string key_path(std::string_view key) const;
  /// Present and not null.
  bool has(std::string_view key) const;

  /// T: bool, int, int64_t, double, float, std::string. Missing → Error.
  template <typename T>
  T required(std::string_view key) const;
  /// Missing or null → `fallback`; present with the wrong kind → Error.
  template <typename T>
  T optional(std::string_view key, T fallback) const;
  template <typename T>
  std::optional<T> maybe(std::string_view key) const {
    if (!has(key)) return std::nullopt;
    return required<T>(key);
  }

  /// Integer in [lo, hi]; message "must be an integer in [lo, hi]".
  int64_t required_int(std::string_view key, int64_t lo, int64_t hi) const;
  int64_t optional_int(std::string_view key, int64_t fallback, int64_t lo, int64_t hi) const;
  /// Finite number > 0 (and <= hi).
  double positive_number(std::string_view key, double fallback, double hi = 1e300) const;

  /// A nested object (required / absent-or-null → nullopt; any other kind → Error).
  JsonReader object(std::string_view key) const;
  std::optional<JsonReader> optional_object(std::string_view key) const;
  /// The array at `key` (required).
  const nlohmann::json& array(std::string_view key) const;

  /// Throws "FILE: key 'PATH' must be MUST, got VALUE" unless `ok`.
  void check(bool ok, std::string_view key, std::string_view must) const;
  [[noreturn]] void fail(std::string_view key, std::string_view must) const;

 private:
  const nlohmann::json& at(std::string_view key) const;
  const nlohmann::json* j_;
  std::string file_, path_;
};

/// A short rendering of a JSON value for messages (truncated).
std::string json_brief(const nlohmann::json& v);

}  // namespace qsweep
