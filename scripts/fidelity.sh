#!/usr/bin/env bash
# The simulator's fidelity check (docs/planning.md): after `make demo` has run its study, simulate
# the same sweep on the same host (one host with the demo agent's slots) with the throughput the
# study itself measured, and compare the simulated makespan with the real one (the first
# attempt's start to the last one's end). Passes when they differ by at most TOLERANCE (a
# fraction, default 0.10). Reads the database only.
#
#   bash scripts/fidelity.sh [STATE_DIR [SWEEP_FILE]]   (defaults: runs/demo, the demo's sweep)
set -euo pipefail
cd "$(dirname "$0")/.."

state=${1:-runs/demo}
sweep_file=${2:-experiments/fashion-mnist/study.yaml}
tolerance=${TOLERANCE:-0.10}
bin=${VITSCALE_BIN:-build/bin}
db="$state/vitscale.db"
[[ -s "$db" ]] || { echo "fidelity: no database at $db; run \`make demo\` first" >&2; exit 2; }

name=$("$bin/vitscale" sweep check "$sweep_file" --json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["sweep"])')
# The slots the demo's agent registered with, and the real schedule of the sweep's attempts.
read -r slots < <(sqlite3 -readonly "$db" "SELECT max(slots) FROM agents")
read -r real finished total < <(sqlite3 -readonly -separator ' ' "$db" "
  SELECT max(a.ended_at) - min(a.started_at),
         (SELECT count(*) FROM jobs j JOIN sweep_jobs sj ON sj.job_id = j.id
            JOIN sweeps s ON s.id = sj.sweep_id WHERE s.name = '$name' AND j.state = 'succeeded'),
         (SELECT count(*) FROM sweep_jobs sj JOIN sweeps s ON s.id = sj.sweep_id
            WHERE s.name = '$name')
  FROM attempts a JOIN sweep_jobs sj ON sj.job_id = a.job_id
  JOIN sweeps s ON s.id = sj.sweep_id WHERE s.name = '$name'")
if [[ -z "$real" || "$finished" != "$total" ]]; then
  echo "fidelity: sweep '$name' has $finished of $total jobs finished; let the demo end first" >&2
  exit 2
fi
plan=$("$bin/vitscale" sweep simulate "$sweep_file" --hosts "1x${slots}:cpu" --db "$db" \
  --compare 1 --json)
PLAN="$plan" python3 - "$real" "$tolerance" "$slots" <<'PY'
import json, os, sys
real, tolerance, slots = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
plan = json.loads(os.environ["PLAN"])["plans"][0]
simulated = plan["makespan_seconds"]
error = (simulated - real) / real
estimated = len(plan["estimated"])
print(f"fidelity: 1x{slots}:cpu, real makespan {real:.0f} s, simulated {simulated:.0f} s "
      f"({100 * error:+.1f}%, tolerance {100 * tolerance:.0f}%; {estimated} estimated rates)")
sys.exit(0 if abs(error) <= tolerance and estimated == 0 else 1)
PY
