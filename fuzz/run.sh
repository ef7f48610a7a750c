#!/usr/bin/env bash
# Runs libFuzzer harnesses of a fuzz tree for a bounded time each, starting from the committed
# seed corpus fuzz/corpus/<name>/ (read only). New inputs go to <tree>/fuzz-work/<name>/corpus/,
# a crash to <tree>/fuzz-work/<name>/crash-* (then it fails and names the file).
#
#   fuzz/run.sh TREE SECONDS [NAME...]    no NAME: every harness built in TREE/bin
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tree=$1
seconds=$2
shift 2
names=("$@")
if ((${#names[@]} == 0)); then
  for binary in "$tree"/bin/*_fuzz; do
    name=$(basename "$binary")
    names+=("${name%_fuzz}")
  done
fi
# A crash report names files and lines; leaks are errors like any other.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for name in "${names[@]}"; do
  binary=$tree/bin/${name}_fuzz
  work=$tree/fuzz-work/$name
  mkdir -p "$work/corpus"
  options=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
           -artifact_prefix="$work/")
  [[ -f $here/dict/$name.dict ]] && options+=(-dict="$here/dict/$name.dict")
  log=$work/last-run.log
  if "$binary" "${options[@]}" "$work/corpus" "$here/corpus/$name" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "$name: $runs runs in $seconds s, no crash (corpus $(ls "$work/corpus" | wc -l) new inputs)"
  else
    status=1
    grep -m 8 -E "ERROR:|runtime error|SUMMARY|#[0-9]+ .* in vitscale::" "$log" || tail -n 20 "$log"
    echo "$name: FAILED; the input is $(ls -t "$work"/crash-* "$work"/leak-* "$work"/timeout-* \
      "$work"/oom-* 2>/dev/null | head -1); whole log: $log" >&2
  fi
done
exit $status
