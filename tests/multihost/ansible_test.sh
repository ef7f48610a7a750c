#!/usr/bin/env bash
# The ansible play against three test hosts, over ssh, as a lab runs it: a wrong variable stops
# it before anything changes; it deploys the coordinator (host 1) and an agent on every host
# (start-stop-daemon: the hosts have no systemd); the agents register; a second run changes
# nothing and keeps the token; `--tags stop` stops every daemon.
#   ansible_test.sh BIN_DIR SOURCE_DIR DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/testhosts.sh"
bin=${1:?usage: ansible_test.sh BIN_DIR SOURCE_DIR DIR}
src=${2:?usage: ansible_test.sh BIN_DIR SOURCE_DIR DIR}
dir=${3:?usage: ansible_test.sh BIN_DIR SOURCE_DIR DIR}
command -v ansible-playbook >/dev/null || { echo "SKIP: needs ansible (scripts/setup.sh)"; exit 77; }
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
    vitscale_coordinator_lease_seconds: 10
  children:
    vitscale_coordinator:
      hosts:
        h1: {ansible_host: ${TH_ADDR[1]}}
    vitscale_agents:
      hosts:
        h1: {ansible_host: ${TH_ADDR[1]}, vitscale_agent_slots: 2, vitscale_agent_gpus: 0}
        h2: {ansible_host: ${TH_ADDR[2]}, vitscale_agent_slots: 1, vitscale_agent_gpus: 0}
        h3: {ansible_host: ${TH_ADDR[3]}, vitscale_agent_slots: 1, vitscale_agent_gpus: 0}
INVENTORY
export ANSIBLE_CONFIG=$src/ansible/ansible.cfg ANSIBLE_LOCAL_TEMP=$dir/ansible-tmp \
  ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
play() {  # play LOG ARGS...: the play's exit status; its output in LOG
  local log=$1
  shift
  local rc=0
  ansible-playbook -i "$dir/inventory.yml" "$src/ansible/site.yml" "$@" >"$log" 2>&1 || rc=$?
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
  [[ $registered == "${TH_ADDR[1]}:2 ${TH_ADDR[2]}:1 ${TH_ADDR[3]}:1" ]] && break
  sleep 0.2
done
check "the three agents registered with their slots ($registered)" \
  test "$registered" = "${TH_ADDR[1]}:2 ${TH_ADDR[2]}:1 ${TH_ADDR[3]}:1"
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

# 4. The stop tag stops every daemon on every host.
pids=()
for i in 1 2 3; do pids+=("$(th_ssh "$i" cat "$local_root/run/vitscale/vitscale-agent.pid")"); done
pids+=("$coordinator_pid")
play "$dir/play-stop.log" --tags stop || tail -30 "$dir/play-stop.log" >&2
for pid in "${pids[@]}"; do check "daemon $pid has stopped" eval "! th_alive $pid"; done
check "the coordinator no longer answers" sh -c "! curl -sf --noproxy '*' -m 2 '$url/api/v1/health' >/dev/null"

echo "$((checks - failures)) passed, $failures failed"
[[ $failures == 0 ]]
