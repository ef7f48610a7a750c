#!/usr/bin/env bash
# Times one pretraining epoch on Fashion-MNIST in vitscale-train's C++ path (vitscale-train-bench:
# the trainer's Loader, optimizer and RunTrainingLoop) and in Python (bench/train_bench.py:
# Debian's python3-torch, a torch DataLoader), one after the other in the same run, with the same
# model, batch, augmentation, recipe, threads and loader workers. Prints python_time / cpp_time
# (above 1.0 the C++ epoch is faster).
#
#   bench/run_train_bench.sh [BUILD_DIR] [--model M] [--batch B] [--threads N]
#                            [--loader-threads N] [--subset N] [--repeat R]
# --subset N times an epoch over the first N training images instead of all 60000; --repeat R
# alternates the two sides R times and reports the best time of each.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
[[ $# -gt 0 ]] && shift
# Defaults: how the shipped study trains (experiments/fashion-mnist/study.yaml: batch 32, one
# rank x 1 thread); docs/results.md also gives batch 128.
model=ViT-Mu/7 batch=32 threads=1 loader_threads=1 subset=0 repeat=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --loader-threads) loader_threads=$2; shift 2 ;;
    --subset) subset=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    *) echo "run_train_bench: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

bench="$build/bin/vitscale-train-bench"
if [[ ! -x $bench ]]; then
  echo "run_train_bench: $bench is missing; build it with" \
       "cmake --build $build --target vitscale-train-bench" >&2
  exit 1
fi

# Both sides get the same thread count from torch.set_num_threads; OpenMP/BLAS pools follow it.
# Passive waiting: with libgomp's default spinning, two threads on a machine where anything else
# runs are several times slower than one (docs/results.md); both sides get the same setting.
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((i = 0; i < repeat; ++i)); do
  line=$("$bench" --model "$model" --batch "$batch" --threads "$threads" \
                  --loader-threads "$loader_threads" --subset "$subset")
  echo "$line" | tee -a "$out"
  echo "$line" | /usr/bin/python3 "$here/train_bench.py" | tee -a "$out"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

/usr/bin/python3 - "$out" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
cpp = min((r for r in runs if r["impl"] == "C++"), key=lambda r: r["seconds"])
py = min((r for r in runs if r["impl"] == "Python"), key=lambda r: r["seconds"])
print(f"\n{'':8}{'model':<10}{'batch':>6}{'thr':>4}{'ldr':>4}{'images':>8}{'seconds':>9}"
      f"{'img/s':>8}{'loss':>7}")
for r in (cpp, py):
    print(f"{r['impl']:<8}{r['model']:<10}{r['batch']:>6}{r['torch_threads']:>4}{cpp['loader_threads']:>4}"
          f"{r['images']:>8}{r['seconds']:>9.1f}{r['images_per_sec']:>8.0f}{r['final_loss']:>7.3f}")
print(f"python_time / cpp_time = {py['seconds'] / cpp['seconds']:.2f}")
PY
