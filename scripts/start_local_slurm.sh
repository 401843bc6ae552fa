#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine for the `slurm`-labelled tests:
# a munge key and munged, slurmctld and slurmd with a slurm.conf whose state, spool, logs
# and sockets live under one directory. Run as root. Prints the environment to use:
#   eval "$(scripts/start_local_slurm.sh /tmp/qsweep-slurm)"   # exports SLURM_CONF, QSWEEP_SLURM_TEST
#   scripts/start_local_slurm.sh --stop /tmp/qsweep-slurm
# The node is "localhost" with this machine's CPUs and memory (no GPUs: a `gpus:` resource
# cannot be scheduled here), select/cons_tres, proctrack/linuxproc, task/none, no accounting daemon
# (sacct then answers from the job completion log, jobcomp/filetxt).
set -euo pipefail
if [ "${1:-}" = "--stop" ]; then
  dir=${2:?usage: start_local_slurm.sh --stop DIR}
  for p in slurmd slurmctld munged; do
    [ -f "$dir/$p.pid" ] && kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
  done
  exit 0
fi
dir=${1:-/tmp/qsweep-slurm}
die() { echo "start_local_slurm: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd runs jobs as their user)"
for b in munged slurmctld slurmd sbatch squeue scontrol; do
  command -v "$b" >/dev/null || die "$b not found: apt-get install slurm-wlm munge (scripts/setup.sh)"
done
mkdir -p "$dir"/{state,spool,log,munge}
dir=$(cd "$dir" && pwd)
chmod 700 "$dir/munge"

# munge: a key of our own and a socket under $dir (the system munged is left alone).
[ -f "$dir/munge/munge.key" ] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$dir/munge/munge.key"
sock="$dir/munge/munge.socket"
if ! [ -S "$sock" ] || ! munge -n -S "$sock" >/dev/null 2>&1; then
  munged --force -S "$sock" --key-file="$dir/munge/munge.key" --pid-file="$dir/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" || die "munged failed: $dir/log/munged.log"
fi

cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2/1024*0.9)}' /proc/meminfo)
cat > "$dir/slurm.conf" <<CONF
ClusterName=qsweeptest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${QSWEEP_SLURMCTLD_PORT:-16817}
SlurmdPort=${QSWEEP_SLURMD_PORT:-16818}
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
KillWait=2
InactiveLimit=0
SlurmdTimeout=60
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"
if ! scontrol ping 2>/dev/null | grep -q UP; then
  slurmctld -i -f "$SLURM_CONF" || die "slurmctld failed: $dir/log/slurmctld.log"
fi
[ -f "$dir/slurmd.pid" ] && kill -0 "$(cat "$dir/slurmd.pid")" 2>/dev/null || \
  slurmd -N localhost -f "$SLURM_CONF" || die "slurmd failed: $dir/log/slurmd.log"
for _ in $(seq 1 60); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
  case "$state" in idle*|mixed*|allocated*) break ;; esac
  sleep 0.5
done
case "${state:-}" in
  idle*|mixed*|allocated*) ;;
  *) die "node not idle (state '${state:-none}'): see $dir/log/slurmctld.log and $dir/log/slurmd.log" ;;
esac
echo "export SLURM_CONF=$SLURM_CONF QSWEEP_SLURM_TEST=1"
