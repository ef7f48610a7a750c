#!/usr/bin/env bash
# Load: a fresh coordinator under 100 simulated agents polling every second and 10,000 metric
# points/s for 60 s (vitscale-load-gen), then a check that the database holds every point sent.
# Prints p50/p99 API latency. Benchmarks are run by hand, not by `make test`.
#
#   bench/orchestration/run_load.sh [--agents 100] [--points-per-second 10000] [--seconds 60]
#                                   [--batch 100] [--keep DIR]
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
keep=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --agents) agents=$2; shift 2 ;;
    --points-per-second) rate=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
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

cpu_seconds() { awk -v t="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / t}' "/proc/$1/stat"; }

"$build/bin/vitscale-coordinator" --state-dir "$work/state" --listen 127.0.0.1:0 \
  >"$work/coordinator.log" 2>&1 &
coordinator=$!
for _ in $(seq 1 100); do [[ -s $work/state/address ]] && break; sleep 0.05; done
url=$(cat "$work/state/address")

echo "load: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
"$build/bin/vitscale-load-gen" --url "$url" --token-file "$work/state/token" --agents "$agents" \
  --points-per-second "$rate" --seconds "$seconds" --batch "$batch" | tee "$work/load-gen.out" ||
  status=$?
echo "coordinator CPU over the run: $(cpu_seconds "$coordinator") s"

sent=$(sed -n 's/^points_sent=\([0-9]*\).*/\1/p' "$work/load-gen.out")
stored=$(sqlite3 "file:$work/state/vitscale.db?mode=ro" \
  "SELECT count(*) FROM metrics WHERE name = 'load'")
echo "points sent $sent, points stored $stored (sqlite3 on the coordinator's database)"
if [[ $sent != "$stored" ]]; then
  echo "run_load.sh: FAILED: the database holds $stored points, $sent were sent" >&2
  exit 1
fi
if [[ $status != 0 ]]; then
  echo "run_load.sh: FAILED: the load generator saw refused or lost requests (above)" >&2
  exit 1
fi
echo "ok: points stored == points sent"
