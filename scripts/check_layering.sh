#!/usr/bin/env bash
# Checks the include graph against docs/architecture.md's "Libraries and their edges" table,
# without a compiler (CI runs it before the build; it takes well under a second):
#   1. every `#include "X/..."` in folder F names a folder X that F may depend on (the table's
#      edges, transitively: calibration links model, which links common);
#   2. formats/ includes nothing from quantize/ (a format stores tensors; it does not run a
#      quantization method);
#   3. no file outside folder X includes X/detail/ (tests/X and bench/X may: white-box tests,
#      which define QSWEEP_IN_<X> for their own target in CMake).
# Prints each violation as file:line: message and exits 1 if there is any.
# Usage: scripts/check_layering.sh [repo-root]
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"

# ---- the table: folder -> the folders it links to directly (docs/architecture.md) --------
# Keep in step with the doc. "*" = may include every library folder (not others' detail/).
declare -A EDGES=(
  [common]=""
  [backends]="common"
  [model]="common backends"
  [calibration]="model"
  [quantizers]="common backends"
  [quantizers/kquants]="common backends"
  [quantize]="model calibration quantizers quantizers/kquants formats backends"
  [formats]="model quantizers quantizers/kquants"
  [eval]="model"
  [reports]="common"
  [pipeline]="common model calibration quantizers quantizers/kquants quantize formats eval reports backends"
  [cli]="*"
  [tests]="*"
  [bench]="*"
)
LIBRARIES="common backends model calibration quantizers quantizers/kquants quantize formats eval reports pipeline cli"
# Extra rules: "folder:forbidden-folder:why".
FORBIDDEN=(
  "formats:quantize:formats/ includes nothing from quantize/ (it gets tensors, not a quantization run)"
)

# ---- transitive closure of the edges ------------------------------------------------------
declare -A ALLOWED
closure() {  # prints the folders reachable from $1 (itself included)
  local seen=" $1 " queue=("$1") f d
  while ((${#queue[@]})); do
    f=${queue[0]}
    queue=("${queue[@]:1}")
    for d in ${EDGES[$f]:-}; do
      [[ $seen == *" $d "* ]] && continue
      seen+="$d "
      queue+=("$d")
    done
  done
  echo "$seen"
}
for f in "${!EDGES[@]}"; do
  if [[ ${EDGES[$f]} == "*" ]]; then ALLOWED[$f]="* $f "; else ALLOWED[$f]=$(closure "$f"); fi
done

# The folder a path belongs to: the longest listed folder that prefixes it.
folder_of() {
  case "$1" in
    quantizers/kquants/*) echo quantizers/kquants ;;
    */*) echo "${1%%/*}" ;;
    *) echo "" ;;
  esac
}

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
    '*.h' '*.hpp' '*.cpp' '*.cu' '*.cuh' '*.inc' | sort -u)
else
  mapfile -t files < <(find . -path ./build -prune -o \( -name '*.h' -o -name '*.cpp' -o \
    -name '*.cu' -o -name '*.cuh' -o -name '*.inc' \) -type f -print | sed 's|^\./||' | sort)
fi

violations=0
report() {
  echo "$1: $2"
  violations=$((violations + 1))
}

for file in "${files[@]}"; do
  [[ -f $file ]] || continue
  from=$(folder_of "$file")
  [[ -n ${EDGES[$from]+x} ]] || continue  # scripts/, build trees, ...
  while IFS=: read -r line inc; do
    inc=${inc#*\"}
    inc=${inc%%\"*}
    to=$(folder_of "$inc")
    [[ -n $to && -n ${EDGES[$to]+x} ]] || continue  # "golden_ggml.inc", system-ish paths
    # 3. detail/ is private to its folder (white-box tests/bench of the same stage excepted).
    if [[ $inc == "$to/detail/"* && $from != "$to" ]]; then
      stage=${file#*/}
      stage=${stage%%/*}
      if ! [[ ($from == tests || $from == bench) && $stage == "${to##*/}" ]]; then
        report "$file:$line" "includes $inc: $to/detail/ is private to $to/"
        continue
      fi
    fi
    # 2. explicit prohibitions.
    for rule in "${FORBIDDEN[@]}"; do
      IFS=: read -r rf rt why <<<"$rule"
      if [[ $from == "$rf" && $to == "$rt" ]]; then
        report "$file:$line" "includes $inc: $why"
        continue 2
      fi
    done
    # 1. the edges of the table.
    [[ $from == "$to" ]] && continue
    [[ $to == tests || $to == bench ]] && [[ $from != tests && $from != bench ]] &&
      { report "$file:$line" "includes $inc: a library never includes tests/ or bench/"; continue; }
    [[ ${ALLOWED[$from]} == *"*"* || ${ALLOWED[$from]} == *" $to "* ]] && continue
    [[ " $LIBRARIES " == *" $to "* ]] || continue
    report "$file:$line" "includes $inc: $from/ may not depend on $to/ (allowed:${ALLOWED[$from]})"
  done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" || true)
done

if ((violations)); then
  echo "check_layering: $violations include(s) break docs/architecture.md's layering" >&2
  exit 1
fi
echo "check_layering: ${#files[@]} files, include graph within docs/architecture.md's edges"
