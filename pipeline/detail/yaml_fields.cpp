#include "pipeline/detail/yaml_fields.h"

#include <yaml-cpp/eventhandler.h>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>

#include "common/errors.h"

namespace qsweep::sweep_yaml {
namespace {

/// Parser events → nesting depth (refused past kMaxNesting) and where the document began.
class ShapeCheck : public YAML::EventHandler {
 public:
  explicit ShapeCheck(const Source& src) : src_(src) {}
  void OnDocumentStart(const YAML::Mark& m) override {
    if (++documents_ > 1)
      src_.fail(m,
                "a second YAML document starts here; a sweep file is one document (remove the "
                "'---' line and what follows, or put it in a file of its own)");
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    enter(m);
  }
  void OnSequenceEnd() override { --depth_; }
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    enter(m);
  }
  void OnMapEnd() override { --depth_; }

 private:
  void enter(const YAML::Mark& m) {
    if (++depth_ > kMaxNesting)
      src_.fail(m, cat("maps and lists nest deeper than ", kMaxNesting,
                       " levels here; a sweep file needs a few (docs/sweep-format.md, Limits)"));
  }
  const Source& src_;
  int depth_ = 0;
  int documents_ = 0;
};

}  // namespace

void check_document_shape(const Source& src, const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  ShapeCheck check(src);
  while (parser.HandleNextDocument(check)) {
  }  // the second document's start throws
}

void Source::fail(const YAML::Mark& at, const std::string& msg) const {
  if (at.is_null() || at.line < 0) throw Error(cat(file, ": ", msg));
  throw Error(cat(file, ":", at.line + 1, ":", at.column + 1, ": ", msg));
}

int line_of(const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  return m.is_null() || m.line < 0 ? 0 : m.line + 1;
}

std::string place_of(const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  return cat(m.line + 1, ":", m.column + 1);
}

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string did_you_mean(const std::string& word, const std::vector<std::string>& known) {
  const std::string w = lower(word);
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& k : known) {
    const size_t d = edit_distance(w, lower(k));
    if (d < best_d) best_d = d, best = k;
  }
  // Close means at most 2 edits, or a third of the word for long words.
  if (best.empty() || best_d > std::max<size_t>(2, w.size() / 3)) return "";
  return cat("; did you mean '", best, "'?");
}

std::string join_or(const std::vector<std::string>& words) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += (i + 1 == words.size()) ? " or " : ", ";
    out += words[i];
  }
  return out;
}

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Scalar: {
      std::string s = n.Scalar();
      if (s.size() > 40) s = s.substr(0, 37) + "...";
      return cat("'", s, "'");
    }
    default:
      return "nothing";
  }
}

MapView::MapView(const Source& src, const YAML::Node& map, const std::vector<std::string>& known,
                 const std::string& what)
    : node_(map) {
  if (!map.IsMap()) src.fail(map, cat(what, " must be a map of keys, got ", describe(map)));
  for (const auto& kv : map) {  // kv is a value: `it->first` would dangle
    const YAML::Node key = kv.first;
    if (!key.IsScalar()) src.fail(key, cat("a key in ", what, " must be a plain name"));
    const std::string name = key.Scalar();
    if (std::find(known.begin(), known.end(), name) == known.end())
      src.fail(key, cat("unknown key '", name, "' in ", what, did_you_mean(name, known)));
    if (const Entry* first = find(name))
      src.fail(key, cat("key '", name, "' is given twice in ", what, " (first at line ",
                        line_of(first->key), ")"));
    entries_.push_back({name, key, kv.second});
  }
}

const Entry* MapView::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

std::string to_text(const Scalar& v) {
  struct {
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const {
      char buf[64];
      auto r = std::to_chars(buf, buf + sizeof buf, d);  // shortest round-trip form
      return std::string(buf, r.ptr);
    }
    std::string operator()(const std::string& s) const { return s; }
  } show;
  return std::visit(show, v);
}

