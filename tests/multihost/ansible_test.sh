#!/usr/bin/env bash
# The ansible play against three test hosts, over ssh, as a lab runs it: a wrong variable stops
# it before anything changes; it deploys the coordinator (host 1) and an agent on every host
# (start-stop-daemon: the hosts have no systemd); the agents register; a second run changes
# nothing and keeps the token; a sweep runs with a two-host job and single-host jobs; the
# two-host job's non-leader agent is killed mid-job and the job resumes on the other hosts after
# exactly one lost attempt; a preemption of a two-host job checkpoints every rank on both hosts
# and the job resumes; `--tags stop` stops every daemon.
#   ansible_test.sh BIN_DIR SOURCE_DIR DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/testhosts.sh"
bin=${1:?usage: ansible_test.sh BIN_DIR SOURCE_DIR DIR}
src=${2:?usage: ansible_test.sh BIN_DIR SOURCE_DIR DIR}
dir=${3:?usage: ansible_test.sh BIN_DIR SOURCE_DIR DIR}
command -v ansible-playbook >/dev/null || { echo "SKIP: needs ansible (scripts/setup.sh)"; exit 77; }
[[ -x $bin/vitscale-train ]] || { echo "SKIP: needs vitscale-train in $bin (a build with LibTorch)"; exit 77; }
# The services run as the vitscale user from a release under $dir: every folder above it must
# let others through (a checkout in a 0700 folder, as `mktemp -d` makes, does not).
mkdir -p "$(dirname "$dir")"
above=$(cd "$(dirname "$dir")" && pwd -P)
while [[ $above != / ]]; do
  [[ $(stat -c %A "$above") == *[xt] ]] ||
    { echo "FAILED: $above is closed to other users (chmod o+x it); the vitscale user runs from below it" >&2; exit 1; }
  above=$(dirname "$above")
done
rm -rf "$dir"
# The play copies what a build made; without debug information that is a tenth of the bytes.
mkdir -p "$dir/bin"
for program in vitscale vitscale-coordinator vitscale-agent vitscale-train; do
  objcopy --strip-debug "$bin/$program" "$dir/bin/$program"
done
bin=$dir/bin
trap testhosts_down EXIT
testhosts_up ans 23 "$dir" 3
failures=0
checks=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  checks=$((checks + 1))
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what" >&2; failures=$((failures + 1)); fi
}

dashboard=$src/dashboards/dist
if [[ ! -f $dashboard/index.html ]]; then
  echo "note: $dashboard is not built (make build does it); deploying an empty dashboard"
  dashboard=$dir/no-dashboard
  mkdir -p "$dashboard"
fi
mkdir -p "$dir/shared"
local_root=$dir/local  # each host's own tmpfs, at the same path on every host
cat >"$dir/inventory.yml" <<INVENTORY
all:
  vars:
    ansible_user: root
    ansible_ssh_common_args: -F $TH_SSH_CONFIG
    vitscale_service_manager: start-stop-daemon
    vitscale_shared_dir: $dir/shared
    vitscale_build_dir: $bin
    vitscale_dashboard_dir: $dashboard
    vitscale_prefix: $local_root/opt/vitscale
    vitscale_config_dir: $local_root/etc/vitscale
    vitscale_state_dir: $local_root/var/lib/vitscale
    vitscale_log_dir: $local_root/var/log/vitscale
    vitscale_pid_dir: $local_root/run/vitscale
    # The packages are the machine's own (shared by the hosts); nothing to fetch from here.
    vitscale_apt_update_cache: false
    vitscale_coordinator_lease_seconds: 6
    vitscale_coordinator_checkpoint_every_steps: 4
    vitscale_coordinator_grace_seconds: 60
    # The hosts share this machine's cores: Open MPI's default binding would pin every host's
    # rank 0 to the same core.
    vitscale_agent_bind_to: none
    vitscale_agent_network: $TH_SUBNET
  children:
    vitscale_coordinator:
      hosts:
        h1: {ansible_host: ${TH_ADDR[1]}}
    vitscale_agents:
      hosts:
        h1: {ansible_host: ${TH_ADDR[1]}, vitscale_agent_slots: 1, vitscale_agent_gpus: 0}
        h2: {ansible_host: ${TH_ADDR[2]}, vitscale_agent_slots: 1, vitscale_agent_gpus: 0}
        h3: {ansible_host: ${TH_ADDR[3]}, vitscale_agent_slots: 1, vitscale_agent_gpus: 0}
