#if !defined(QSWEEP_IN_PIPELINE)
#error "pipeline/detail/ is private to qsweep_pipeline; include pipeline/spec.h"
#endif
// Reading typed, located values out of yaml-cpp nodes for the sweep parser.
// Every failure is a qsweep::Error "FILE:LINE:COL: message" at the node at
// fault (a key's node for unknown keys, a value's node for bad values).
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace qsweep::sweep_yaml {

/// The file name used in messages, and the one way to fail at a node.
struct Source {
  std::string file;

  /// Throws Error("FILE:LINE:COL: msg"), 1-based; a node without a position gives "FILE: msg".
  [[noreturn]] void fail(const YAML::Mark& at, const std::string& msg) const;
  [[noreturn]] void fail(const YAML::Node& at, const std::string& msg) const {
    fail(at.Mark(), msg);
  }
};

/// The most levels of maps and lists a sweep file may nest (a sweep file needs 4).
constexpr int kMaxNesting = 64;

/// Checks the text's shape before it is built into nodes, by one pass of the parser's
/// events: one YAML document (a second one is an error at its `---` line) and at most
/// kMaxNesting levels of maps and lists (the first deeper one is an error at its position;
/// the parser never recurses deeper). Syntax errors are thrown as YAML::ParserException,
/// as YAML::Load would.
void check_document_shape(const Source& src, const std::string& text);

/// 1-based line of a node (0 when it has no position).
int line_of(const YAML::Node& n);
/// "LINE:COL" of a node, 1-based, for messages that cite a second place.
std::string place_of(const YAML::Node& n);

/// "; did you mean 'x'?" for the known word closest to `word` (edit distance, case-insensitive),
/// or "" when none is close.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& known);
/// "a, b or c".
std::string join_or(const std::vector<std::string>& words);

/// One `key: value` of a map, both nodes kept for their positions.
struct Entry {
  std::string name;
  YAML::Node key;
  YAML::Node value;
};

/// A map's entries in file order, after checking each key against `known`.
class MapView {
 public:
  /// `what` names the map in messages: "unknown key 'x' in <what>". Throws on a non-map
  /// (`map` is then described as "<what> must be a map of keys, got ..."), on a non-scalar
  /// key, on an unknown key (with a suggestion) and on a key given twice.
  MapView(const Source& src, const YAML::Node& map, const std::vector<std::string>& known,
          const std::string& what);
  /// The entry for `name`, or nullptr when the key is absent.
  const Entry* find(const std::string& name) const;
  const std::vector<Entry>& entries() const { return entries_; }
  const YAML::Node& node() const { return node_; }

 private:
  YAML::Node node_;
  std::vector<Entry> entries_;
};

/// How a scalar is shown after "got": 'text' (shortened), "a list", "a map" or "nothing".
std::string describe(const YAML::Node& n);

/// A parsed scalar. Values compare by type and value (0.10 == 0.1, True == true).
using Scalar = std::variant<bool, int64_t, double, std::string>;
/// The value as it would be written back ("4", "true", "0.1", "code").
std::string to_text(const Scalar& v);

/// A value and the node it was read from.
struct FieldValue {
  Scalar value;
  YAML::Node node;
};

/// A key and the scalars it accepts. Data, so that tables of fields describe each section.
struct Field {
  std::string key;
  /// What a good value is, for "'KEY' must be EXPECTED, got 'x'": "an integer 2..8".
  std::string expected;
  /// The value of the scalar's text, or nullopt when it is not `expected`.
  std::function<std::optional<Scalar>(const std::string& text)> parse;
  /// Further check of a parsed value with its own message ("" = fine), e.g. an unknown name.
  std::function<std::string(const Scalar&)> check = {};
};

/// An integer in [lo, hi]; `expected` describes it ("an integer 2..8").
Field int_field(const std::string& key, int64_t lo, int64_t hi, const std::string& expected);
/// true/false (YAML 1.2 core: true, True, TRUE, ...). yes/no/on/off are rejected, not guessed.
Field bool_field(const std::string& key);
/// A number for which `ok` holds.
Field number_field(const std::string& key, std::function<bool(double)> ok,
                   const std::string& expected);
/// Any non-empty string.
Field string_field(const std::string& key, const std::string& expected);
/// `calibration: NAME`, NAME one of `defined` (the sweep's 'calibration:' section); an
/// undefined name is refused listing the defined ones.
Field calibration_name_field(const std::vector<std::string>& defined);
/// One of `choices`; a near miss gets a suggestion.
Field choice_field(const std::string& key, const std::vector<std::string>& choices);

/// The names of a field table, for MapView's `known`.
std::vector<std::string> keys_of(const std::vector<Field>& fields);
/// The field called `key` (which must be in the table).
const Field& field_named(const std::vector<Field>& fields, const std::string& key);

/// One scalar value for `e` (a list, a map or nothing is an error).
FieldValue read_one(const Source& src, const Field& f, const Entry& e);
/// A scalar, or a non-empty list of distinct scalars (one matrix axis).
std::vector<FieldValue> read_axis(const Source& src, const Field& f, const Entry& e);

}  // namespace qsweep::sweep_yaml
