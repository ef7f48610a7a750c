#!/usr/bin/env bash
# A single-node Slurm cluster on 127.0.0.1 for the throughput benchmark: its own munged (own key
# and socket), slurmctld and slurmd, all state under one directory, so that it touches nothing
# of the machine's own configuration and leaves nothing running after `stop`.
#
#   slurm_cluster.sh start DIR    install slurm-wlm and munge if missing, start, wait until idle
#   slurm_cluster.sh stop DIR     stop what `start DIR` started
#
# After `start`, commands need SLURM_CONF=DIR/slurm.conf. Runs as root (slurmd must).
set -euo pipefail

action=${1:?usage: slurm_cluster.sh start|stop DIR}
dir=${2:?usage: slurm_cluster.sh start|stop DIR}
node=bench-node

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
    return
  fi
  echo "installing slurm-wlm and munge (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
}

start() {
  if [[ $(id -u) != 0 ]]; then
    echo "slurm_cluster.sh: slurmd runs jobs as their users and must run as root" >&2
    exit 2
  fi
  install_packages
  if [[ -f $dir/slurmctld.pid ]] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
    echo "slurm_cluster.sh: a cluster already runs from $dir; stop it first" >&2
    exit 1
  fi
  mkdir -p "$dir"/{state,spool,munge,logs,out}
  dir=$(cd "$dir" && pwd)
  chmod 700 "$dir/munge"
  [[ -f $dir/munge/munge.key ]] || mungekey --create --keyfile="$dir/munge/munge.key" >/dev/null
  chmod 600 "$dir/munge/munge.key"
  munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/logs/munged.log" \
    --seed-file="$dir/munge/munged.seed"

  local cpus ctld_port slurmd_port
  cpus=$(nproc)
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  # The tuning the issue prescribes: schedule at every submission and completion, with no batching
  # delay, looking at the whole queue; one oversubscribed node so that the 1,000 jobs never wait
  # for cores (FORCE:1000 lets every core take up to 1,000 jobs at once).
  cat >"$dir/slurm.conf" <<CONF
ClusterName=vitscale-bench
SlurmctldHost=$(hostname)(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/logs/slurmctld.log
SlurmdLogFile=$dir/logs/slurmd.log
SlurmctldDebug=error
MailProg=/bin/true
# A shared 2-core machine can keep slurmctld busy past the 10 s default.
MessageTimeout=60
SlurmdDebug=error
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,default_queue_depth=1000
MaxJobCount=100000
MinJobAge=600
# Ending a job's step waits for its processes to be gone; with hundreds of steps on 2 cores that
# took longer than the 60 s default, and Slurm then drains the node ("Kill task failed"), so the
# jobs still queued never ran.
UnkillableStepTimeout=600
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$(hostname) CPUs=$cpus State=UNKNOWN
PartitionName=bench Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:1000
CONF
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -i
  slurmd -N "$node"
  local state=""
  for _ in $(seq 1 50); do
    state=$(timeout 5 sinfo -h -N -o %T 2>/dev/null || true)
    [[ $state == idle ]] && return 0
    sleep 0.2
  done
  echo "slurm_cluster.sh: the node did not come up (state '$state'); see $dir/logs" >&2
  stop
  exit 1
}

# Job step daemons (slurmstepd) outlive slurmd; ours are the ones holding a socket in our spool.
step_daemons() {
  python3 - "$dir/spool" <<'PY'
import os, sys
spool = os.path.realpath(sys.argv[1]) + "/"
inodes = set()
with open("/proc/net/unix") as table:
    for line in table.readlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[7].startswith(spool):
            inodes.add(f"socket:[{fields[6]}]")
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
            print(pid)
    except OSError:
        pass
PY
}

stop() {
  local pidfile pid
  if [[ -f $dir/slurm.conf ]] && [[ -f $dir/slurmctld.pid ]]; then
    SLURM_CONF=$dir/slurm.conf timeout 20 scancel --quiet --user=root 2>/dev/null || true
  fi
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  [[ -d $dir/spool ]] || return 0
  for pid in $(step_daemons); do kill -9 "$pid" 2>/dev/null || true; done
}

case $action in
  start) start ;;
  stop) stop ;;
  *) echo "usage: slurm_cluster.sh start|stop DIR" >&2; exit 2 ;;
esac
