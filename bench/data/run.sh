#!/usr/bin/env bash
# The input pipeline benchmark: training-input images per second at 224 px, per core,
# vitscale's pipeline (packed shards, threaded region decode at reduced DCT scale, Inception
# random-resized crop + flip, normalisation into the loader's batch buffers) against
# torchvision's ImageFolder + RandomResizedCrop + RandomHorizontalFlip + ToTensor + Normalize
# through a DataLoader (Debian's python3-torchvision under /usr/bin/python3), on the same cores
# (taskset), both from a warm page cache. Also the pack rate and the shard read rate.
#
#   bench/data/run.sh [BUILD_DIR] [--count 10000] [--cores "1 2"] [--batches 60] [--work DIR]
#
# The images (--count JPEGs of about 500x375 at quality 90, cut from the photographs Debian's
# python3-skimage ships: bench/data/make_images.py) are made once under --work and reused.
# Goal (docs/data.md): vitscale >= 2x torchvision per core and >= 400 images/s per core.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
[[ $# -gt 0 && $1 != --* ]] && shift
count=10000 cores_list="1 $(nproc)" batches=60 work=${TMPDIR:-/tmp}/vitscale-data-bench
while [[ $# -gt 0 ]]; do
  case $1 in
    --count) count=$2; shift 2 ;;
    --cores) cores_list=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) echo "bench/data/run.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
cores_list=$(echo "$cores_list" | tr ' ' '\n' | sort -un | tr '\n' ' ')

cli=$build/bin/vitscale bench=$build/bin/vitscale-data-bench python=/usr/bin/python3
for bin in "$cli" "$bench"; do
  if [[ ! -x $bin ]]; then
    echo "bench/data/run.sh: $bin is missing; build it with" \
         "cmake --build $build --target vitscale vitscale-data-bench" >&2
    exit 1
  fi
done
"$python" -c 'import torchvision, PIL' 2>/dev/null || {
  echo "bench/data/run.sh: needs python3-torchvision and python3-pil (scripts/setup.sh)" >&2
  exit 1
}

images=$work/images packed=$work/packed
mkdir -p "$work"
if [[ ! -f $images/.complete-$count ]]; then
  rm -rf "$images"
  echo "making $count JPEGs in $images ..."
  "$python" "$here/make_images.py" "$images" --count "$count"
  touch "$images/.complete-$count"
fi
json() { "$python" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
calc() { "$python" -c "print(f'{$1:.${2:-1}f}')"; }
image_mb=$(du -sm "$images" | cut -f1)

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
# Pack (the source files read from a warm cache too).
cat "$images"/train/*/*.jpg > /dev/null
rm -rf "$packed"
start=$(date +%s.%N)
"$cli" data pack "$images" "$packed" --threads "$(nproc)" > "$work/pack.log" 2>&1
pack_seconds=$(calc "$(date +%s.%N) - $start" 2)
echo "pack: $count images ($image_mb MB) in $pack_seconds s with $(nproc) threads:" \
     "$(calc "$count / $pack_seconds" 0) images/s, $(calc "$image_mb / $pack_seconds" 1) MB/s"

cat "$packed"/*.tar > /dev/null
read_line=$("$bench" --shards "$packed" --mode read)
echo "shard read (random order, 1 thread, warm cache): $(calc "$(json "$read_line" samples_per_sec)" 0)" \
     "samples/s, $(calc "$(json "$read_line" mb_per_sec)" 0) MB/s"

printf '%-6s %22s %22s %8s\n' cores "vitscale img/s (/core)" "torchvision img/s (/core)" ratio
for cores in $cores_list; do
  cpus=0-$((cores - 1))
  ours=$(taskset -c "$cpus" "$bench" --shards "$packed" --mode loader --threads "$cores" \
                 --batches "$batches")
  workers=$((cores == 1 ? 0 : cores))
  theirs=$(taskset -c "$cpus" "$python" "$here/torchvision_bench.py" "$images/train" \
                   --workers "$workers" --batches "$batches")
  a=$(json "$ours" images_per_sec) b=$(json "$theirs" images_per_sec)
  printf '%-6s %22s %22s %8s\n' "$cores" "$(calc "$a" 0) ($(calc "$a / $cores" 0))" \
         "$(calc "$b" 0) ($(calc "$b / $cores" 0))" "$(calc "$a / $b" 2)"
done
# One core, per CPU-second (process CPU time, which other load on the machine inflates far less
# than wall time): both sides decode on their own thread only.
ours=$(taskset -c 0 "$bench" --shards "$packed" --mode loader --threads 1 --batches "$batches")
theirs=$(taskset -c 0 "$python" "$here/torchvision_bench.py" "$images/train" --workers 0 \
                 --batches "$batches")
a=$(json "$ours" images_per_cpu_sec) b=$(json "$theirs" images_per_cpu_sec)
echo "1 core, per CPU-second: vitscale $(calc "$a" 0), torchvision $(calc "$b" 0)," \
     "ratio $(calc "$a / $b" 2)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
