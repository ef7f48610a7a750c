#!/usr/bin/env bash
# The test hosts themselves: three hosts come up with their own names, addresses, sshd, /etc and
# local disk, reach each other and nothing else, and leave nothing behind when torn down.
#   hosts_test.sh DIR
set -euo pipefail
source "$(dirname "$0")/testhosts.sh"
dir=${1:?usage: hosts_test.sh DIR}
rm -rf "$dir"
failures=0
checks=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  checks=$((checks + 1))
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what" >&2; failures=$((failures + 1)); fi
}

trap testhosts_down EXIT
testhosts_up hst 21 "$dir"

names=$(for i in 1 2 3; do th_ssh "$i" hostname; done | sort -u | wc -l)
check "three distinct host names" test "$names" = 3
check "host 1 is named ${TH_NAME[1]}" test "$(th_ssh 1 hostname)" = "${TH_NAME[1]}"
check "no default route on a host" test -z "$(th_ssh 2 ip route show default)"
# No packet leaves: the kernel finds no route before sending anything.
check "an outside address is unreachable from a host" \
  sh -c "! ssh -F '$TH_SSH_CONFIG' '${TH_ADDR[1]}' ip route get 192.0.2.1 2>/dev/null"
check "host 1 reaches host 3's sshd" \
  th_ssh 1 "ssh -F '$TH_SSH_CONFIG' '${TH_ADDR[3]}' hostname | grep -qx '${TH_NAME[3]}'"
th_ssh 1 "echo one >'$dir/local/mark'; echo 'h1-only:x:12345:' >>/etc/group"
check "the local disk is the host's own" sh -c "th_ssh() { ssh -F '$TH_SSH_CONFIG' \"\$@\"; }
  [ \"\$(th_ssh '${TH_ADDR[1]}' cat '$dir/local/mark')\" = one ] &&
  ! th_ssh '${TH_ADDR[2]}' test -e '$dir/local/mark' && [ ! -e '$dir/local/mark' ]"
check "/etc changes stay on their host" sh -c \
  "ssh -F '$TH_SSH_CONFIG' '${TH_ADDR[2]}' '! grep -q h1-only /etc/group' && ! grep -q h1-only /etc/group"
check "the shared directory is shared" sh -c \
  "ssh -F '$TH_SSH_CONFIG' '${TH_ADDR[3]}' 'echo three >$dir/shared-mark' && grep -qx three '$dir/shared-mark'"
check "root's .bashrc is empty on a host" test "$(th_ssh 1 'wc -c </root/.bashrc')" = 0
check "th_enter runs inside host 2" test "$(th_enter 2 hostname)" = "${TH_NAME[2]}"

# A process left running on a host is killed by the teardown, by pid.
th_ssh 2 'nohup sleep 600 >/dev/null 2>&1 & echo $!' >"$dir/sleeper.pid"
sleeper=$(cat "$dir/sleeper.pid")
check "a process runs on host 2" th_alive "$sleeper"
namespaces=("${TH_NS[@]}" "$TH_PREFIX-sw")
testhosts_down
check "the teardown killed host 2's process" eval "! th_alive $sleeper"
for ns in "${namespaces[@]}"; do
  check "namespace $ns is gone" sh -c "! ip netns list | grep -qw '^$ns'"
done
check "the root namespace's link is gone" sh -c "! ip link show '$TH_PREFIX-root' 2>/dev/null"
check "the root namespace has no address on the test subnet" \
  sh -c "! ip -4 addr show | grep -q '${TH_SUBNET_BASE}\.'"

echo "$((checks - failures)) passed, $failures failed"
[[ $failures == 0 ]]
