#!/usr/bin/env bash
# Does llama.cpp load qsweep's GGUF files and compute the same thing? Runs one 256-token
# window of held-out code through llama.cpp (a prebuilt libllama, e.g. from the npm package
# @node-llama-cpp/linux-x64 — not part of the build) and through qsweep, and compares the
# per-token NLLs. Not part of CI: it needs that library.
#   bench/peers/compare_llama_cpp.sh LIBDIR [BUILD_DIR]
# LIBDIR holds libllama*.so, libggml*.so and the CPU backends (libggml-cpu-*.so).
set -euo pipefail
cd "$(dirname "$0")/../.."
L=${1:?LIBDIR with libllama and libggml}
B=${2:-build}
T=$(mktemp -d)
llama=$(ls "$L"/libllama*.so | grep -v common | head -1)
g++ -O2 -std=c++17 bench/peers/llama_cpp_nll.cpp -o "$T/llama_nll" "$llama" "$L"/libggml.*so \
    "$L"/libggml-base.so -Wl,-rpath,"$L"
g++ -O2 -march=native -std=c++20 -I. -isystem /usr/include/eigen3 bench/peers/qsweep_nll.cpp \
    -o "$T/qsweep_nll" "$B"/quantize/libqsweep_quantize.a "$B"/formats/libqsweep_formats.a \
    "$B"/quantizers/libqsweep_quantizers.a "$B"/quantizers/kquants/libqsweep_kquants.a \
    "$B"/calibration/libqsweep_calibration.a "$B"/model/libqsweep_model.a \
    "$B"/backends/libqsweep_backends.a "$B"/common/libqsweep_common.a -lsentencepiece -ltbb -lpthread
M=../shared/models/tinycode
D=../shared/data/code/heldout.txt
compare() {
  tail -n +2 "$T/theirs.txt" | paste "$T/ours.txt" - | awk -v name="$1" '
    { d = $1 - $2; if (d < 0) d = -d; s += d; if (d > m) m = d; a += $1; b += $2; n++ }
    END { printf "%-6s %d tokens: ppl qsweep %.4f llama.cpp %.4f, mean |dNLL| %.6f, max %.6f\n",
          name, n, exp(a / n), exp(b / n), s / n, m }'
}
"$T/qsweep_nll" "$T/f32.gguf" $M $D "$T/toks.txt" 256 write-f32 > "$T/ours.txt"
"$T/llama_nll" "$L" "$T/f32.gguf" "$T/toks.txt" > "$T/theirs.txt" 2> "$T/llama.log"
compare F32
for m in q8_0 q6_k q4_k_m q3_k_m q2_k; do
  "$B/qsweep" quantize --model tinycode --method $m --out "$T/$m.gguf" --quiet > /dev/null
  "$T/qsweep_nll" "$T/$m.gguf" $M $D "$T/toks.txt" 256 > "$T/ours.txt"
  "$T/llama_nll" "$L" "$T/$m.gguf" "$T/toks.txt" > "$T/theirs.txt" 2> "$T/llama.log"
  compare $m
done
rm -rf "$T"