INVENTORY
export ANSIBLE_CONFIG=$src/ansible/ansible.cfg ANSIBLE_LOCAL_TEMP=$dir/ansible-tmp \
  ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
play() {  # play LOG ARGS...: the play's exit status; its output in LOG
  local log=$1
  shift
  local rc=0
  # stdin from /dev/null: ansible refuses a non-blocking one, as ctest's may be.
  ansible-playbook -i "$dir/inventory.yml" "$src/ansible/site.yml" "$@" </dev/null >"$log" 2>&1 \
    || rc=$?
  return $rc
}
# "changed=N" summed over the recap lines.
changed_count() { sed -n 's/.*changed=\([0-9]*\).*/\1/p' "$1" | awk '{s += $1} END {print s + 0}'; }
coordinator_state=$local_root/var/lib/vitscale/coordinator

# 1. Wrong variables: the play fails naming them, and nothing on any host has changed.
if play "$dir/play-bad-slots.log" -e vitscale_agent_slots=two; then rc=0; else rc=$?; fi
check "a bad vitscale_agent_slots fails the play" test "$rc" != 0
check "the failure names vitscale_agent_slots" grep -q "vitscale_agent_slots on h1 is 'two'" "$dir/play-bad-slots.log"
if play "$dir/play-typo.log" -e vitscale_agent_slot=2; then rc=0; else rc=$?; fi
check "a misspelt variable fails the play" test "$rc" != 0
check "the failure names the misspelt variable" grep -q "unknown variable vitscale_agent_slot on" "$dir/play-typo.log"
check "nothing changed on any host" sh -c "! grep -q '^changed:' '$dir/play-bad-slots.log' '$dir/play-typo.log' &&
  ! ssh -F '$TH_SSH_CONFIG' '${TH_ADDR[1]}' test -e '$local_root/opt'"

# 2. The deployment.
start=$SECONDS
if ! play "$dir/play-1.log"; then
  tail -40 "$dir/play-1.log" >&2
  for i in 1 2 3; do  # the daemons' own words, from each host's tmpfs, which goes with the test
    th_ssh "$i" "tail -n 20 $local_root/var/log/vitscale/*.log" >&2 || true
  done
  echo "FAILED: the first run of the play" >&2
  exit 1
