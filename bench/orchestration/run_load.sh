#!/usr/bin/env bash
# Load: a fresh coordinator under 100 simulated agents polling every second and 10,000 metric
# points/s for 60 s (vitscale-load-gen), then a check that the database holds every point sent.
# Prints p50/p99 API latency and the coordinator's CPU per heartbeat, read over a first phase of
# heartbeats alone (--heartbeat-only-seconds, default 20). Issue 16's figures: --agents 1000
# --points-per-second 100000. Benchmarks are run by hand, not by `make test`.
#
#   bench/orchestration/run_load.sh [--agents 100] [--points-per-second 10000] [--seconds 60]
#                                   [--batch 100] [--heartbeat-only-seconds 20] [--connections 64]
#                                   [--keep DIR]
#
# --connections: the generator's keep-alive connections for metric posts, each with one post in
# flight (a lab's trainers post on one connection each, so more is closer to a real one).
#
# BUILD_DIR (default build) holds bin/vitscale-coordinator and bin/vitscale-load-gen.
set -Eeuo pipefail
trap 'echo "run_load.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-build}
[[ $build = /* ]] || build=$root/$build
agents=100
rate=10000
seconds=60
batch=100
connections=64
warmup=20
keep=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --agents) agents=$2; shift 2 ;;
    --points-per-second) rate=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --heartbeat-only-seconds) warmup=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "run_load.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
for binary in vitscale-coordinator vitscale-load-gen; do
  if [[ ! -x $build/bin/$binary ]]; then
    echo "run_load.sh: $build/bin/$binary is missing; build it (cmake --build $build --target $binary) or set BUILD_DIR" >&2
    exit 2
  fi
done

work=${keep:-$(mktemp -d /tmp/vitscale-load.XXXXXX)}
mkdir -p "$work"
coordinator=""
cleanup() {
  if [[ -n $coordinator ]]; then
    kill "$coordinator" 2>/dev/null || true
    wait "$coordinator" 2>/dev/null || true
  fi
  [[ -n $keep ]] || rm -rf "$work"
}
trap cleanup EXIT

cpu_seconds() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
# A thousand agents hold two connections each, beside the generator's own.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

"$build/bin/vitscale-coordinator" --state-dir "$work/state" --listen 127.0.0.1:0 \
  >"$work/coordinator.log" 2>&1 &
coordinator=$!
for _ in $(seq 1 100); do [[ -s $work/state/address ]] && break; sleep 0.05; done
url=$(cat "$work/state/address")

echo "load: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
# The generator's phase lines mark when every agent has its launch and when the metrics join
# the heartbeats; the coordinator's CPU is read at each, so the span between them gives CPU per
# heartbeat alone (launches excluded).
cpu_start="" cpu_metrics="" generator_cpu_metrics="" polls_start=0 polls_alone=0 time_start=0 time_metrics=0
while IFS= read -r line; do
  echo "$line"
  echo "$line" >>"$work/load-gen.out"
  case $line in
    phase=launched*)
      cpu_start=$(cpu_seconds "$coordinator")
      time_start=$(date +%s.%N)
      polls_start=${line##*polls_sent=} ;;
    phase=metrics*)
      cpu_metrics=$(cpu_seconds "$coordinator")
      time_metrics=$(date +%s.%N)
      generator_cpu_metrics=$(sed -n 's/.* cpu=\([0-9.]*\) .*/\1/p' <<<"$line")
      polls_alone=${line##*polls_sent=} ;;
  esac
done < <("$build/bin/vitscale-load-gen" --url "$url" --token-file "$work/state/token" \
           --agents "$agents" --points-per-second "$rate" --seconds "$seconds" --batch "$batch" \
           --heartbeat-only-seconds "$warmup" --connections "$connections"; echo "exit=$?")
status=$(sed -n 's/^exit=//p' "$work/load-gen.out")
cpu_end=$(cpu_seconds "$coordinator")
time_end=$(date +%s.%N)
echo "coordinator CPU: $cpu_end s in all (setup included)"
if [[ -n $cpu_start && -n $cpu_metrics && $polls_alone -gt $polls_start ]]; then
  awk -v a="$cpu_start" -v b="$cpu_metrics" -v c="$cpu_end" -v n="$((polls_alone - polls_start))" -v w="$(awk -v x="$time_start" -v y="$time_metrics" 'BEGIN { print y - x }')" -v s="$seconds" 'BEGIN {
    printf "coordinator CPU, heartbeats alone (%.1f s, after every launch): %.2f s for %d polls = %.3f ms per heartbeat (%.0f%% of a core)\n", w, b - a, n, 1000 * (b - a) / n, 100 * (b - a) / w }'
fi

sent=$(sed -n 's/^points_sent=\([0-9]*\).*/\1/p' "$work/load-gen.out")
stored=$(sqlite3 "file:$work/state/vitscale.db?mode=ro" \
  "SELECT count(*) FROM metrics WHERE name = 'load'")
echo "points sent $sent, points stored $stored (sqlite3 on the coordinator's database)"
# CPU from the metrics phase to the last answer (which comes later than --seconds when the
# coordinator falls behind): the coordinator's (its heartbeats included) per point stored, and
# the generator's, which runs on the same cores.
generator_cpu_end=$(sed -n 's/^generator_cpu=//p' "$work/load-gen.out")
if [[ -n $cpu_metrics && -n $generator_cpu_metrics && -n $generator_cpu_end && $stored -gt 0 ]]; then
  awk -v b="$cpu_metrics" -v c="$cpu_end" -v g0="$generator_cpu_metrics" -v g1="$generator_cpu_end" \
      -v n="$stored" -v w="$(awk -v x="$time_metrics" -v y="$time_end" 'BEGIN { print y - x }')" 'BEGIN {
    printf "coordinator CPU, heartbeats and metrics (%.1f s, to the last answer): %.2f s (%.0f%% of a core), %.2f ms per 1,000 points stored; generator CPU %.2f s (%.0f%% of a core)\n", w, c - b, 100 * (c - b) / w, 1e6 * (c - b) / n, g1 - g0, 100 * (g1 - g0) / w }'
fi
if [[ $sent != "$stored" ]]; then
  echo "run_load.sh: FAILED: the database holds $stored points, $sent were sent" >&2
  exit 1
fi
if [[ $status != 0 ]]; then
  echo "run_load.sh: FAILED: the load generator saw refused or lost requests (above)" >&2
  exit 1
fi
echo "ok: points stored == points sent"
