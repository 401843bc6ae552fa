#!/usr/bin/env bash
# The main job on the shared tiny model: build if needed, then measure tinycode's
# perplexity on WikiText-2 and held-out code under the chunks protocol.
# (Becomes the demo sweep, configs/demo.yaml, once `qsweep run` lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/qsweep ] || scripts/setup.sh
build/qsweep inspect tinycode | head -7
for ds in wikitext2 code-heldout; do
  build/qsweep eval --model tinycode --task perplexity --dataset "$ds" \
    --protocol chunks --ctx 256 --max-tokens 16384
done
