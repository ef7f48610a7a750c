#!/usr/bin/env bash
# Scale: the coordinator's views on a lab's year of jobs (issue 16). For each size (default
# 100,000 then 1,000,000, in the same run, so the smaller one is the baseline), fills a fresh
# state dir through the store's bulk path (vitscale-scale-fill), starts the coordinator on it
# and times the restart, its memory, and every view of the API and of the dashboard in headless
# chromium (bench/scale/views.mjs). Prints a table of medians with the ratio of the largest size
# to the smallest. Goal: every view <= 200 ms at 1M jobs. Benchmarks are run by hand, not by
# `make test`.
#
#   bench/scale/run.sh [--sizes 100000,1000000] [--runs 5] [--keep DIR]
#
# BUILD_DIR (default build) holds bin/vitscale-coordinator and bin/vitscale-scale-fill; the
# dashboard must be built (dashboards/dist) and chromium installed, as for its browser tests.
set -Eeuo pipefail
trap 'echo "run.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-build}
[[ $build = /* ]] || build=$root/$build
sizes=100000,1000000
runs=5
keep=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --sizes) sizes=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
for binary in vitscale-coordinator vitscale-scale-fill; do
  if [[ ! -x $build/bin/$binary ]]; then
    echo "run.sh: $build/bin/$binary is missing; build it (cmake --build $build --target $binary) or set BUILD_DIR" >&2
    exit 2
  fi
done

work=${keep:-$(mktemp -d /tmp/vitscale-scale.XXXXXX)}
mkdir -p "$work"
cleanup() { [[ -n $keep ]] || rm -rf "$work"; }
trap cleanup EXIT

echo "scale: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
export VITSCALE_COORDINATOR=$build/bin/vitscale-coordinator
results=$work/results.jsonl
: >"$results"
IFS=, read -r -a size_list <<<"$sizes"
for size in "${size_list[@]}"; do
  state=$work/state-$size
  if [[ ! -s $state/vitscale.db ]]; then
    mkdir -p "$state"
    echo "filling $size jobs into $state/vitscale.db"
    "$build/bin/vitscale-scale-fill" --db "$state/vitscale.db" --jobs "$size"
  fi
  echo "database: $(du -sh "$state/vitscale.db" | cut -f1)"
  label=$size
  node "$here/views.mjs" --state-dir "$state" --study scale-000 --runs "$runs" --label "$label" |
    tee -a "$results"
done

python3 - "$results" "${size_list[0]}" "${size_list[-1]}" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith('{')]
small, large = sys.argv[2], sys.argv[3]
by = {}
for r in rows:
    if 'median_ms' in r:
        by.setdefault((r['kind'], r['view']), {})[r['label']] = r['median_ms']
print(f"\n{'view':<58} {small:>10} {large:>10} {'ratio':>6}  <=200ms at {large}")
over = 0
for (kind, view), values in by.items():
    a, b = values.get(small), values.get(large)
    ratio = f"{b / a:.2f}" if a and b else '-'
    ok = '' if b is None else ('yes' if b <= 200 or kind == 'restart' else 'NO')
    over += ok == 'NO'
    fa = f"{a:.1f}" if a is not None else '-'
    fb = f"{b:.1f}" if b is not None else '-'
    print(f"{kind + ': ' + view:<58} {fa:>10} {fb:>10} {ratio:>6}  {ok}")
for r in rows:
    if r['kind'] in ('memory', 'size'):
        print(json.dumps(r))
print(f"\nviews over 200 ms at {large}: {over}")
EOF
