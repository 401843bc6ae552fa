#!/usr/bin/env bash
# Packs what the CUDA checks need into .device/ (git-ignored) so a GPU machine that has the
# CUDA toolkit but not our Debian packages can run them: portable (no -march=native) builds of
# the twin tests, the GPU benchmarks and qsweep, their non-CUDA shared libraries, and run.sh.
#   scripts/device_bundle.sh                  here (builds ./build-device, fills .device/)
#   bash .device/run.sh                       there (what the device tool runs; carry .device)
# run.sh writes every log and summary.json under $OUT (or .device/out); without a usable GPU it
# runs to completion with the CUDA rows marked skipped (and why).
# Environment: BUNDLE_BUILD_DIR=build reuses an existing CUDA-enabled build (a local dry run:
# its binaries may use this CPU's instructions, so do not ship them), BUNDLE_SKIP_SETUP=1 skips
# scripts/setup.sh (packages already installed), BUNDLE_JOBS=N build jobs (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || {
  echo "device_bundle: nvcc not found; the bundle needs the CUDA backend compiled" >&2; exit 2; }
export PATH=$PATH:/usr/local/cuda/bin
bd=${BUNDLE_BUILD_DIR:-build-device}
[ -n "${BUNDLE_SKIP_SETUP:-}" ] || scripts/setup.sh >/dev/null  # the Debian packages
if [ "$bd" = build-device ]; then
  cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release -DQSWEEP_NATIVE=OFF \
    -DQSWEEP_BUILD_BENCH=ON >/dev/null
fi
targets=(test_backends test_kquants quantizers_test test_model test_eval qsweep bench_backends
         bench_gptq_device)
cmake --build "$bd" -j "${BUNDLE_JOBS:-$(nproc)}" --target "${targets[@]}"
grep -q "QSWEEP_HAVE_CUDA:INTERNAL=ON\|CMAKE_CUDA_COMPILER:STRING=/\|CMAKE_CUDA_COMPILER:FILEPATH=/" \
  "$bd/CMakeCache.txt" || { echo "device_bundle: $bd has no CUDA backend" >&2; exit 2; }

rm -rf .device && mkdir -p .device/bin .device/lib
for t in "${targets[@]}"; do
  f=$(find "$bd" -name "$t" -type f -perm -u+x | head -1)
  [ -n "$f" ] || { echo "device_bundle: $t not built" >&2; exit 2; }
  strip -o ".device/bin/$t" "$f"
