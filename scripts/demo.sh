#!/usr/bin/env bash
# The main job: the demo sweep (configs/demo.yaml) on the shared tinycode model —
# RTN and GPTQ at several bit widths, GPTQ calibrated on code and on WikiText-2,
# evaluated on held-out code and WikiText-2. Builds first if needed. Output,
# including table.md and report.html, goes to out/demo; a second run is instant.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/qsweep ] || scripts/setup.sh
exec build/qsweep run configs/demo.yaml --out out/demo --jobs 2 "$@"
