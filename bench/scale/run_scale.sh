#!/usr/bin/env bash
# Issue #15's scale benchmark: for each layer count, writes a random-weight 7B-width model
# (hidden 4096, ffn 11008, 32 heads, 32 kv heads, vocab 32000, fp16 safetensors) with
# qsweep_scale_model and measures peak RSS and wall time (/usr/bin/time -v) of
#   eval   qsweep eval --task perplexity --ctx 512 --max-tokens 1024  (2 x 512 tokens, CPU)
#   q4_k_m qsweep quantize --method q4_k_m                           (GGUF)
#   gptq   qsweep quantize --method gptq --n-samples 8 --seqlen 512   (8 x 512 calibration)
# then prints one table: file bytes, RSS, RSS/file, time, and per-layer growth (RSS difference
# to the previous layer count over the layers added, and that over the layers' bytes).
#
#   bench/scale/run_scale.sh [-b BUILD] [-w WORKDIR] [-c "eval q4_k_m gptq"] [-k] N...
#     (default N: 1 2 4; -k keeps the written models; WORKDIR default /tmp/qsweep-scale)
# Needs about 1 GB + 0.4 GB per layer of disk per model (13.5 GB for 32 layers).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build work=/tmp/qsweep-scale cmds="eval q4_k_m gptq" keep=0
while getopts "b:w:c:k" o; do
  case $o in
    b) build=$OPTARG ;; w) work=$OPTARG ;; c) cmds=$OPTARG ;; k) keep=1 ;;
    *) sed -n 2,14p "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
layers=("$@")
[ $# -eq 0 ] && layers=(1 2 4)
qsweep=$build/qsweep writer=$build/bench/scale/qsweep_scale_model
for x in "$qsweep" "$writer"; do
  [ -x "$x" ] || { echo "run_scale.sh: $x not built (cmake --build build --target qsweep qsweep_scale_model)" >&2; exit 2; }
done
data=${QSWEEP_DATA:-$root/../shared/data}
mkdir -p "$work"
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
rows=()
measure() {  # name N model_dir command...
  local name=$1 n=$2 dir=$3; shift 3
  local log=$work/$name.$n.time
  if ! /usr/bin/time -v "$@" >"$work/$name.$n.out" 2>"$log"; then
    echo "run_scale.sh: $name N=$n failed (see $log)" >&2
    rows+=("$n $name $(stat -c %s "$dir/model.safetensors") 0 0"); return
  fi
  local kb s
  kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
  s=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log" |
      awk -F: '{t=0; for (i=1;i<=NF;i++) t=t*60+$i; print t}')
  rows+=("$n $name $(stat -c %s "$dir/model.safetensors") $kb $s")
  echo "  N=$n $name: $((kb / 1024)) MiB, ${s}s" >&2
}
for n in "${layers[@]}"; do
  dir=$work/llama7b-width-$n
  "$writer" --out "$dir" --layers "$n" >&2
  for c in $cmds; do
    case $c in
      eval) measure eval "$n" "$dir" "$qsweep" eval --model "$dir" --task perplexity \
              --dataset wikitext2 --data-dir "$data" --ctx 512 --max-tokens 1024 --device cpu --no-progress ;;
      q4_k_m) measure q4_k_m "$n" "$dir" "$qsweep" quantize --model "$dir" --method q4_k_m \
                --out "$work/q4km-$n.gguf" --quiet
              rm -f "$work/q4km-$n.gguf" ;;
      gptq) measure gptq "$n" "$dir" "$qsweep" quantize --model "$dir" --method gptq \
              --calib wikitext2 --data-dir "$data" --n-samples 8 --seqlen 512 --out "$work/gptq-$n" --quiet
            rm -rf "$work/gptq-$n" ;;
      *) echo "run_scale.sh: unknown command $c" >&2; exit 2 ;;
    esac
  done
  [ "$keep" = 1 ] || rm -rf "$dir"
done
printf '%s\n' "${rows[@]}" | awk '
  { n[NR]=$1; c[NR]=$2; f[NR]=$3; kb[NR]=$4; s[NR]=$5 }
  END {
    printf "| layers | command | file MiB | peak RSS MiB | RSS/file | time s | RSS growth/layer MiB | growth / layer bytes |\n"
    printf "|---:|---|---:|---:|---:|---:|---:|---:|\n"
    for (i = 1; i <= NR; i++) {
      g = ""; r = ""
      for (j = i - 1; j >= 1; j--) if (c[j] == c[i]) {
        dl = n[i] - n[j]; if (dl > 0 && kb[i] > 0 && kb[j] > 0) {
          gm = (kb[i] - kb[j]) / 1024 / dl; lb = (f[i] - f[j]) / dl
          g = sprintf("%.0f", gm); r = sprintf("%.2f", gm * 1048576 / lb) }
        break }
      printf "| %d | %s | %.0f | %.0f | %.2f | %.1f | %s | %s |\n", n[i], c[i], f[i] / 1048576,
        kb[i] / 1024, kb[i] * 1024 / f[i], s[i], g, r
    }
  }'
