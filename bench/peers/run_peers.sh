#!/usr/bin/env bash
# qsweep against llama.cpp on this machine, side by side: the same GGUF files and token ids,
# runs interleaved (qsweep, llama.cpp, llama.cpp, qsweep, ...), medians of REPS runs. Prints one
# table of speed ratios (qsweep / llama.cpp; > 1 means qsweep is faster) and writes JSON.
#   bench/peers/run_peers.sh [OUT.json]
# Environment: QSWEEP_PEER_DIR (llama.cpp peer built by ../shared/peers/llama.cpp/build_peer.sh;
# default /work/peer/out), QSWEEP_BUILD (default build; needs the qsweep and bench_peer
# targets), QSWEEP_PEER_WORK (models and ids are cached there; default /tmp/qsweep-peers),
# QSWEEP_PEER_THREADS (default 2), QSWEEP_PEER_REPS (default 3), QSWEEP_PEER_ROWS (default
# "peak prefill decode quantize hessian").
# Rows: prefill tokens/s (tinycode at ctx 256; random ~200M and ~1B Llama models at ctx 512;
# F16 and Q4_K_M), decode tokens/s (batch 1, 128 ids after a 64-id prompt; tinycode and
# ~200M), quantization wall time per mix on the ~200M model (qsweep from the F16 checkpoint,
# llama.cpp from its F16 GGUF), GPTQ's Hessian accumulation (8192 × 4096 fp32 rows; peer:
# OpenBLAS cblas_ssyrk), and the fp32 FMA peak (bench_peer peak; no peer).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT_JSON=${1:-}
PEER=${QSWEEP_PEER_DIR:-/work/peer/out}
B=${QSWEEP_BUILD:-build}
W=${QSWEEP_PEER_WORK:-/tmp/qsweep-peers}
T=${QSWEEP_PEER_THREADS:-2}
REPS=${QSWEEP_PEER_REPS:-3}
ROWS=${QSWEEP_PEER_ROWS:-peak prefill decode quantize hessian}
SHARED=$ROOT/../shared
BP=$B/bench/peers/bench_peer
QS=$B/qsweep
die() { echo "run_peers: $*" >&2; exit 2; }
for f in "$PEER/peer_ppl" "$PEER/peer_quantize" "$PEER/build/libllama.a"; do
  [ -e "$f" ] || die "$f missing: build the peer with ../shared/peers/llama.cpp/build_peer.sh" \
    "(see its README) or set QSWEEP_PEER_DIR"
done
[ -x "$BP" ] && [ -x "$QS" ] || die "$BP or $QS missing: /work/devbuild.sh build qsweep bench_peer"
mkdir -p "$W"
PD=$W/peer_decode-$(echo "$PEER" | md5sum | cut -c1-8)
if [ ! -x "$PD" ] || [ bench/peers/peer_decode.cpp -nt "$PD" ]; then
  L="$PEER/build/libllama.a $PEER/build/libggml.a $PEER/build/libggml-cpu.a $PEER/build/libggml-base.a"
  g++ -std=c++17 -O2 -I"$PEER/src/include" -I"$PEER/src/ggml/include" bench/peers/peer_decode.cpp \
    -o "$PD" $L -fopenmp -lpthread -ldl -lm
fi
export QSWEEP_THREADS=$T OPENBLAS_NUM_THREADS=$T OMP_NUM_THREADS=$T
TC=$SHARED/models/tinycode
RES=$W/results.txt
: > "$RES"
now() { date +%s.%N; }
# record ROW SIDE VALUE
record() { echo "$1|$2|$3" >> "$RES"; }
json_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

# Models: tinycode; random Llama models (tinycode's tokenizer) written once, F16 and Q4_K_M GGUFs.
make_model() {  # NAME HIDDEN INTER LAYERS HEADS KV
  [ -e "$W/$1/config.json" ] || "$BP" model "$W/$1" "$2" "$3" "$4" "$5" "$6" 7 "$TC" > /dev/null
}
[ -e "$W/ids.txt" ] || "$BP" ids "$TC" "$SHARED/data/code/heldout.txt" 2048 "$W/ids.txt" > /dev/null
MODELS="tinycode:256:2048"
make_model rand200m 1024 2816 16 16 4
MODELS="$MODELS rand200m:512:1024"
if [[ " $ROWS " == *" prefill "* ]]; then
  make_model rand1b 2048 5632 22 32 4
  MODELS="$MODELS rand1b:512:512"
fi
dir_of() { [ "$1" = tinycode ] && echo "$TC" || echo "$W/$1"; }
for spec in $MODELS; do
  m=${spec%%:*}
  [ -e "$W/$m-f16.gguf" ] || "$BP" gguf "$(dir_of "$m")" "$W/$m-f16.gguf" > /dev/null
  [ -e "$W/$m-q4_k_m.gguf" ] || "$QS" quantize --model "$(dir_of "$m")" --method q4_k_m \
    --out "$W/$m-q4_k_m.gguf" --quiet > /dev/null