done
# Shared libraries from Debian packages (not libc/libstdc++, not CUDA: the GPU image has those).
for b in .device/bin/*; do
  ldd "$b" | awk '/=> \// {print $3}'
done | sort -u | grep -Ev '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux)[.-]|libcu|libnv' \
  | while read -r lib; do cp -L "$lib" .device/lib/; done

cat > .device/run.sh <<'RUN'
#!/usr/bin/env bash
# On the GPU machine (or here, for a dry run), from the repository root (shared/ beside or
# inside it). $OUT gets summary.json (each row {name, status: pass|fail|skipped, detail}), the
# GPTQ, perplexity and benchmark JSON, and logs.tar.gz with every log (the device tool brings
# back at most 8 files). Exit 1 when a row failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
final=${OUT:-$here/out}; mkdir -p "$final"
out=$(mktemp -d)
export LD_LIBRARY_PATH=$here/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for d in shared ../shared; do [ -d "$d/models/tinycode" ] && export QSWEEP_SHARED=$(cd "$d" && pwd); done
export QSWEEP_DATA=${QSWEEP_SHARED:-}/data
rows=()
row() {  # name status detail
  local d=${3//\\/\\\\}; d=${d//\"/\\\"}
  rows+=("{\"name\": \"$1\", \"status\": \"$2\", \"detail\": \"$d\"}")
  printf '%-28s %-8s %s\n' "$1" "$2" "$3"
}
gpu=""
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  row gpu pass "$gpu"
else
  echo "no GPU here (nvidia-smi absent or finds none)" | tee "$out/gpu.txt"
  row gpu skipped "no GPU: the CUDA rows are skipped"
fi
rc=0
# Twin tests: each CUDA case skips itself, saying why, when no device is usable.
for t in test_backends test_kquants quantizers_test test_model test_eval; do
  if "$here/bin/$t" --gtest_output="json:$out/$t.json" >"$out/$t.log" 2>&1; then st=pass; else st=fail; rc=1; fi
  row "$t" $st "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ test' "$out/$t.log" | tr '\n' ' ')$(grep -m1 -o 'no CUDA: .*' "$out/$t.log")"
done
grep -E 'FAILED|Failure' -A4 "$out"/test_*.log "$out"/quantizers_test.log | head -60
# tinycode perplexity on each device.
for dev in cpu cuda; do
  if [ $dev = cuda ] && [ -z "$gpu" ]; then row "perplexity_$dev" skipped "no GPU"; continue; fi
  if [ -z "${QSWEEP_SHARED:-}" ]; then row "perplexity_$dev" skipped "no shared/models/tinycode"; continue; fi
  if "$here/bin/qsweep" eval --model tinycode --dataset wikitext2 --ctx 256 --max-tokens 65536 \
      --device $dev --json --no-progress >"$out/ppl_$dev.json" 2>"$out/ppl_$dev.err"; then
    row "perplexity_$dev" pass "$(grep -E '"(perplexity|tokens_per_second|device)"' "$out/ppl_$dev.json" | tr -d '\n ')"
  else
    rc=1; row "perplexity_$dev" fail "$(tail -1 "$out/ppl_$dev.err")"
  fi
done
# Issue #16: the same perplexity with every layer streamed (--max-device-memory 4M: tinycode's
# F16 layers take 1.5 MiB, so two slots and no resident layer) must equal the resident CUDA
# run's perplexity exactly (same ops, same order); tokens/s of cpu, resident and streamed.
if [ -z "$gpu" ]; then
  row perplexity_cuda_streamed skipped "no GPU"
elif [ -z "${QSWEEP_SHARED:-}" ]; then
  row perplexity_cuda_streamed skipped "no shared/models/tinycode"
elif "$here/bin/qsweep" eval --model tinycode --dataset wikitext2 --ctx 256 --max-tokens 65536 \
    --device cuda --max-device-memory 4M --json --no-progress >"$out/ppl_cuda_streamed.json" \
    2>"$out/ppl_cuda_streamed.err"; then
  p_res=$(grep -o '"perplexity": *[0-9.e+-]*' "$out/ppl_cuda.json" 2>/dev/null)
  p_str=$(grep -o '"perplexity": *[0-9.e+-]*' "$out/ppl_cuda_streamed.json")
  tps=$(for f in ppl_cpu ppl_cuda ppl_cuda_streamed; do
    echo -n "$f:$(grep -o '"tokens_per_second": *[0-9.e+-]*' "$out/$f.json" 2>/dev/null | sed 's/.*: *//') "; done)
  if [ -n "$p_res" ] && [ "$p_res" = "$p_str" ]; then st=pass; else st=fail; rc=1; fi
  row perplexity_cuda_streamed $st "resident $p_res streamed $p_str; tokens/s $tps"
else
  rc=1; row perplexity_cuda_streamed fail "$(tail -1 "$out/ppl_cuda_streamed.err")"
fi
# Resident and streamed weights vs the CPU on random models (the shared test's CUDA half).
if [ -z "$gpu" ]; then
  row device_weights_cuda skipped "no GPU"
elif "$here/bin/test_model" --gtest_filter='*DeviceWeights*' >"$out/device_weights.log" 2>&1; then
  row device_weights_cuda pass "$(grep -E '^\[  (PASSED|SKIPPED)' "$out/device_weights.log" | tr '\n' ' ')"
else
  rc=1; row device_weights_cuda fail "$(grep -m1 -A3 Failure "$out/device_weights.log" | tr '\n"' '  ')"
fi
# KV-cache decode, CPU vs CUDA (device-resident cache): token by token vs the CPU forward pass.
if [ -z "$gpu" ]; then
  row decode_cpu_vs_cuda skipped "no GPU"
