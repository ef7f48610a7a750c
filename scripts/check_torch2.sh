#!/usr/bin/env bash
# Compile-checks every LibTorch translation unit of the model zoo, the data loader, the trainer,
# the GPU benchmark and the trainer tests against LibTorch 2.x headers, on a machine without a
# GPU: Debian trixie's LibTorch 2.6 packages (libtorch-dev + libtorch2.6 for the CPU build,
# libtorch-cuda-dev for the CUDA headers) are downloaded with apt-get into BUILD (a private apt
# state; the system's sources are not touched) and unpacked there with dpkg -x (never into /).
#   1. CPU: configures BUILD/cpu-build against the unpacked 2.6 CMake package and compiles every
#      object (linking needs trixie's newer glibc and libstdc++, so nothing is linked);
#   2. CUDA: recompiles the trainer's and the GPU tests' sources with -fsyntax-only against the
#      CUDA 2.6 headers and the CUDA toolkit in /usr/local/cuda, VITSCALE_TORCH_CUDA=1.
# `make check-torch2` runs it (not part of make test: it downloads about 63 MB the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-$ROOT/build-torch2}
JOBS=${JOBS:-2}
mkdir -p "$BUILD/apt/lists/partial" "$BUILD/apt/cache/archives/partial" "$BUILD/apt/sources.d" \
         "$BUILD/apt/preferences.d" "$BUILD/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main contrib" \
  >"$BUILD/apt/sources.list"
APT=(-o "Dir::Etc::SourceList=$BUILD/apt/sources.list" -o "Dir::Etc::SourceParts=$BUILD/apt/sources.d"
     -o "Dir::State::Lists=$BUILD/apt/lists" -o "Dir::Cache=$BUILD/apt/cache"
     -o "Dir::Etc::Preferences=$BUILD/apt/preferences" -o "Dir::Etc::PreferencesParts=$BUILD/apt/preferences.d")
if ! ls "$BUILD"/debs/libtorch-cuda-dev_*.deb >/dev/null 2>&1; then
  apt-get "${APT[@]}" update -qq
  (cd "$BUILD/debs" && apt-get "${APT[@]}" download libtorch-dev libtorch2.6 libtorch-cuda-dev)
fi
for tree in cpu cuda; do rm -rf "${BUILD:?}/$tree"; mkdir -p "$BUILD/$tree"; done
dpkg -x "$BUILD"/debs/libtorch-dev_*.deb "$BUILD/cpu"
dpkg -x "$BUILD"/debs/libtorch2.6_*.deb "$BUILD/cpu"
dpkg -x "$BUILD"/debs/libtorch-cuda-dev_*.deb "$BUILD/cuda"
TORCH_DIR=$BUILD/cpu/usr/lib/x86_64-linux-gnu/cmake/Torch

echo "== 1. LibTorch 2.6 (CPU): every object"
cmake -S "$ROOT" -B "$BUILD/cpu-build" -G Ninja -DTorch_DIR="$TORCH_DIR" \
      -DCMAKE_CXX_COMPILER_LAUNCHER="$(command -v ccache || true)" >"$BUILD/configure.log" 2>&1 ||
  { tail -30 "$BUILD/configure.log"; exit 1; }
grep "vitscale:" "$BUILD/configure.log"
mapfile -t OBJECTS < <(ninja -C "$BUILD/cpu-build" -t targets all |
  grep -E '^(models|data|trainer|bench|tests/(models|data|trainer))/CMakeFiles/[^:]*\.cc\.o:' |
  grep -vE 'vitscale_(registry|npy|data_readers|train_io|common)|/(npy|registry|job_spec|report|checkpoint_store)_test|orchestration' |
  cut -d: -f1)
echo "${#OBJECTS[@]} objects"
ninja -C "$BUILD/cpu-build" -k 0 -j "$JOBS" "${OBJECTS[@]}"

echo "== 2. LibTorch 2.6 (CUDA headers): the trainer's CUDA paths, syntax only"
CUDA_INCLUDE=/usr/local/cuda/include
python3 - "$BUILD" "$CUDA_INCLUDE" <<'PY'
import json, shlex, subprocess, sys
build, cuda_include = sys.argv[1], sys.argv[2]
cpu_inc, cuda_inc = f"{build}/cpu/usr/include", f"{build}/cuda/usr/include"
failed = 0
for entry in json.load(open(f"{build}/cpu-build/compile_commands.json")):
    src = entry["file"]
    if not any(part in src for part in ("/trainer/", "/bench/gpu/", "/tests/trainer/gpu_smoke",
                                        "/tests/trainer/nccl_gpu", "/models/vit.cc")):
        continue
    args = shlex.split(entry["command"])
    out = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o",):
            skip = True
            continue
        if a.startswith("-Winvalid-pch") or "cmake_pch" in a or a == "-include":
            continue
        out.append(a.replace(cpu_inc, cuda_inc).replace("VITSCALE_TORCH_CUDA=0",
                                                        "VITSCALE_TORCH_CUDA=1"))
    # `-include <pch>` pairs: drop the path that followed a dropped -include.
    out = [a for a in out if not a.endswith(".hxx")]
    if "ccache" in out[0]:
        out = out[1:]
    out += ["-fsyntax-only", "-isystem", cuda_include]
    result = subprocess.run(out, cwd=entry["directory"], capture_output=True, text=True)
    print(("ok   " if result.returncode == 0 else "FAIL ") + src, flush=True)
    if result.returncode != 0:
        failed += 1
        print(result.stderr[-4000:])
sys.exit(1 if failed else 0)
PY
echo "== LibTorch 2.6 compile check passed"
