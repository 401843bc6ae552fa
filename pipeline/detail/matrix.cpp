#include "pipeline/detail/matrix.h"

#include <algorithm>
#include <cstdio>

#include "common/errors.h"

namespace qsweep::sweep_yaml {
namespace {

/// A key and its values, in file order.
struct Axis {
  std::string key;
  std::vector<FieldValue> values;
};

/// The entries of one `include:` or `exclude:` map, one scalar per key.
std::vector<std::pair<std::string, FieldValue>> read_single_values(
    const Source& src, const YAML::Node& node, const std::vector<Field>& fields,
    const std::string& what, const std::vector<std::string>* only_keys = nullptr,
    const std::string& owner = "") {
  const MapView map(src, node, keys_of(fields), what);
  if (map.entries().empty()) src.fail(node, cat(what, " is empty"));
  std::vector<std::pair<std::string, FieldValue>> out;
  for (const auto& e : map.entries()) {
    if (only_keys && std::find(only_keys->begin(), only_keys->end(), e.name) == only_keys->end())
      src.fail(e.key, cat("exclude key '", e.name, "' is not a key of this ", owner,
                          "; exclude can only remove values the ", owner, " lists"));
    out.emplace_back(e.name, read_one(src, field_named(fields, e.name), e));
  }
  return out;
}

const YAML::Node& list_of_maps(const Source& src, const Entry& e) {
  if (!e.value.IsSequence() || e.value.size() == 0)
    src.fail(e.value.IsNull() ? e.key : e.value,
             cat("'", e.name, "' must be a non-empty list of maps, got ", describe(e.value)));
  return e.value;
}

bool matches(const Combination& c, const std::vector<std::pair<std::string, FieldValue>>& kv) {
  for (const auto& [key, v] : kv) {
    const FieldValue* have = c.find(key);
    if (!have || !(have->value == v.value)) return false;
  }
  return true;
}

/// Refuses `entry` before expansion when its product of axis lengths plus its includes
/// would take the section past the limit. The product is counted with overflow checks.
void check_count(const Source& src, const YAML::Node& entry, const std::vector<Axis>& axes,
                 uint64_t includes, const std::string& what, const MatrixLimit& limit) {
  uint64_t product = 1;
  bool overflow = false;
  long double approx = 1;
  std::string factors;
  for (const auto& axis : axes) {
    approx *= static_cast<long double>(axis.values.size());
    overflow = overflow || __builtin_mul_overflow(product, uint64_t(axis.values.size()), &product);
    if (axis.values.size() > 1)
      factors += cat(factors.empty() ? "" : " x ", axis.values.size(), " ", axis.key);
  }
  uint64_t total = 0;
  overflow = overflow || __builtin_add_overflow(product, includes, &total) ||
             __builtin_add_overflow(total, limit.used, &total);
  if (!overflow && total <= limit.max) return;
  char approx_text[32];
  std::snprintf(approx_text, sizeof approx_text, "%.3Lg", approx);
  const std::string count =
      overflow ? cat("more than 2^64 (about ", approx_text, ")") : std::to_string(product);
  src.fail(entry, cat("this ", what, " expands to ", count, " combinations",
                      factors.empty() ? "" : cat(" (", factors, ")"),
                      includes ? cat(" plus ", includes, " include entries") : "",
                      limit.used ? cat(", after ", limit.used, " from the entries above") : "",
                      "; a sweep may have at most ", limit.max, " ", limit.unit,
                      ": split it into several sweeps (docs/sweep-format.md, Limits)"));
}

}  // namespace

std::vector<Combination> expand_matrix(const Source& src, const YAML::Node& entry,
                                       const std::vector<Field>& fields, const std::string& what,
                                       const MatrixLimit& limit) {
  std::vector<std::string> known = keys_of(fields);
  known.push_back("exclude");
  known.push_back("include");
  const MapView map(src, entry, known, what);

  std::vector<Axis> axes;
  std::vector<std::string> matrix_keys;
  for (const auto& e : map.entries()) {
    if (e.name == "exclude" || e.name == "include") continue;
    axes.push_back({e.name, read_axis(src, field_named(fields, e.name), e)});
    matrix_keys.push_back(e.name);
  }

  const Entry* in_entry = map.find("include");
  check_count(src, entry, axes,
              in_entry && in_entry->value.IsSequence() ? in_entry->value.size() : 0, what, limit);

  // 1. The cross product, first key outermost.
  std::vector<Combination> all{{{}, entry}};
  for (const auto& axis : axes) {
    std::vector<Combination> next;
    next.reserve(all.size() * axis.values.size());
    for (const auto& c : all)
      for (const auto& v : axis.values) {
        Combination d = c;
        d.values.emplace(axis.key, v);
        next.push_back(std::move(d));
      }
    all = std::move(next);
  }

  // 2. Exclude.
  std::vector<Combination> kept = all;
  if (const Entry* ex = map.find("exclude")) {
    for (const auto& node : list_of_maps(src, *ex)) {
      const auto kv =
          read_single_values(src, node, fields, cat("exclude entry of ", what), &matrix_keys, what);
      if (std::none_of(all.begin(), all.end(),
                       [&](const Combination& c) { return matches(c, kv); }))
        src.fail(node, cat("exclude entry matches no combination of this ", what));
      std::erase_if(kept, [&](const Combination& c) { return matches(c, kv); });
    }
  }

  // 3. Include.
  std::vector<Combination> out = kept;
  const size_t n_matrix = out.size();
  if (const Entry* in = map.find("include")) {
    for (const auto& node : list_of_maps(src, *in)) {
      const auto kv = read_single_values(src, node, fields, cat("include entry of ", what));
      std::vector<std::pair<std::string, FieldValue>> on_matrix, extra;
      for (const auto& p : kv)
        (std::find(matrix_keys.begin(), matrix_keys.end(), p.first) != matrix_keys.end() ? on_matrix
                                                                                         : extra)
            .push_back(p);
      bool extended = false;
      for (size_t i = 0; i < n_matrix; ++i) {
        if (!matches(out[i], on_matrix)) continue;
        for (const auto& [key, v] : extra) out[i].values.insert_or_assign(key, v);
        extended = true;
      }
      if (extended) continue;
      Combination added{{}, node};
      for (const auto& axis : axes)
        if (axis.values.size() == 1 && !map.find(axis.key)->value.IsSequence())
          added.values.emplace(axis.key, axis.values.front());
      for (const auto& [key, v] : kv) added.values.insert_or_assign(key, v);
      out.push_back(std::move(added));
    }
  }

  if (out.empty())
    src.fail(entry, cat("this ", what, " expands to nothing: exclude removes every combination"));
  return out;
}

}  // namespace qsweep::sweep_yaml
