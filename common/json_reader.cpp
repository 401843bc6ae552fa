#include "common/json_reader.h"

#include <cmath>
#include <limits>
#include <set>
#include <utility>
#include <vector>

#include "common/errors.h"
#include "common/mapped_file.h"

namespace qsweep {
using nlohmann::json;

json parse_json_text(std::string_view text, const std::string& file) {
  // A repeated key would silently keep the last value: refuse it, naming the key path.
  std::vector<std::pair<std::string, std::set<std::string>>> open;  // (path, keys) per object
  std::string pending;  // the key whose value comes next, in the innermost object
  const json::parser_callback_t cb = [&](int, json::parse_event_t ev, json& v) {
    switch (ev) {
      case json::parse_event_t::object_start:
        open.emplace_back(
            open.empty()
                ? ""
                : (open.back().first.empty() ? pending : open.back().first + "." + pending),
            std::set<std::string>{});
        break;
      case json::parse_event_t::object_end:
        if (!open.empty()) open.pop_back();
        break;
      case json::parse_event_t::key: {
        pending = v.get<std::string>();
        if (!open.empty() && !open.back().second.insert(pending).second) {
          const std::string& base = open.back().first;
          throw Error(cat(file, ": key '", base.empty() ? pending : base + "." + pending,
                          "' appears twice (a repeated key is ambiguous; keep one)"));
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    throw Error(cat(file, ": not valid JSON (", e.what(), ")"));
  }
}

json read_json_file(const std::string& file) {
  return parse_json_text(read_text_file(file), file);
}

std::string json_brief(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

JsonReader::JsonReader(const json& j, std::string file, std::string path)
    : j_(&j), file_(std::move(file)), path_(std::move(path)) {
  if (!j.is_object())
    throw Error(path_.empty()
                    ? cat(file_, ": must be a JSON object, got ", json_brief(j))
                    : cat(file_, ": key '", path_, "' must be an object, got ", json_brief(j)));
}

std::string JsonReader::key_path(std::string_view key) const {
  return path_.empty() ? std::string(key) : cat(path_, ".", key);
}

bool JsonReader::has(std::string_view key) const {
  const auto it = j_->find(std::string(key));
  return it != j_->end() && !it->is_null();
}

const json& JsonReader::at(std::string_view key) const {
  const auto it = j_->find(std::string(key));
  if (it == j_->end() || it->is_null())
    throw Error(cat(file_, ": key '", key_path(key), "' is missing (it is required)"));
  return *it;
}

void JsonReader::fail(std::string_view key, std::string_view must) const {
  const auto it = j_->find(std::string(key));
  throw Error(cat(file_, ": key '", key_path(key), "' must be ", must, ", got ",
                  it == j_->end() ? std::string("nothing") : json_brief(*it)));
}

void JsonReader::check(bool ok, std::string_view key, std::string_view must) const {
  if (!ok) fail(key, must);
}

namespace {
template <typename T>
T convert(const JsonReader& r, std::string_view key, const json& v) {
  if constexpr (std::is_same_v<T, bool>) {
    r.check(v.is_boolean(), key, "true or false");
    return v.get<bool>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    r.check(v.is_string(), key, "a string");
    return v.get<std::string>();
  } else if constexpr (std::is_integral_v<T>) {
    r.check(v.is_number_integer(), key, "an integer");
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      r.check(u <= uint64_t(std::numeric_limits<T>::max()), key,
              cat("an integer at most ", std::numeric_limits<T>::max()));
      return T(u);
    }
    const int64_t i = v.get<int64_t>();
    r.check(
        i >= int64_t(std::numeric_limits<T>::min()) && i <= int64_t(std::numeric_limits<T>::max()),
        key, "an integer in range");
    return T(i);
  } else {
    static_assert(std::is_floating_point_v<T>);
    r.check(v.is_number(), key, "a number");
    const double d = v.get<double>();
    r.check(std::isfinite(d) && std::isfinite(T(d)), key, "a finite number");
    return T(d);
  }
}
}  // namespace

template <typename T>
T JsonReader::required(std::string_view key) const {
  return convert<T>(*this, key, at(key));
}
template <typename T>
T JsonReader::optional(std::string_view key, T fallback) const {
  return has(key) ? convert<T>(*this, key, at(key)) : fallback;
}

template bool JsonReader::required<bool>(std::string_view) const;
template int JsonReader::required<int>(std::string_view) const;
template int64_t JsonReader::required<int64_t>(std::string_view) const;
template uint64_t JsonReader::required<uint64_t>(std::string_view) const;
template double JsonReader::required<double>(std::string_view) const;
template float JsonReader::required<float>(std::string_view) const;
template std::string JsonReader::required<std::string>(std::string_view) const;
template bool JsonReader::optional<bool>(std::string_view, bool) const;
template int JsonReader::optional<int>(std::string_view, int) const;
template int64_t JsonReader::optional<int64_t>(std::string_view, int64_t) const;
template double JsonReader::optional<double>(std::string_view, double) const;
template float JsonReader::optional<float>(std::string_view, float) const;
template std::string JsonReader::optional<std::string>(std::string_view, std::string) const;

int64_t JsonReader::required_int(std::string_view key, int64_t lo, int64_t hi) const {
  const int64_t v = required<int64_t>(key);
  check(v >= lo && v <= hi, key, cat("an integer in [", lo, ", ", hi, "]"));
  return v;
}

int64_t JsonReader::optional_int(std::string_view key, int64_t fallback, int64_t lo,
                                 int64_t hi) const {
  return has(key) ? required_int(key, lo, hi) : fallback;
}

double JsonReader::positive_number(std::string_view key, double fallback, double hi) const {
  const double v = optional<double>(key, fallback);
  check(v > 0 && v <= hi, key, cat("a finite number in (0, ", hi, "]"));
  return v;
}

JsonReader JsonReader::object(std::string_view key) const {
  const json& v = at(key);
  check(v.is_object(), key, "an object");
  return JsonReader(v, file_, key_path(key));
}

std::optional<JsonReader> JsonReader::optional_object(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return object(key);
}

const json& JsonReader::array(std::string_view key) const {
  const json& v = at(key);
  check(v.is_array(), key, "a list");
  return v;
}

}  // namespace qsweep
