#!/usr/bin/env bash
# Packs what the CUDA checks need into .device/ (git-ignored) so a GPU machine that has the
# CUDA toolkit but not our Debian packages can run them: portable (no -march=native) builds of
# the twin tests, a GPU benchmark and qsweep, their non-CUDA shared libraries, and run.sh.
#   scripts/device_bundle.sh                  here (builds ./build-device, fills .device/)
#   bash .device/run.sh                       there (what the device tool runs; carry .device)
# run.sh writes everything it measures under $OUT (or .device/out) and prints a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || {
  echo "device_bundle: nvcc not found; the bundle needs the CUDA backend compiled" >&2; exit 2; }
export PATH=$PATH:/usr/local/cuda/bin
scripts/setup.sh >/dev/null   # the Debian packages (and a release build, used for nothing here)
cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release -DQSWEEP_NATIVE=OFF \
  -DQSWEEP_BUILD_BENCH=ON >/dev/null
targets=(test_backends test_model test_eval qsweep bench_backends)
cmake --build build-device -j "$(nproc)" --target "${targets[@]}"
grep -q "QSWEEP_HAVE_CUDA:INTERNAL=ON\|CMAKE_CUDA_COMPILER:STRING=/" build-device/CMakeCache.txt || {
  echo "device_bundle: build-device has no CUDA backend" >&2; exit 2; }

rm -rf .device && mkdir -p .device/bin .device/lib
for t in "${targets[@]}"; do
  f=$(find build-device -name "$t" -type f -perm -u+x | head -1)
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
# On the GPU machine, from the repository root (shared/ beside or inside it).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=$here/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for d in shared ../shared; do [ -d "$d/models/tinycode" ] && export QSWEEP_SHARED=$(cd "$d" && pwd); done
export QSWEEP_DATA=${QSWEEP_SHARED:-}/data
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
rc=0
for t in test_backends test_model test_eval; do
  "$here/bin/$t" --gtest_output="json:$out/$t.json" >"$out/$t.log" 2>&1 || rc=1
  echo "$t: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$out/$t.log" | tr '\n' ' ')"
done
grep -E 'FAILED|Failure' -A4 "$out"/test_*.log | head -60
for dev in cpu cuda; do
  "$here/bin/qsweep" eval --model tinycode --dataset wikitext2 --ctx 256 --max-tokens 65536 \
    --device $dev --json --no-progress >"$out/ppl_$dev.json" 2>"$out/ppl_$dev.err" ||
    { rc=1; cat "$out/ppl_$dev.err"; }
  echo "perplexity $dev: $(grep -E '"(perplexity|tokens_per_second|device)"' "$out/ppl_$dev.json" | tr -d '\n ')"
done
# GPU rows, and the CPU twin's GEMM/forward rows for comparison on the same machine.
"$here/bin/bench_backends" --benchmark_min_time=0.3 \
  --benchmark_filter='^(BM_Gemm|BM_ResidentForward7BShaped|BM_HessianAndCholesky/dev:1)' \
  --benchmark_out="$out/bench.json" --benchmark_out_format=json >"$out/bench.txt" 2>&1 || rc=1
grep -E "^BM_" "$out/bench.txt"
exit $rc
RUN
chmod +x .device/run.sh
du -sh .device; ls .device/bin .device/lib