fi
echo "first run: $((SECONDS - start)) s"
url="http://${TH_ADDR[1]}:8470"
token=$(th_ssh 1 cat "$coordinator_state/token")
# HOST:SLOTS of every registered agent, sorted.
agents() {
  curl -sf --noproxy '*' -H "Authorization: Bearer $token" "$url/api/v1/agents" |
    /usr/bin/python3 -c "import json, sys
print(' '.join(sorted(f\"{a['host']}:{a['slots']}\" for a in json.load(sys.stdin)['agents'])))"
}
registered=""
for _ in $(seq 100); do
  registered=$(agents 2>/dev/null || true)
  [[ $registered == "${TH_ADDR[1]}:1 ${TH_ADDR[2]}:1 ${TH_ADDR[3]}:1" ]] && break
  sleep 0.2
done
check "the three agents registered with their slots ($registered)" \
  test "$registered" = "${TH_ADDR[1]}:1 ${TH_ADDR[2]}:1 ${TH_ADDR[3]}:1"
for i in 1 2 3; do
  mode=$(th_ssh "$i" stat -c %a:%U "$local_root/etc/vitscale/agent.token")
  check "host $i's agent credential is 600, the vitscale user's ($mode)" test "$mode" = 600:vitscale
done
check "the agents run as the vitscale user" \
  test "$(th_ssh 2 "ps -o user= -p \$(cat $local_root/run/vitscale/vitscale-agent.pid)")" = vitscale
check "the coordinator's state directory is 700" \
  test "$(th_ssh 1 stat -c %a "$coordinator_state")" = 700
check "the coordinator runs only on host 1" sh -c \
  "! ssh -F '$TH_SSH_CONFIG' '${TH_ADDR[2]}' test -e '$local_root/run/vitscale/vitscale-coordinator.pid'"

# 3. Idempotent: a second run changes nothing, keeps the token and the daemons.
coordinator_pid=$(th_ssh 1 cat "$local_root/run/vitscale/vitscale-coordinator.pid")
start=$SECONDS
play "$dir/play-2.log" || tail -30 "$dir/play-2.log" >&2
echo "second run: $((SECONDS - start)) s"
check "the second run changes nothing (changed=$(changed_count "$dir/play-2.log"))" \
  test "$(changed_count "$dir/play-2.log")" = 0
check "the token is the same" test "$(th_ssh 1 cat "$coordinator_state/token")" = "$token"
check "the coordinator was not restarted" \
  test "$(th_ssh 1 cat "$local_root/run/vitscale/vitscale-coordinator.pid")" = "$coordinator_pid"

# 4. A sweep: one job of two ranks, which no host has room for alone (one slot each), and two
# single-host jobs. Mid-job, the two-host job's non-leader host dies: its ranks freeze (SIGSTOP)
# and its agent is killed (kill -9). The agent's lease runs out, the leader's agent kills the old
# gang, and the job runs again on the two hosts left, resuming from its checkpoint on the shared
# directory.
api() { curl -sf --noproxy '*' -H "Authorization: Bearer $token" "$url/api/v1/$1"; }
api_post() { curl -sf --noproxy '*' -H "Authorization: Bearer $token" -X POST "$url/api/v1/$1"; }
pyjson() { /usr/bin/python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
wait_for() {  # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}
sweep() {  # sweep NAME SEED EPOCHS: a YAML sweep of one two-rank job and two one-rank jobs
  cat <<YAML
name: $1
recipe: small-images
pretrain:
  dataset: fashion-mnist/0-4
  batch_size: 32
  warmup_steps: 2
  subset_seed: 0
  seed: $2
grid:
  - model: [ViT-Mu/7]
    subset: [512]
    epochs: [$3]
    resources: {ranks: 2, hosts: any}
    priority: 1
  - model: [ViT-Mu/7]
    subset: [128, 256]
    epochs: [1]
    resources: {ranks: 1, hosts: one}
YAML
}
submit() {  # submit YAML: the id of the sweep's first (two-rank) job
  curl -sf --noproxy '*' -H "Authorization: Bearer $token" -H 'Content-Type: application/yaml' \
    --data-binary "$1" "$url/api/v1/sweeps" | pyjson "d['jobs'][0]"
}
field() { api "jobs/$1" | pyjson "$2"; }
has_checkpoint() { [[ $(field "$1" "len(d['checkpoints'])") -gt 0 ]]; }
state_is() { [[ $(field "$1" "d['state']") == "$2" ]]; }
scenario_start=$SECONDS
# 12 epochs: the job must not finish between its first checkpoint and the freeze below. After
# the freeze it cannot finish at all, so the lease's expiry is what ends the attempt.
gang=$(submit "$(sweep mh-recovery 7 12)")
check "the two-host job runs and checkpoints" wait_for 240 has_checkpoint "$gang"
hosts=$(field "$gang" "d['attempts'][0]['hosts']")
check "its first attempt spans two hosts ($hosts)" test "$(tr ',' '\n' <<<"$hosts" | wc -l)" = 2
member=$(cut -d, -f2 <<<"$hosts" | cut -d: -f1)
member_index=""
for i in 1 2 3; do [[ ${TH_ADDR[$i]} == "$member" ]] && member_index=$i; done
frozen=()  # the host's ranks: its network namespace's vitscale-train processes
for pid in $(ip netns pids "${TH_NS[$member_index]}"); do
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == vitscale-train ]] && kill -STOP "$pid" && frozen+=("$pid")
done
check "the lost host's rank was frozen (${#frozen[@]} process)" test "${#frozen[@]}" = 1
killed_agent=$(th_ssh "$member_index" cat "$local_root/run/vitscale/vitscale-agent.pid")
th_ssh "$member_index" kill -9 "$killed_agent"
echo "froze ${frozen[*]} and killed the agent of $member (pid $killed_agent), the non-leader of $hosts"
check "the two-host job succeeds after the loss" wait_for 300 state_is "$gang" succeeded
outcomes=$(field "$gang" "' '.join(a.get('outcome') or '-' for a in d['attempts'])")
check "exactly one lost attempt, then success ($outcomes)" test "$outcomes" = "lost succeeded"
resumed=$(field "$gang" "d['attempts'][-1].get('resumed_from_step') or 0")
check "the second attempt resumed from the checkpoint (step $resumed)" test "$resumed" -gt 0
rehosts=$(field "$gang" "d['attempts'][-1]['hosts']")
check "the second attempt ran on two hosts without $member ($rehosts)" \
  sh -c "[ \$(echo '$rehosts' | tr ',' '\n' | wc -l) = 2 ] && ! echo '$rehosts' | grep -q '$member:'"
single_done() { [[ $(api "jobs?state=succeeded" | pyjson "len(d['jobs'])") -ge 3 ]]; }
check "the single-host jobs succeed too" wait_for 240 single_done
echo "host loss and resume: $((SECONDS - scenario_start)) s"

# 5. Preemption across hosts: SIGTERM reaches the leader's rank, the ranks agree at the next
# step boundary, every rank on both hosts exits checkpointed (mpirun's status 75 is theirs),
# and the job resumes.
start=$SECONDS
gang2=$(submit "$(sweep mh-preempt 8 6)")
check "a second two-host job runs and checkpoints" wait_for 240 has_checkpoint "$gang2"
api_post "jobs/$gang2/preempt" >/dev/null
check "the preempted two-host job succeeds" wait_for 300 state_is "$gang2" succeeded
first=$(field "$gang2" "'%s %s %s' % (d['attempts'][0].get('outcome'), d['attempts'][0].get('exit_status'), d['attempts'][0]['hosts'].count(','))")
check "its first attempt ended preempted with status 75 across two hosts ($first)" \
  test "$first" = "preempted 75 1"
resumed=$(field "$gang2" "d['attempts'][1].get('resumed_from_step') or 0")
check "it resumed from the preemption's checkpoint (step $resumed)" test "$resumed" -gt 0
echo "preemption across hosts: $((SECONDS - start)) s"

# 6. The stop tag stops every daemon on every host.
pids=()
for i in 1 2 3; do
  pid=$(th_ssh "$i" cat "$local_root/run/vitscale/vitscale-agent.pid")
  [[ $pid == "${killed_agent:-}" ]] || pids+=("$pid")
done
pids+=("$coordinator_pid")
play "$dir/play-stop.log" --tags stop || tail -30 "$dir/play-stop.log" >&2
for pid in "${pids[@]}"; do check "daemon $pid has stopped" eval "! th_alive $pid"; done
check "the coordinator no longer answers" sh -c "! curl -sf --noproxy '*' -m 2 '$url/api/v1/health' >/dev/null"

echo "$((checks - failures)) passed, $failures failed"
[[ $failures == 0 ]]
