#!/usr/bin/env bash
# One vitscale-train job of 2 ranks across two test hosts (mpirun over ssh, TCP between the
# hosts), against the same job on one host: the final models must be byte-identical. Then a
# failure on the non-leader host alone (its spec, or its dataset, missing there) must end the
# whole job with the configuration status, 78, instead of leaving rank 0 in an all-reduce.
#   mpi_test.sh TRAIN_BINARY DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/testhosts.sh"
train=${1:?usage: mpi_test.sh TRAIN_BINARY DIR}
dir=${2:?usage: mpi_test.sh TRAIN_BINARY DIR}
datasets=/usr/share/datasets
[[ -d $datasets/fashion-mnist ]] || { echo "SKIP: needs $datasets/fashion-mnist"; exit 77; }
train=$(realpath "$train")  # the hosts start it by this path
rm -rf "$dir"
trap testhosts_down EXIT
testhosts_up mpi 22 "$dir" 2
failures=0
passed=0
fail() { echo "FAILED: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; passed=$((passed + 1)); }

# A 16-step ViT-Mu/7 job on 512 Fashion-MNIST images, no evaluations.
write_spec() {  # write_spec PATH RUN_DIR [DATASETS_DIR]
  /usr/bin/python3 - "$@" <<'PY'
import json, sys
path, run_dir = sys.argv[1], sys.argv[2]
spec = {
  "job": {"version": 1, "model": "ViT-Mu/7", "dataset": "fashion-mnist/0-4", "subset": 512,
          "subset_seed": 0, "seed": 5,
          "train": {"optimizer": "adam", "batch_size": 32, "epochs": 1.0, "lr": 0.001,
                    "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.999, "warmup_steps": 4,
                    "lr_decay": "cosine", "grad_clip_norm": 1.0, "dropout": 0.0,
                    "resolution": 28},
          "few_shot": {"datasets": [], "shots": [], "seeds": 0, "l2": 1024.0},
          "fine_tune": []},
  "run": {"dir": run_dir, "threads": 1, "loader_threads": 1, "stdout_report": False,
          "checkpoint_every_steps": 8, "eval_batch": 512}}
if len(sys.argv) > 3:
  spec["run"]["datasets_dir"] = sys.argv[3]
with open(path, "w") as f:
  json.dump(spec, f, indent=2)
PY
}

# What a multi-host mpirun needs here: TCP on the test subnet only, ranks started over ssh with
# the test's config, no binding (the hosts share the machine's cores; Open MPI's default would
# pin every host's rank 0 to one core), and the launching environment's numeric settings
# forwarded to the remote ranks, which otherwise get an ssh login's environment.
forward=()
for name in OMP_WAIT_POLICY OMP_NUM_THREADS OPENBLAS_NUM_THREADS OPENBLAS_CORETYPE \
            OPENBLAS_VERBOSE MKL_NUM_THREADS MKL_CBWR LD_LIBRARY_PATH PATH; do
  [[ -v $name ]] && forward+=(-x "$name")
done
mpirun_across=(mpirun --allow-run-as-root --oversubscribe --bind-to none
  --mca btl tcp,self --mca btl_tcp_if_include "$TH_SUBNET" --mca oob_tcp_if_include "$TH_SUBNET"
  --mca plm_rsh_agent "ssh -F $TH_SSH_CONFIG" "${forward[@]}")
export OMPI_MCA_btl_vader_single_copy_mechanism=none  # as the trainer's own tests run
export OMP_WAIT_POLICY=passive

mkdir -p "$dir/specs"
write_spec "$dir/specs/one-host.json" "$dir/runs/one-host"
write_spec "$dir/specs/two-hosts.json" "$dir/runs/two-hosts"

# Both jobs are launched from host 1, as its agent would: the one-host job as the agent runs a
# single-host job (-H localhost:2).
start=$SECONDS
th_enter 1 mpirun --allow-run-as-root --oversubscribe -np 2 -H localhost:2 \
  "$train" --spec "$dir/specs/one-host.json" >"$dir/one-host.log" 2>&1 || fail "the one-host job failed: $(tail -5 "$dir/one-host.log")"
one_host_s=$((SECONDS - start))
start=$SECONDS
th_enter 1 "${mpirun_across[@]}" -np 2 -H "${TH_ADDR[1]}:1,${TH_ADDR[2]}:1" \
  "$train" --spec "$dir/specs/two-hosts.json" >"$dir/two-hosts.log" 2>&1 || fail "the two-host job failed: $(tail -5 "$dir/two-hosts.log")"
two_hosts_s=$((SECONDS - start))
echo "one host: ${one_host_s}s, two hosts: ${two_hosts_s}s"
if cmp "$dir/runs/one-host/final.pt" "$dir/runs/two-hosts/final.pt"; then
  pass "the two-host final model is byte-identical to the one-host one"
else
  fail "the two-host final model differs from the one-host one"
fi

# Rank 1 alone meets a configuration error: its spec is on host 1's local disk only, or its
# dataset directory exists on host 1 only. timeout ends a hang (124), which is a failure.
mkdir -p "$dir/local"
th_enter 1 sh -c "mkdir -p '$dir/local/datasets' && ln -s '$datasets/fashion-mnist' '$dir/local/datasets/'"
write_spec "$dir/specs/host-local-spec.json" "$dir/runs/host-local-spec"
th_enter 1 cp "$dir/specs/host-local-spec.json" "$dir/local/spec.json"
write_spec "$dir/specs/host-local-data.json" "$dir/runs/host-local-data" "$dir/local/datasets"
for spec in "$dir/local/spec.json" "$dir/specs/host-local-data.json"; do
  rc=0
  th_enter 1 timeout 120 "${mpirun_across[@]}" -np 2 -H "${TH_ADDR[1]}:1,${TH_ADDR[2]}:1" \
    "$train" --spec "$spec" >"$dir/rank-local.log" 2>&1 || rc=$?
  if [[ $rc == 78 ]] && grep -q "rank 1:" "$dir/rank-local.log"; then
    pass "a configuration error on host 2 alone ends the job with 78 ($spec)"
  else
    fail "with $spec present on host 1 only, mpirun exited $rc (want 78, rank 1's error): $(tail -5 "$dir/rank-local.log")"
  fi
done

echo "$passed passed, $failures failed"
[[ $failures == 0 ]]
