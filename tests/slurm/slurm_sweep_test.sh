#!/usr/bin/env bash
# `qsweep run --executor slurm` on a real (one-node) Slurm cluster, against the local executor:
#   1. a small sweep through Slurm gives results.json values identical to a local run's;
#   2. a calibration set that is too short fails its node, and Slurm cancels exactly its two
#      descendants (--kill-on-invalid-dep): "0 ran, 7 cached, 1 failed, 2 skipped";
#   3. two --detach runs on one DIR submit each node once; `cancel` then `run` completes the
#      sweep, submitting only what was missing (nothing done is recomputed);
#   4. a job killed with scancel mid-run is a failed node, and the next run re-runs it;
#   5. Ctrl-C (SIGINT) while waiting exits 130, leaves the jobs alone and names `qsweep cancel`.
# Needs a cluster (scripts/start_local_slurm.sh) and QSWEEP_SLURM_TEST=1; without the variable
# it skips (exit 77) with a message; with it, a cluster that does not answer fails the test.
# usage: slurm_sweep_test.sh QSWEEP_BINARY SHARED_DIR
set -euo pipefail
qsweep=$1
shared=$2
if [ -z "${QSWEEP_SLURM_TEST:-}" ]; then
  echo "SKIPPED: no Slurm cluster for this test; start one with"
  echo '  eval "$(sudo scripts/start_local_slurm.sh /tmp/qsweep-slurm)"   (sets QSWEEP_SLURM_TEST=1)'
  exit 77
