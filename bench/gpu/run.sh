#!/usr/bin/env bash
# The GPU device check (docs/gpu.md), one script for a GPU machine with Python torch 2.x (CUDA),
# timm, Open MPI, CMake, Ninja and the CUDA toolkit, and no network:
#   1. configures bench/gpu (the trainer's GPU pieces, nothing else) against Python torch's
#      LibTorch and builds it;
#   2. runs the GPU tests (ctest -L gpu: the training smoke test, NCCL);
#   3. measures training images/s (bf16, batch 256 where memory allows, 224 px, synthetic data on
#      the GPU) of vitscale, timm eager and timm + torch.compile for ViT-B/16, BiT-R50x1 and
#      R50+ViT-B/16, and prints the ratios and peak memory.
# It keeps to a budget (BUDGET seconds, default 470) and skips what no longer fits, saying so.
# Results go to OUT (default build-gpu/out): configure/build/ctest logs, results.jsonl.
# A second try can skip finished parts: SKIP_BUILD=1, SKIP_TESTS=1, SKIP_TIMM=1, or MODELS="R50x1".
set -u
cd "$(dirname "$0")/../.."
START=$(date +%s)
BUDGET=${BUDGET:-470}
BUILD=${BUILD_DIR:-build-gpu}
OUT=${OUT:-$BUILD/out}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
left() { echo $((START + BUDGET - $(date +%s))); }
say() { echo "== [$(( $(date +%s) - START ))s] $*"; }
# Runs "$@" under a timeout of at most $1 seconds and what is left of the budget.
within() {
  local limit=$1; shift
  local remaining; remaining=$(left)
  if (( remaining < 15 )); then say "skipped (budget spent): $*"; return 124; fi
  (( limit > remaining )) && limit=$remaining
  timeout --kill-after=5 "$limit" "$@"
}

export PATH=/usr/local/cuda/bin:$PATH
say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import torch, timm; print("torch", torch.__version__, "cuda", torch.version.cuda, "timm", timm.__version__)'

TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
# NCCL: the CUDA toolkit's, else the one pip installed beside torch (nvidia/nccl).
NCCL_ROOT=$(python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null || true)
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  say "configure"
  within 120 cmake -S bench/gpu -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DVITSCALE_NCCL_ROOT="$NCCL_ROOT" \
      -DCUDAToolkit_ROOT=/usr/local/cuda >"$OUT/configure.log" 2>&1
  rc=$?
  grep -E "vitscale:|Warning|Error" "$OUT/configure.log" | head -20
  if (( rc != 0 )); then tail -40 "$OUT/configure.log"; say "configure failed ($rc)"; exit 1; fi
  say "build"
  within 240 cmake --build "$BUILD" -j "$(nproc)" >"$OUT/build.log" 2>&1
  rc=$?
  if (( rc != 0 )); then grep -E "error|Error" "$OUT/build.log" | head -40; tail -20 "$OUT/build.log"; say "build failed ($rc)"; exit 1; fi
fi

if [[ "${SKIP_TESTS:-0}" != 1 ]]; then
  say "ctest -L gpu"
  (cd "$BUILD" && within 200 ctest -L gpu --output-on-failure) 2>&1 | tee "$OUT/ctest.log" | tail -60
fi

# vitscale name, timm name
MODELS=${MODELS:-"ViT-B/16 R50x1 R50+ViT-B/16"}
timm_name() {
  case "$1" in
    ViT-B/16) echo vit_base_patch16_224 ;;
    R50x1) echo resnetv2_50x1_bit ;;
    R50+ViT-B/16) echo vit_base_r50_s16_224 ;;
  esac
}
: >"$RESULTS"
say "vitscale"
for m in $MODELS; do
  within 90 "$BUILD/bin/vitscale-gpu-bench" --model "$m" --batch 256 >>"$RESULTS" || say "vitscale $m: exit $?"
done
say "vitscale without CUDA graphs (what the graphs add)"
for m in $MODELS; do
  within 60 "$BUILD/bin/vitscale-gpu-bench" --model "$m" --batch 256 --no-graphs --steps 15 \
      >>"$RESULTS" || say "vitscale-eager $m: exit $?"
done
if [[ "${SKIP_TIMM:-0}" != 1 ]]; then
  for mode in eager compile; do
    say "timm $mode"
    for m in $MODELS; do
      within 150 python3 bench/gpu/timm_bench.py --model "$(timm_name "$m")" --label "$m" \
          --mode "$mode" >>"$RESULTS" || say "timm $mode $m: exit $?"
    done
  done
fi
say "results"
python3 bench/gpu/report.py "$RESULTS"
say "done"