elif "$here/bin/test_model" --gtest_filter='*DeviceResidentCache*' >"$out/decode.log" 2>&1; then
  row decode_cpu_vs_cuda pass "$(grep -E '^\[  PASSED' "$out/decode.log" | tr '\n' ' ')"
else
  rc=1; row decode_cpu_vs_cuda fail "$(grep -m1 -A3 Failure "$out/decode.log" | tr '\n"' '  ')"
fi
# AWQ of tinycode on each device (the searches on the backend): same file size, logs kept.
for dev in cpu cuda; do
  if [ $dev = cuda ] && [ -z "$gpu" ]; then row "awq_$dev" skipped "no GPU"; continue; fi
  if [ -z "${QSWEEP_SHARED:-}" ]; then row "awq_$dev" skipped "no shared/models/tinycode"; continue; fi
  if "$here/bin/qsweep" quantize --model tinycode --method awq --calib code --n-samples 16 \
      --seqlen 128 --device $dev --out "${TMPDIR:-/tmp}/qsweep-bundle-awq-$dev" --json --quiet >"$out/awq_$dev.json" \
      2>"$out/awq_$dev.err"; then
    row "awq_$dev" pass "$(grep -E '"(device|quantize)"' "$out/awq_$dev.json" | tr -d '\n ')"
  else
    rc=1; row "awq_$dev" fail "$(tail -1 "$out/awq_$dev.err")"
  fi
done
# GPTQ of a random 2-layer model, CPU twin vs CUDA (identical codes within 1%, loss 1e-3).
if "$here/bin/bench_gptq_device" --layers 2 --hidden 512 --inter 1376 --tokens 2048 --act-order \
    >"$out/gptq_small.json" 2>"$out/gptq_small.log"; then st=pass; else st=fail; rc=1; fi
row gptq_2layer_cpu_vs_cuda $st "$(grep -E '"(cuda|cpu_total_s|cuda_total_s|ok)"' "$out/gptq_small.json" | tr -d '\n ')"
# One Llama-2-7B-shaped layer on CUDA alone (its CPU time is bench_gptq's row).
if [ -n "$gpu" ]; then
  if "$here/bin/bench_gptq_device" --layers 1 --hidden 4096 --inter 11008 --tokens 2048 --no-cpu \
      >"$out/gptq_7b_layer.json" 2>"$out/gptq_7b_layer.log"; then st=pass; else st=fail; rc=1; fi
  row gptq_7b_layer_cuda $st "$(grep -E '"cuda_total_s"' "$out/gptq_7b_layer.json" | tr -d '\n ')"
else
  row gptq_7b_layer_cuda skipped "no GPU"
fi
# GPU rows, and the CPU twin's GEMM/forward rows for comparison on the same machine.
if [ -n "$gpu" ]; then
  if "$here/bin/bench_backends" --benchmark_min_time=0.3 \
      --benchmark_filter='^(BM_Gemm|BM_ResidentForward7BShaped|BM_HessianAndCholesky/dev:1)' \
      --benchmark_out="$out/bench.json" --benchmark_out_format=json >"$out/bench.txt" 2>&1; then st=pass; else st=fail; rc=1; fi
  grep -E "^BM_" "$out/bench.txt"
  row bench_backends $st "see bench.json"
else
  row bench_backends skipped "no GPU"
fi
{ echo "{\"gpu\": \"$gpu\", \"ok\": $([ $rc = 0 ] && echo true || echo false), \"rows\": ["
  for i in "${!rows[@]}"; do [ "$i" -gt 0 ] && echo ","; printf '  %s' "${rows[$i]}"; done
  echo; echo "]}"; } >"$out/summary.json"
for f in summary.json gptq_small.json gptq_7b_layer.json ppl_cpu.json ppl_cuda.json \
    ppl_cuda_streamed.json bench.json; do
  [ -f "$out/$f" ] && cp "$out/$f" "$final/"
done
tar -czf "$final/logs.tar.gz" -C "$out" .
rm -rf "$out"
echo "summary: $final/summary.json, logs: $final/logs.tar.gz (exit $rc)"
exit $rc
RUN
chmod +x .device/run.sh
du -sh .device; ls .device/bin .device/lib
