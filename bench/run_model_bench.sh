#!/usr/bin/env bash
# Times a CPU training step (forward, backward, AdamW) of a small ViT and a small ResNet in C++
# (vitscale-model-bench) and in Python (bench/model_bench.py, Debian's python3-torch: the same
# LibTorch underneath), same models, batch and threads, and prints the speed ratio C++/Python
# (Python time / C++ time; above 1.0 the C++ step is faster).
#
#   bench/run_model_bench.sh [BUILD_DIR] [--threads N] [--batch B] [--steps S] [MODEL[@RES] ...]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
[[ $# -gt 0 ]] && shift
threads=2 batch=32 steps=20
models=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
[[ ${#models[@]} -gt 0 ]] || models=("ViT-Mi/4" "R20s")

bench="$build/bin/vitscale-model-bench"
if [[ ! -x $bench ]]; then
  echo "run_model_bench: $bench is missing; build it with" \
       "cmake --build $build --target vitscale-model-bench" >&2
  exit 1
fi

# Both sides get the same thread count from torch.set_num_threads; OpenMP/BLAS pools follow it.
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
cpp=$(mktemp) py=$(mktemp)
trap 'rm -f "$cpp" "$py"' EXIT

"$bench" --threads "$threads" --batch "$batch" --steps "$steps" "${models[@]}" | tee "$cpp"
/usr/bin/python3 "$here/model_bench.py" < "$cpp" | tee "$py"

/usr/bin/python3 - "$cpp" "$py" <<'PY'
import json, sys
cpp = {r["model"]: r for r in map(json.loads, open(sys.argv[1]))}
py = {r["model"]: r for r in map(json.loads, open(sys.argv[2]))}
print(f"\n{'model':<14}{'res':>5}{'batch':>7}{'thr':>5}{'params':>11}"
      f"{'C++ ms':>10}{'Py ms':>10}{'C++/Py':>9}")
for name, c in cpp.items():
    p = py.get(name)
    if p is None:
        continue
    if p["params"] != c["params"]:
        print(f"{name}: Python twin has {p['params']} parameters, C++ {c['params']}: not comparable")
        continue
    ratio = p["ms_per_step"] / c["ms_per_step"]
    print(f"{name:<14}{c['resolution']:>5}{c['batch']:>7}{c['threads']:>5}{c['params']:>11}"
          f"{c['ms_per_step']:>10.1f}{p['ms_per_step']:>10.1f}{ratio:>9.2f}")
PY