done
# ggml's AMX kernels (built in by -march=native on Sapphire Rapids and later) die with SIGILL
# in some VMs; then rebuild ggml-cpu with -mno-amx-tile -mno-amx-int8 -mno-amx-bf16 added to
# build.ninja's -march=native (a copy of the peer's build dir; ~5 min) and point
# QSWEEP_PEER_DIR at it.
head -n 512 "$W/ids.txt" > "$W/ids512.txt"
"$PEER/peer_ppl" "$W/tinycode-q4_k_m.gguf" "$W/ids512.txt" 256 "$T" > /dev/null 2>&1 ||
  die "$PEER/peer_ppl fails on a Q4_K_M file (status $?; 132 = SIGILL: see the AMX note above)"

for rep in $(seq "$REPS"); do
  echo "run_peers: repetition $rep of $REPS" >&2
  # Alternate which side goes first, so neither always runs on a cooler machine.
  if [ $((rep % 2)) = 1 ]; then ORDER="q p"; else ORDER="p q"; fi
  if [[ " $ROWS " == *" peak "* ]]; then
    record "FMA peak GFLOP/s ($T threads)" q "$("$BP" peak "$T" | json_field gflops)"
  fi
  if [[ " $ROWS " == *" prefill "* ]]; then
    for spec in $MODELS; do
      IFS=: read -r m ctx n <<< "$spec"
      head -n "$n" "$W/ids.txt" > "$W/ids_p.txt"
      for ty in f16 q4_k_m; do
        row="prefill tok/s $m $ty ctx $ctx"
        for side in $ORDER; do
          if [ $side = q ]; then
            record "$row" q "$("$BP" prefill "$W/$m-$ty.gguf" "$W/ids_p.txt" "$ctx" | json_field tokens_per_second)"
          else
            record "$row" p "$("$PEER/peer_ppl" "$W/$m-$ty.gguf" "$W/ids_p.txt" "$ctx" "$T" | json_field tokens_per_second)"
          fi
        done
      done
    done
  fi
  if [[ " $ROWS " == *" decode "* ]]; then
    for m in tinycode rand200m; do
      for ty in f16 q4_k_m; do
        row="decode tok/s $m $ty (64 + 128)"
        for side in $ORDER; do
          if [ $side = q ]; then
            record "$row" q "$("$BP" decode "$W/$m-$ty.gguf" "$W/ids.txt" 64 128 | json_field tokens_per_second)"
          else
            record "$row" p "$("$PD" "$W/$m-$ty.gguf" "$W/ids.txt" 64 128 "$T" | json_field tokens_per_second)"
          fi
        done
      done
    done
  fi
  if [[ " $ROWS " == *" quantize "* ]]; then
    for mix in q8_0 q6_k q4_k_m q3_k_m q2_k; do
      row="quantize s rand200m $mix"
      for side in $ORDER; do
        t0=$(now)
        if [ $side = q ]; then
          "$QS" quantize --model "$W/rand200m" --method $mix --out "$W/out-q.gguf" --quiet > /dev/null
        else
          "$PEER/peer_quantize" "$W/rand200m-f16.gguf" "$W/out-p.gguf" "${mix^^}" "$T" > /dev/null
        fi
        record "$row" $side "$(python3 -c "print($(now) - $t0)")"
      done
    done
    rm -f "$W/out-q.gguf" "$W/out-p.gguf"
  fi
  if [[ " $ROWS " == *" hessian "* ]]; then
    h=$("$BP" hessian 8192 4096 | tail -1)
    record "hessian s 8192x4096" q "$(echo "$h" | json_field qsweep_seconds)"
    if echo "$h" | grep -q openblas_ssyrk; then
      record "hessian s 8192x4096" p "$(echo "$h" | json_field openblas_ssyrk_seconds)"
    fi
  fi
done

python3 - "$RES" "$OUT_JSON" "$T" "$REPS" <<'PY'
import json, statistics, subprocess, sys
res, out, threads, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = {}
for line in open(res):
    row, side, v = line.rstrip("\n").split("|")
    rows.setdefault(row, {"q": [], "p": []})[side].append(float(v))
cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True,
           text=True).stdout.splitlines() if l.startswith("Model name")), "?")
table = []
print(f"CPU: {cpu}; {threads} threads; medians of {reps}; ratio = qsweep speed / llama.cpp speed")
print(f"| row | qsweep | llama.cpp | ratio |\n|---|---:|---:|---:|")
for row, v in rows.items():
    q = statistics.median(v["q"]) if v["q"] else None
    p = statistics.median(v["p"]) if v["p"] else None
    ratio = None
    if q and p:
        ratio = (p / q) if (" s " in row) else (q / p)  # times: lower is better
    table.append({"row": row, "qsweep": q, "peer": p, "ratio": ratio,
                  "qsweep_runs": v["q"], "peer_runs": v["p"]})
    f = lambda x: "—" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")
    print(f"| {row} | {f(q)} | {f(p)} | {'—' if ratio is None else f'{ratio:.2f}×'} |")
if out:
    json.dump({"cpu": cpu, "threads": threads, "reps": reps, "rows": table}, open(out, "w"),
              indent=1)
    print(f"wrote {out}")
PY