namespace {

std::optional<int64_t> parse_int(const std::string& t) {
  int64_t v = 0;
  const char* b = t.data();
  const char* e = b + t.size();
  if (b != e && *b == '+') ++b;
  auto r = std::from_chars(b, e, v);
  if (r.ec != std::errc() || r.ptr != e || b == e) return std::nullopt;
  return v;
}

std::optional<double> parse_number(const std::string& t) {
  double v = 0;
  const char* b = t.data();
  const char* e = b + t.size();
  if (b != e && *b == '+') ++b;
  auto r = std::from_chars(b, e, v);
  if (r.ec != std::errc() || r.ptr != e || b == e || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace

Field int_field(const std::string& key, int64_t lo, int64_t hi, const std::string& expected) {
  return {key, expected, [lo, hi](const std::string& t) -> std::optional<Scalar> {
            auto v = parse_int(t);
            if (!v || *v < lo || *v > hi) return std::nullopt;
            return Scalar(*v);
          }};
}

Field bool_field(const std::string& key) {
  return {key, "true or false", [](const std::string& t) -> std::optional<Scalar> {
            if (t == "true" || t == "True" || t == "TRUE") return Scalar(true);
            if (t == "false" || t == "False" || t == "FALSE") return Scalar(false);
            return std::nullopt;
          }};
}

Field number_field(const std::string& key, std::function<bool(double)> ok,
                   const std::string& expected) {
  return {key, expected, [ok](const std::string& t) -> std::optional<Scalar> {
            auto v = parse_number(t);
            if (!v || !ok(*v)) return std::nullopt;
            return Scalar(*v);
          }};
}

Field string_field(const std::string& key, const std::string& expected) {
  return {key, expected, [](const std::string& t) -> std::optional<Scalar> {
            if (t.empty()) return std::nullopt;
            return Scalar(t);
          }};
}

Field calibration_name_field(const std::vector<std::string>& defined) {
  Field cal = string_field("calibration", "a name from 'calibration:'");
  cal.check = [defined](const Scalar& v) -> std::string {
    const auto& s = std::get<std::string>(v);
    if (std::find(defined.begin(), defined.end(), s) != defined.end()) return "";
    if (defined.empty())
      return cat("calibration '", s, "' is not defined: the sweep has no 'calibration:' section");
    return cat("calibration '", s,
               "' is not defined under 'calibration:' (defined: ", join_or(defined), ")",
               did_you_mean(s, defined));
  };
  return cal;
}

Field choice_field(const std::string& key, const std::vector<std::string>& choices) {
  Field f = string_field(key, join_or(choices));
  f.check = [key, choices](const Scalar& v) -> std::string {
    const auto& s = std::get<std::string>(v);
    if (std::find(choices.begin(), choices.end(), s) != choices.end()) return "";
    return cat("'", key, "' must be ", join_or(choices), ", got '", s, "'",
               did_you_mean(s, choices));
  };
  return f;
}

std::vector<std::string> keys_of(const std::vector<Field>& fields) {
  std::vector<std::string> keys;
  for (const auto& f : fields) keys.push_back(f.key);
  return keys;
}

const Field& field_named(const std::vector<Field>& fields, const std::string& key) {
  for (const auto& f : fields)
    if (f.key == key) return f;
  QS_ASSERT(false, "no field '", key, "'");
  __builtin_unreachable();
}

namespace {

/// Parses one scalar node; `lists_ok` only changes the wording of the message.
FieldValue parse_scalar(const Source& src, const Field& f, const Entry& e, const YAML::Node& n,
                        bool lists_ok) {
  const std::string expected = cat(f.expected, lists_ok ? " or a list of them" : "");
  if (!n.IsScalar()) {
    // An empty value has no useful position of its own (yaml-cpp marks the next token).
    const YAML::Node& at = n.IsNull() || !n.IsDefined() ? e.key : n;
    const std::string got = (lists_ok && n.IsSequence()) ? "a list inside a list" : describe(n);
    src.fail(at, cat("'", f.key, "' must be ", expected, ", got ", got));
  }
  auto v = f.parse(n.Scalar());
  if (!v) src.fail(n, cat("'", f.key, "' must be ", expected, ", got ", describe(n)));
  if (f.check) {
    const std::string msg = f.check(*v);
    if (!msg.empty()) src.fail(n, msg);
  }
  return {*v, n};
}

}  // namespace

FieldValue read_one(const Source& src, const Field& f, const Entry& e) {
  return parse_scalar(src, f, e, e.value, false);
}

std::vector<FieldValue> read_axis(const Source& src, const Field& f, const Entry& e) {
  if (!e.value.IsSequence()) return {parse_scalar(src, f, e, e.value, true)};
  if (e.value.size() == 0)
    src.fail(e.value, cat("'", f.key, "' is an empty list; give at least one value"));
  std::vector<FieldValue> out;
  std::set<Scalar> seen;  // a long list is checked in n log n, not n^2
  for (const auto& n : e.value) {
    FieldValue v = parse_scalar(src, f, e, n, true);
    if (!seen.insert(v.value).second)
      src.fail(n, cat("'", f.key, "' lists ", to_text(v.value), " twice"));
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace qsweep::sweep_yaml