fi
fail() { echo "FAIL: $*" >&2; exit 1; }
squeue -h >/dev/null || fail "QSWEEP_SLURM_TEST is set but squeue cannot reach a cluster (SLURM_CONF=${SLURM_CONF:-unset})"
work=$(mktemp -d /tmp/qsweep-slurm-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
data="--data-dir=$shared/data"
printf 'def f():\n    return 1\n' > "$work/tiny.txt"
sweep() {  # $1 = extra calibration line, $2 = extra variant line
  cat <<YAML
name: slurmtest
model: $shared/models/tinycode
calibration:
  code: {source: code, n_samples: 4, seqlen: 128, seed: 0}
$1
variants:
  - {method: rtn, bits: 4, group_size: 128}
  - {method: gptq, bits: 4, group_size: 64, calibration: code}
$2
eval:
  - {task: perplexity, dataset: code-heldout, protocol: chunks, ctx: 128, max_tokens: 1024}
resources:
  default: {cpus: 1, mem: 1G, time: "10:00"}
report:
  formats: [md, csv, json]
YAML
}
sweep "" "" > "$work/good.yaml"
sweep "  short: {source: $work/tiny.txt, n_samples: 4, seqlen: 128}" \
  "  - {method: gptq, bits: 4, group_size: 64, calibration: short}" > "$work/bad.yaml"

# The values of results.json (variant id, metric id → value, mean_nll, scored tokens; size).
values() {
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for v in sorted(r["variants"], key=lambda v: v["id"]):
    print(v["id"], v["status"], v["size_bytes"], v.get("bits_per_weight"))
    for m, x in sorted((v.get("metrics") or {}).items()):
        print(" ", m, repr(x.get("value")), repr(x.get("mean_nll")), x.get("scored_tokens"))
PY
}
same_values() {
  diff <(values "$work/local/results.json") <(values "$1/results.json") ||
    fail "$1/results.json differs from the local run's"
}
run_slurm() {  # DIR, YAML, extra flags...; prints the output, keeps the exit status in $rc
  local out=$1 yaml=$2
  shift 2
  set +e
  timeout 600 "$qsweep" run "$yaml" --out "$out" "$data" --executor slurm --no-progress "$@" \
    > "$work/last.txt" 2>&1
  rc=$?
  set -e
  cat "$work/last.txt"
  [ $rc -ne 124 ] || fail "qsweep run did not finish in 600 s"
}
wait_idle() {  # until none of DIR's jobs is queued or running
  for _ in $(seq 1 300); do
    "$qsweep" status "$1" | grep -qE '^  (queued|running) ' || return 0
    sleep 1
  done
  fail "jobs of $1 still queued or running after 300 s"
}
nodes=$("$qsweep" plan "$work/good.yaml" --out "$work/none" "$data" | grep -c '\[to run\]')

echo "== 1. local vs slurm"
"$qsweep" run "$work/good.yaml" --out "$work/local" "$data" --no-progress --jobs 2 > /dev/null
start=$(date +%s)
run_slurm "$work/s1" "$work/good.yaml"
[ $rc -eq 0 ] || fail "slurm run exit $rc"
grep -q "^$nodes jobs submitted" "$work/last.txt" || fail "expected $nodes jobs"
grep -q "^$nodes ran, 0 cached, 0 failed, 0 skipped" "$work/last.txt" || fail "expected $nodes ran"
same_values "$work/s1"
echo "slurm: $nodes jobs in $(( $(date +%s) - start )) s, values identical to the local run"
for f in "$work"/s1/logs/*.log; do grep -q "qsweep run-node" "$f" || fail "$f: no job output"; done
[ "$(grep -c '"event":"submitted"' "$work/s1/events.jsonl")" -eq "$nodes" ] || fail "submitted events"

echo "== 2. a failing node cancels exactly its descendants"
run_slurm "$work/s1" "$work/bad.yaml"
[ $rc -eq 3 ] || fail "expected exit 3 (failed nodes), got $rc"
grep -q "^3 jobs submitted" "$work/last.txt" || fail "expected 3 jobs (calib:short and its 2 descendants)"
grep -q "^0 ran, $nodes cached, 1 failed, 2 skipped" "$work/last.txt" || fail "wrong summary"
grep -q '"event":"failed","job":"[0-9]*","node":"calib:short"' "$work/s1/events.jsonl" ||
  fail "calib:short not failed in events.jsonl"
grep -q "has 9 tokens" "$work/s1/events.jsonl" || fail "the failure does not carry the log tail"
status=$("$qsweep" status "$work/s1")
echo "$status"
[ "$(echo "$status" | grep -c '^  failed ')" -eq 3 ] || fail "status: 3 failed expected"
echo "$status" | grep -q '^  failed  quantize:gptq-b4-g64-short .*CANCELLED' || fail "descendant not cancelled"
echo "$status" | grep -q '^  failed  calib:short .*(Slurm: FAILED)' || fail "calib:short state"

echo "== 3. two detached runs submit once; cancel, then run submits only what is missing"
run_slurm "$work/s3" "$work/good.yaml" --detach
grep -q "^$nodes jobs submitted, 0 already" "$work/last.txt" || fail "first detach"
run_slurm "$work/s3" "$work/good.yaml" --detach
grep -qE "^0 jobs submitted, [1-9][0-9]* already queued or running" "$work/last.txt" ||
  echo "(every job had already finished before the second submission)"
grep -q "^0 jobs submitted" "$work/last.txt" || fail "second run submitted nodes twice"
for _ in $(seq 1 300); do  # cancel once some nodes are done and others not
  "$qsweep" status "$work/s3" | grep -q '^  done ' && break
  sleep 0.1
done
"$qsweep" cancel "$work/s3"
wait_idle "$work/s3"
done_before=$(find "$work/s3/store" -mindepth 1 -maxdepth 1 -type d ! -name '.tmp-*' | wc -l)
stamp_before=$(cd "$work/s3/store" && find . -mindepth 1 -maxdepth 1 -type d ! -name '.tmp-*' -printf '%f %T@\n' | sort)
run_slurm "$work/s3" "$work/good.yaml"
[ $rc -eq 0 ] || fail "run after cancel: exit $rc"
[ "$done_before" -gt 0 ] || fail "nothing was done before the cancel"
grep -q "^$((nodes - done_before)) jobs submitted" "$work/last.txt" ||
  fail "expected $((nodes - done_before)) jobs after cancel ($done_before done before)"
stamp_after=$(cd "$work/s3/store" &&
  for d in $(echo "$stamp_before" | cut -d' ' -f1); do find "$d" -maxdepth 0 -printf '%f %T@\n'; done | sort)
[ "$stamp_before" = "$stamp_after" ] || fail "an artifact done before the cancel was rewritten or lost"
same_values "$work/s3"
echo "cancel + run: $done_before were done, $((nodes - done_before)) submitted, values identical"

echo "== 4. a job killed with scancel mid-run is re-run on resume"
run_slurm "$work/s4" "$work/good.yaml" --detach
victim=""
for _ in $(seq 1 600); do
  victim=$(squeue -h -t RUNNING -o '%i %j' | { grep 'qsweep:slurmtest:' || true; } | head -1 | cut -d' ' -f1)
  [ -n "$victim" ] && break
  sleep 0.05
done
[ -n "$victim" ] || fail "no job seen running"
scancel "$victim"
wait_idle "$work/s4"
status=$("$qsweep" status "$work/s4")
echo "$status"
echo "$status" | grep -q "^  failed  .* job $victim (Slurm: CANCELLED)" ||
  fail "the scancelled job $victim is not reported failed"
run_slurm "$work/s4" "$work/good.yaml"
[ $rc -eq 0 ] || fail "resume after scancel: exit $rc"
grep -qE "^[1-9][0-9]* jobs submitted" "$work/last.txt" || fail "nothing resubmitted"
same_values "$work/s4"

echo "== 5. Ctrl-C while waiting leaves the jobs running and says how to cancel them"
"$qsweep" run "$work/good.yaml" --out "$work/s5" "$data" --executor slurm --no-progress \
  > "$work/int.txt" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  [ "$(grep -c '"event":"submitted"' "$work/s5/events.jsonl" 2>/dev/null)" = "$nodes" ] && break
  sleep 0.05
done
sleep 0.3
kill -INT $pid
set +e
wait $pid
rc=$?
set -e
cat "$work/int.txt"
[ $rc -eq 130 ] || fail "Ctrl-C: exit $rc, expected 130"
grep -q "^interrupted: jobs keep running; .*qsweep cancel $work/s5" "$work/int.txt" ||
  fail "Ctrl-C: no cancel hint"
! grep -q '"event":"failed"' "$work/s5/events.jsonl" || fail "Ctrl-C recorded a failure"
"$qsweep" cancel "$work/s5"
echo "PASS"
