#!/usr/bin/env bash
# Throughput: N trivial jobs (payload /bin/true) run to completion through vitscale (coordinator
# + one local agent, which starts a one-rank job without mpirun: docs/agent.md) and through a
# single-node Slurm cluster (`sbatch --wrap /bin/true`, one sbatch per job), timed from the first
# submission to the last completion. The baseline, measured first in the same run (median of
# three), is the raw rate of this machine: vitscale-spawn-baseline starts the payload with
# posix_spawn and reaps it with waitpid, as many at once as the agent has slots. Prints jobs/s
# for each, vitscale as a share of the raw rate, the agent's CPU per job, and vitscale / Slurm.
# Benchmarks are run by hand, not by `make test`.
#
#   bench/orchestration/run_throughput.sh [--jobs 1000] [--slots 32] [--systems vitscale,slurm]
#                                         [--keep DIR]
#
# --slots: the agent's slots, so how many jobs run at once (Slurm's partition is oversubscribed
#   and runs all it is given). --systems: run only one of the two (the baseline always runs).
# --keep DIR: work in DIR (flagged +T, below) and leave it; vitscale's run is in DIR/vitscale.*.
# BUILD_DIR (default build) holds bin/vitscale, bin/vitscale-coordinator, bin/vitscale-agent and
# bin/vitscale-spawn-baseline.
# Slurm needs root; slurm_cluster.sh installs slurm-wlm and munge with apt-get if missing.
set -Eeuo pipefail
trap 'echo "run_throughput.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-build}
[[ $build = /* ]] || build=$root/$build
jobs=1000
slots=32
systems=vitscale,slurm
keep=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --jobs) jobs=$2; shift 2 ;;
    --slots) slots=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "run_throughput.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
for binary in vitscale vitscale-coordinator vitscale-agent vitscale-spawn-baseline; do
  if [[ ! -x $build/bin/$binary ]]; then
    echo "run_throughput.sh: $build/bin/$binary is missing; build it (cmake --build $build --target $binary) or set BUILD_DIR" >&2
    exit 2
  fi
done
payload=/bin/true
wants() { [[ ,$systems, == *,$1,* ]]; }

work=${keep:-$(mktemp -d /tmp/vitscale-throughput.XXXXXX)}
mkdir -p "$work"
# The agent creates a run folder, a log and a spec per job. On ext4 without a journal (this
# project's machines) the inode allocator passes over every inode freed in the last 60 s, or
# 360 s while its inode table block is dirty, at the cost of a buffer lookup each: after a
# previous run's `rm -rf`, or while compilers churn /tmp, each creation cost 0.1-0.2 ms
# (docs/benchmarks.md, "The run's folder away from recent deletions"). ext4 places each
# subfolder of a folder flagged +T ("top of a directory hierarchy") in a block group with few
# folders, looked for from a hash of its name: the run's folder below gets a fresh name, so its
# files are allocated away from earlier deletions. Where the flag is refused, the folder is used
# as it is; the cost of creating files there is printed with each run either way.
chattr +T "$work" 2>/dev/null || true
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -d $work/slurm ]] && bash "$here/slurm_cluster.sh" stop "$work/slurm" || true
  [[ -n $keep ]] || rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }

# The sweep: N distinct jobs (seeds 0..N-1) of the smallest registered model.
sweep_file=$work/sweep.yaml
{
  echo "name: throughput"
  echo "recipe: small-images"
  echo "pretrain: {model: ViT-Mu/7, dataset: fashion-mnist/0-4, subset: 500, epochs: 1}"
  echo "grid:"
  printf '  seed: [%s]\n' "$(seq -s ', ' 0 $((jobs - 1)))"
  echo "resources: {ranks: 1, gpus_per_rank: 0}"
} >"$sweep_file"

# run_vitscale NAME: sets `seconds` to the time from submission to the last success.
run_vitscale() {
  local name=$1 dir
  dir=$(mktemp -d "$work/$1.XXXXXX")
  # What a file or folder costs to create where the agent will create its own: 300 of each.
  local creation_us
  creation_us=$(python3 -c '
import os, sys, time
probe = sys.argv[1]
os.mkdir(probe)
start = time.perf_counter()
for i in range(300):
    os.mkdir(f"{probe}/d{i}")
    os.close(os.open(f"{probe}/f{i}", os.O_CREAT | os.O_WRONLY, 0o600))
print(f"{(time.perf_counter() - start) / 600 * 1e6:.0f}")' "$dir/creation-probe")
  "$build/bin/vitscale-coordinator" --state-dir "$dir/state" --listen 127.0.0.1:0 \
    >"$dir/coordinator.log" 2>&1 &
  local coordinator=$!
  pids+=("$coordinator")
  for _ in $(seq 1 100); do [[ -s $dir/state/address ]] && break; sleep 0.05; done
  local url token
  url=$(cat "$dir/state/address")
  token=$(cat "$dir/state/token")
  local api=(curl -sf -H "Authorization: Bearer $token")
  # The agent's own credential (docs/security.md), as `vitscale agents issue bench-agent` makes.
  "${api[@]}" -X POST -d '{"host": "bench-agent"}' "$url/api/v1/agents/credentials" |
    jq -r .token >"$dir/agent.token"
  "$build/bin/vitscale-agent" --coordinator "$url" --token-file "$dir/agent.token" \
    --host bench-agent --slots "$slots" --gpus 0 --work-dir "$dir/agent" \
    --runs-dir "$dir/state/runs" --train-command "$payload" >"$dir/agent.log" 2>&1 &
  local agent=$!
  pids+=("$agent")
  for _ in $(seq 1 100); do
    [[ $("${api[@]}" "$url/api/v1/agents" | jq '[.agents[] | select(.alive)] | length') == 1 ]] && break
    sleep 0.05
  done

  local start submitted end added end_load
  start=$(now)
  added=$("${api[@]}" -X POST -H 'Content-Type: application/yaml' --data-binary @"$sweep_file" \
    "$url/api/v1/sweeps" | jq .jobs_added)
  submitted=$(now)
  if [[ $added != "$jobs" ]]; then
    echo "run_throughput.sh: the coordinator added $added jobs, not $jobs" >&2
    return 1
  fi
  # One process waits, polling two small requests every 0.2 s: a curl and two jq runs every
  # 0.1 s took about a sixth of the CPU while the jobs ran. The end is when the coordinator
  # recorded the last job's success (its row's updated_at, read from the database afterwards),
  # so the polling interval does not round it.
  if ! VITSCALE_COORDINATOR=$url VITSCALE_TOKEN_FILE=$dir/state/token \
    "$build/bin/vitscale" watch --sweep throughput --json --interval 0.2 >"$dir/watch.log"; then
    echo "run_throughput.sh: not every job succeeded (vitscale watch: $(tail -c 300 "$dir/watch.log")); see $dir (rerun with --keep DIR)" >&2
    return 1
  fi
  end=$(python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT max(updated_at) FROM jobs WHERE state = 'succeeded'\").fetchone()[0])" "$dir/state/vitscale.db")
  end_load=$(cut -d' ' -f1-3 /proc/loadavg)
  # CPU seconds (user + system) each daemon used over the run: /proc/PID/stat fields 14 and 15.
  local ticks coordinator_cpu agent_cpu
  ticks=$(getconf CLK_TCK)
  coordinator_cpu=$(awk -v t="$ticks" '{printf "%.2f", ($14 + $15) / t}' "/proc/$coordinator/stat")
  agent_cpu=$(awk -v t="$ticks" '{printf "%.2f", ($14 + $15) / t}' "/proc/$agent/stat")
  kill "$agent" "$coordinator"
  wait "$agent" "$coordinator" 2>/dev/null || true
  pids=()
  echo "  $name: submit $(elapsed "$start" "$submitted") s, all $jobs succeeded after $(elapsed "$start" "$end") s"
  echo "    CPU: coordinator $coordinator_cpu s, agent $agent_cpu s (not counting the jobs);" \
    "per job: coordinator $(per_job_ms "$coordinator_cpu") ms, agent $(per_job_ms "$agent_cpu") ms"
  echo "    load average at the end (1, 5, 15 min): $end_load;" \
    "creating a file or folder in its folder before the run: $creation_us us"
  python3 "$here/attempt_timeline.py" "$dir/state/vitscale.db" "$start"
  seconds=$(elapsed "$start" "$end")
}

run_slurm_jobs() {
  local dir=$work/slurm
  bash "$here/slurm_cluster.sh" start "$dir" </dev/null >"$work/slurm-start.log" 2>&1 || {
    cat "$work/slurm-start.log" >&2
    return 1
  }
  export SLURM_CONF=$dir/slurm.conf
  local start submitted end i states retries=0
  cd "$dir/out"
  start=$(now)
  for ((i = 0; i < jobs; ++i)); do
    # A busy slurmctld lets an sbatch time out ("Socket timed out on send/recv operation"), as a
    # loaded cluster does to its users, who submit again. The timed-out job may have been taken
    # all the same, so Slurm may run a few more than asked: they are counted below.
    until sbatch --quiet --output=/dev/null --wrap "$payload"; do
      retries=$((retries + 1))
      if ((retries > 20)); then
        echo "run_throughput.sh: sbatch failed $retries times" >&2
        return 1
      fi
    done
  done
  submitted=$(now)
  local polls=0
  while [[ -n $(squeue -h -o %i | head -1) ]]; do
    # A drained node runs nothing more: say so rather than wait forever.
    if ((++polls % 20 == 0)) && [[ $(sinfo -h -N -o %T) == drain* ]]; then
      echo "run_throughput.sh: Slurm drained its node ($(sinfo -h -N -o %E)); the jobs left never run" >&2
      return 1
    fi
    sleep 0.1
  done
  end=$(now)
  local end_load
  end_load=$(cut -d' ' -f1-3 /proc/loadavg)
  cd "$root"
  states=$(squeue -h -t all -o %T | sort | uniq -c | tr -s ' ' | tr '\n' ',')
  echo "  slurm: submit $(elapsed "$start" "$submitted") s, all done after $(elapsed "$start" "$end") s; states:$states"
  echo "    sbatch calls repeated after a time-out: $retries;" \
    "load average at the end (1, 5, 15 min): $end_load"
  local completed
  completed=$(squeue -h -t COMPLETED -o %i | wc -l)
  if ((completed < jobs)) || [[ $(squeue -h -t all -o %T | sort -u) != COMPLETED ]]; then
    echo "run_throughput.sh: not every Slurm job completed ($states)" >&2
    return 1
  fi
  seconds=$(elapsed "$start" "$end")
}

echo "throughput: $jobs jobs of $payload; vitscale agent with $slots slots; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
rate() { python3 -c "print(f'{$1 / $2:.1f}')"; }
ratio() { python3 -c "print(f'{$2 / $1:.2f}')"; }
# One decimal: a share printed next to its 50% target must not round up to it.
percent() { python3 -c "print(f'{100 * $2 / $1:.1f}')"; }
per_job_ms() { python3 -c "print(f'{1000 * $1 / $jobs:.2f}')"; }
# The raw rate of this machine varied by a third from one run to the next (docs/benchmarks.md):
# the median of three runs is the baseline.
raw_runs=()
for _ in 1 2 3; do
  baseline=$("$build/bin/vitscale-spawn-baseline" --jobs "$jobs" --concurrency "$slots" "$payload")
  raw_runs+=("$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$baseline")")
done
raw_s=$(printf '%s\n' "${raw_runs[@]}" | sort -n | sed -n 2p)
echo "raw spawn (posix_spawn + waitpid, $slots at once): $(rate "$jobs" "$raw_s") jobs/s" \
  "($raw_s s, the median of ${raw_runs[*]} s)"
if wants vitscale; then
  run_vitscale vitscale
  vitscale_s=$seconds
  echo "vitscale: $(rate "$jobs" "$vitscale_s") jobs/s ($vitscale_s s)," \
    "$(percent "$vitscale_s" "$raw_s")% of the raw spawn rate (target >= 50%)"
fi
if wants slurm; then
  run_slurm_jobs
  slurm_s=$seconds
  echo "slurm (sbatch --wrap per job): $(rate "$jobs" "$slurm_s") jobs/s ($slurm_s s)," \
    "$(percent "$slurm_s" "$raw_s")% of the raw spawn rate"
  if wants vitscale; then
    echo "ratio vitscale/slurm: $(ratio "$vitscale_s" "$slurm_s")x (target >= 5x)"
  fi
fi
