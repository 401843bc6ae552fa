#!/usr/bin/env bash
# GGUF for Qwen3 and Llama-3.1 against llama.cpp (a peer build outside the repository, see
# ../shared/peers/llama.cpp/README.md; not part of CI):
#  1. qsweep writes each shared tiny model's F32 GGUF (`qsweep quantize --method f32`);
#     llama.cpp loads it and its logits / next-token NLLs on the reference prompts are compared
#     with ../shared/models/*/reference/logits.safetensors (independent fp32 HF semantics);
#     qsweep's own forward pass on the same GGUF is compared the same way.
#  2. Q4_K_M, Q3_K_M, Q2_K and Q8_0: qsweep's file vs llama-quantize (peer_quantize) of the
#     F32 GGUF — per-tensor types, bytes and metadata (gguf_compare.py).
# Fails when llama.cpp's |dNLL| exceeds 1e-3 or a mix file differs.
#   bench/peers/check_gguf_arch.sh [PEER_OUT=/work/peer/out] [BUILD_DIR=build]
set -euo pipefail
cd "$(dirname "$0")/../.."
P=${1:-/work/peer/out}
B=${2:-build}
S=../shared/peers/llama.cpp
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
g++ -std=c++17 -O2 -I. -I"$P/src/include" -I"$P/src/ggml/include" \
    bench/peers/llama_cpp_ref_logits.cpp -o "$T/llama_ref" "$P"/build/libllama.a \
    "$P"/build/libggml.a "$P"/build/libggml-cpu.a "$P"/build/libggml-base.a -fopenmp -lpthread -ldl -lm
g++ -O2 -march=native -std=c++20 -I. -isystem /usr/include/eigen3 bench/peers/qsweep_ref_logits.cpp \
    -o "$T/qsweep_ref" "$B"/quantize/libqsweep_quantize.a "$B"/formats/libqsweep_formats.a \
    "$B"/quantizers/libqsweep_quantizers.a "$B"/quantizers/kquants/libqsweep_kquants.a \
    "$B"/calibration/libqsweep_calibration.a "$B"/model/libqsweep_model.a \
    "$B"/backends/libqsweep_backends.a "$B"/common/libqsweep_common.a -lsentencepiece -ltbb \
    -lpthread -lpcre2-8 -lutf8proc
fail=0
for m in qwen3-tiny-random llama31-tiny-random; do
  M=../shared/models/$m
  "$B/qsweep" quantize --model "$M" --method f32 --out "$T/$m.gguf" --quiet > /dev/null
  worst=$("$T/llama_ref" "$T/$m.gguf" "$M" 2 | tee /dev/stderr | awk '/ all:/ {print $(NF-3)}')
  awk -v w="$worst" 'BEGIN { exit !(w + 0 <= 1e-3) }' || { echo "FAIL $m: llama.cpp |dNLL| $worst"; fail=1; }
  "$T/qsweep_ref" "$T/$m.gguf" "$M" >&2
  for q in q4_k_m q3_k_m q2_k q8_0; do
    "$B/qsweep" quantize --model "$M" --method $q --out "$T/ours.gguf" --quiet > /dev/null
    "$P/peer_quantize" "$T/$m.gguf" "$T/peer.gguf" "${q^^}" 2 > /dev/null 2>&1
    r=$(python3 "$S/gguf_compare.py" "$T/ours.gguf" "$T/peer.gguf" | tail -1)
    echo "$m $q vs llama-quantize: $r"
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(not (r["identical"] == r["tensors"] and not r["kv_differ"]))' "$r" || fail=1
  done
done
exit $fail
