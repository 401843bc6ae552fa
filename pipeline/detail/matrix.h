#if !defined(QSWEEP_IN_PIPELINE)
#error "pipeline/detail/ is private to qsweep_pipeline; include pipeline/spec.h"
#endif
// Matrix expansion of one list entry, the way CI matrices work (GitHub Actions):
//
//  1. Every key of the entry is an axis: a scalar is a one-value axis, a list has one
//     value per element. The combinations are the cross product, in file order with
//     the first key outermost ({bits: [3, 4], group_size: [64, 128]} gives 3/64,
//     3/128, 4/64, 4/128).
//  2. `exclude:` is a list of maps. An exclude entry removes every combination that
//     matches all of its keys; its keys must be keys of the entry, and an exclude entry
//     that matches no combination of the full product is an error (a typo would
//     otherwise exclude nothing, silently).
//  3. `include:` is a list of maps, applied after exclude, in order. An include entry
//     whose values agree with a remaining combination on every key that the entry itself
//     sets (the matrix keys) extends that combination with its other keys; it extends
//     every combination it agrees with. When it agrees with none, it is added as a new
//     combination made of the entry's single-valued (scalar) keys overridden by the
//     include's own keys. (GitHub adds only the include's keys; keeping the scalar keys
//     means `{method: gptq, bits: [4, 8], include: [{bits: 3, group_size: 32}]}` adds a
//     gptq variant rather than one without a method.) Includes never change a value the
//     matrix gave, and later includes see only the matrix combinations, not earlier
//     includes' new ones.
//  4. An entry that ends with no combinations is an error.
//  5. Limits: the product of an entry's axis lengths is counted (overflow-safe) before
//     anything is expanded, and an entry whose product plus its includes would take the
//     section past `limit.max` combinations in all is an error naming the count.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "pipeline/detail/yaml_fields.h"

namespace qsweep::sweep_yaml {

/// One point of the matrix: a value (and its node) per key that was set.
struct Combination {
  std::map<std::string, FieldValue> values;
  /// The entry it came from: the list entry itself, or the `include:` entry that added it.
  YAML::Node origin;

  const FieldValue* find(const std::string& key) const {
    auto it = values.find(key);
    return it == values.end() ? nullptr : &it->second;
  }
};

/// The most variants, and the most evaluations (eval entries after expansion), in one
/// sweep, and the most evaluation nodes ((variants + baseline) x evaluations).
constexpr uint64_t kMaxVariants = 10000;
constexpr uint64_t kMaxEvals = 10000;
constexpr uint64_t kMaxEvalNodes = 100000;

/// How many combinations a section may still take: `max` in all ("variants" or
/// "evaluations" = `unit`), of which `used` went to the entries before.
struct MatrixLimit {
  uint64_t max = kMaxVariants;
  uint64_t used = 0;
  std::string unit = "variants";
};

/// Expands `entry` (a map of `fields` keys, plus `include` and `exclude`) as described
/// above. `what` names the entry in messages ("variant", "eval entry").
std::vector<Combination> expand_matrix(const Source& src, const YAML::Node& entry,
                                       const std::vector<Field>& fields, const std::string& what,
                                       const MatrixLimit& limit);

}  // namespace qsweep::sweep_yaml
