#!/usr/bin/env bash
# The main job: a small real study on Fashion-MNIST, end to end. Starts a coordinator (with the
# dashboard) and one local agent, submits experiments/fashion-mnist/study.yaml, shows progress
# until every job has finished, prints the Table 6-shaped result table, and draws the inspection
# views (trainer/inspection.h) of the study's largest ViT-Mu/7 and R11s+ViT-Mu/4 jobs.
#
# State lives in runs/demo/ (database, token, checkpoints, logs), so running it again runs
# nothing that already finished: the same sweep adds no jobs. `rm -rf runs/demo` starts over.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=build/bin
state=runs/demo
sweep_file=experiments/fashion-mnist/study.yaml
port=${VITSCALE_DEMO_PORT:-8470}
slots=$(nproc)
mkdir -p "$state"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

rm -f "$state/address"
"$bin/vitscale-coordinator" --state-dir "$state" --listen "127.0.0.1:$port" --open-read \
  --dashboard dashboards/dist >>"$state/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$state/address" ]] && break; sleep 0.1; done
if [[ ! -s "$state/address" ]]; then
  echo "demo: the coordinator did not start; see $state/coordinator.log" >&2
  exit 1
fi
url=$(cat "$state/address")
export VITSCALE_COORDINATOR="$url" VITSCALE_TOKEN_FILE="$state/token"

# The local agent's own credential (docs/security.md); issuing it again replaces the old one.
host=localhost  # the agent's id; mpirun runs its own host as localhost anyway
(umask 077 && "$bin/vitscale" agents issue "$host" >"$state/agent.token")
"$bin/vitscale-agent" --coordinator "$url" --token-file "$state/agent.token" --host "$host" \
  --slots "$slots" --work-dir "$state/agent" --runs-dir "$state/runs" \
  --train-command "$PWD/$bin/vitscale-train" >>"$state/agent.log" 2>&1 &
pids+=($!)

echo "demo: dashboard at $url/  (logs in $state/)"
submitted=$("$bin/vitscale" submit "$sweep_file" --json)
read -r name added known < <(python3 -c 'import json, sys
reply = json.load(sys.stdin)
print(reply["sweep"], reply["jobs_added"], reply["jobs_known"])' <<<"$submitted")
echo "demo: sweep '$name': $added jobs added, $known already known (finished jobs never rerun)"
"$bin/vitscale" watch --sweep "$name"
echo
"$bin/vitscale" export --sweep "$name" --format markdown
echo
# The paper's Sec. 4.5 views (filter components, position-embedding similarity, attention
# distance, attention rollout) of the study's largest-subset ViT and hybrid.
for model in ViT-Mu/7 R11s+ViT-Mu/4; do
  job=$("$bin/vitscale" list --sweep "$name" --model "$model" --subset 8000 --json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["jobs"][0]["id"])')
  echo "demo: inspecting $model ($job):"
  "$bin/vitscale" inspect "$job" 2>>"$state/inspect.log" | sed 's/^/  /'
  echo "  drawn on its job page: $url/#/jobs/${job:0:12}"
done
# The planner's check: the same sweep simulated on this host with the throughput it measured.
bash scripts/fidelity.sh "$state" "$sweep_file" || echo "demo: the simulated makespan is off (above)"
echo
echo "demo: done. The dashboard stays up until you press Ctrl-C: $url/"
if [[ -t 0 ]]; then wait; fi
