#!/usr/bin/env bash
# The whole test suite (what .ci/run calls).
#   scripts/test.sh             build (if needed) and run every test in ./build
#   scripts/test.sh --sanitize  the same under ASan+UBSan in ./build-asan
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "$@"
build_dir=build
ctest_args=()
if [ "${1:-}" = "--sanitize" ]; then
  build_dir=build-asan
  # Tests labelled "slow" repeat, at full size, code the other tests already cover.
  ctest_args=(-LE slow)
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" "${ctest_args[@]}"
