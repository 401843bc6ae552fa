#!/usr/bin/env bash
# Does llama.cpp load qsweep's auto_mix GGUF (per-tensor types chosen from the sensitivity
# study, issue #19) and compute what qsweep computes? For tinycode at Q3_K_M's and Q2_K's
# size (and the hand mixes themselves, for reference):
#  1. `qsweep quantize --method auto_mix --budget MIX --calib code` writes the GGUF;
#  2. llama.cpp (bench/peers/llama_cpp_nll.cpp linked against the peer's static libraries)
#     and qsweep (bench/peers/qsweep_nll.cpp) score the same first N_TOKENS ids of held-out
#     code in one window: max and mean |dNLL| over the scored positions;
#  3. the peer's perplexity driver (peer_ppl) on the same ids: mean NLL vs qsweep's.
# Not part of CI (needs the peer build of ../shared/peers/llama.cpp/README.md). ggml's AMX
# kernels die with SIGILL on K-quants on some CPUs/VMs (status 132): then point PEER_OUT at a
# copy of the peer's build whose ggml-cpu was rebuilt with -mno-amx-tile -mno-amx-int8
# -mno-amx-bf16 added to -march=native (sed on build.ninja, `ninja libggml-cpu.a`, ~5 min).
# The study here is small (N_SAMPLES windows of 128 tokens) — this checks loading and
# arithmetic, not the mix's quality (configs/auto-mix-study.yaml does that).
# Fails when llama.cpp refuses a file or the mean NLLs differ by more than 0.01 nats.
#   bench/peers/check_auto_mix.sh [PEER_OUT=/work/peer/out] [BUILD_DIR=build] [N_SAMPLES=4]
set -euo pipefail
cd "$(dirname "$0")/../.."
P=${1:-/work/peer/out}
B=${2:-build}
NS=${3:-4}
N_TOKENS=256
S=../shared/peers/llama.cpp
M=../shared/models/tinycode
D=../shared/data/code/heldout.txt
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
L="$P/build/libllama.a $P/build/libggml.a $P/build/libggml-cpu.a $P/build/libggml-base.a"
# shellcheck disable=SC2086
g++ -std=c++17 -O2 -I"$P/src/include" -I"$P/src/ggml/include" "$S/peer_ppl.cpp" -o "$T/peer_ppl" \
    $L -fopenmp -lpthread -ldl -lm
# shellcheck disable=SC2086
g++ -std=c++17 -O2 bench/peers/llama_cpp_nll.cpp -o "$T/llama_nll" $L -fopenmp -lpthread -ldl -lm
# A build with the CUDA backend needs its libraries too (as the build links them).
CU=""
if grep -q cudart_static "$B/build.ninja"; then
  CU=$(grep -o '/[^ ]*/libcu[a-zA-Z]*\.so' "$B/build.ninja" | sort -u | tr '\n' ' ')
  CU="$CU -L$(dirname "${CU%% *}") -lcudart_static -lrt"
fi
# shellcheck disable=SC2086
g++ -O2 -march=native -std=c++20 -I. -isystem /usr/include/eigen3 bench/peers/qsweep_nll.cpp \
    -o "$T/qsweep_nll" "$B"/quantize/libqsweep_quantize.a "$B"/formats/libqsweep_formats.a \
    "$B"/quantizers/libqsweep_quantizers.a "$B"/quantizers/kquants/libqsweep_kquants.a \
    "$B"/calibration/libqsweep_calibration.a "$B"/model/libqsweep_model.a \
    "$B"/backends/libqsweep_backends.a "$B"/common/libqsweep_common.a -lsentencepiece -ltbb \
    -lpthread -lpcre2-8 -lutf8proc $CU
fail=0
check() {  # NAME GGUF
  local t0 t1
  "$T/qsweep_nll" "$2" $M $D "$T/toks.txt" $N_TOKENS > "$T/ours.txt"
  if ! "$T/llama_nll" "$P" "$2" "$T/toks.txt" > "$T/theirs.txt" 2> "$T/llama.log"; then
    echo "FAIL $1: llama.cpp (status $?)"; tail -3 "$T/llama.log"; fail=1; return
  fi
  local r
  r=$(tail -n +2 "$T/theirs.txt" | paste "$T/ours.txt" - | awk '
    { d = $1 - $2; if (d < 0) d = -d; s += d; if (d > m) m = d; a += $1; b += $2; n++ }
    END { printf "%d %.6f %.6f %.6f %.6f", n, a / n, b / n, s / n, m }')
  read -r n ours theirs mean max <<< "$r"
  local ppl
  ppl=$("$T/peer_ppl" "$2" "$T/toks.txt" $N_TOKENS 2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["mean_nll"])')
  printf '%-16s %4d tokens ctx %d: mean NLL qsweep %.6f llama.cpp %.6f peer_ppl %.6f; |dNLL| mean %.2e max %.2e; %s\n' \
    "$1" "$n" $N_TOKENS "$ours" "$theirs" "$ppl" "$mean" "$max" "$(du -b "$2" | cut -f1) bytes"
  # Per token the two sides differ by more than rounding on K-quants (ggml's K-quant dot
  # products quantize the activations to Q8_K; qsweep multiplies in fp32), so the hand mixes'
  # own |dNLL| is the yardstick: the mean NLLs must agree within 0.01 nats (1 % perplexity).
  awk -v a="$ours" -v b="$theirs" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.01) }' ||
    { echo "FAIL $1: mean NLL qsweep $ours vs llama.cpp $theirs"; fail=1; }
}
for mix in q3_k_m q2_k; do
  "$B/qsweep" quantize --model $M --method $mix --out "$T/$mix.gguf" --quiet > /dev/null
  check "$mix" "$T/$mix.gguf"
  "$B/qsweep" quantize --model $M --method auto_mix --budget $mix --calib code --n-samples "$NS" \
    --seqlen 128 --out "$T/auto-$mix.gguf" --quiet > /dev/null
  python3 "$S/gguf_compare.py" "$T/auto-$mix.gguf" "$T/$mix.gguf" | tail -1 | cut -c1-200
  check "auto_mix@$mix" "$T/auto-$mix.gguf"
done
exit $fail
