# Test hosts made of Linux namespaces, for the multi-host tests. Source this file, then:
#
#   testhosts_up TAG OCTET DIR [COUNT]   COUNT hosts (default 3) on 10.251.OCTET.0/24
#   testhosts_down                       removes everything testhosts_up made (idempotent)
#   th_ssh I COMMAND...                  runs COMMAND on host I (1-based) over its sshd
#   th_enter I COMMAND...                runs COMMAND inside host I's namespaces, without ssh
#
# Each host is a network namespace with its own sshd (config and keys made here), its own host
# name (a UTS namespace), and a mount namespace of its own in which
#   - /etc is an overlay whose changes stay in that host (users the deployment adds, say);
#   - DIR/local is a private tmpfs: the host's local disk, at the same path on every host;
#   - root's ~/.bashrc is an empty file (the machine's one starts a slow interpreter shim that
#     would run on every ssh command).
# Everything else, DIR included, is shared by all hosts, as an NFS mount is in a lab.
#
# The network: a bridge in a namespace of its own (the "switch"), so that the machine's own
# firewall and its net.bridge.bridge-nf-call-iptables setting never see the hosts' traffic; the
# switch's own copy of that sysctl is set to 0. The root namespace joins the switch at .1 (the
# ansible controller, mpirun's launcher); hosts are .11, .12, ... The hosts have no default
# route: anything but this subnet fails at once with "Network is unreachable".
#
# After testhosts_up: TH_ADDR[I] (host I's address), TH_NS[I] (its namespace), TH_NAME[I] (its
# host name), TH_SSH_CONFIG (an ssh client config for root on every host), TH_SUBNET, TH_GATEWAY.
# Call `trap testhosts_down EXIT` before testhosts_up: a half-made setup is removed too.
# Needs root, iproute2, util-linux (unshare, nsenter) and openssh-server (scripts/setup.sh).
# Where namespaces cannot be made (not root, or no permission), testhosts_up exits 77 (CTest's
# SKIP_RETURN_CODE) with the reason.

TH_SKIP=77
TH_ADDR=()
TH_NS=()
TH_NAME=()
TH_SSHD_PID=()
TH_MADE_SWITCH=""

th_log() { echo "testhosts: $*" >&2; }

# Whether process $1 lives (a zombie waiting for its reaper does not).
th_alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

th_skip() {
  echo "SKIP: $*" >&2
  exit "$TH_SKIP"
}

# Every process inside namespace $1, by pid: TERM, then KILL what is left.
th_kill_namespace() {
  local ns=$1 pids
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [[ -n $pids ]] || return 0
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 30); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n $pids ]] || return 0
    sleep 0.1
  done
  kill -KILL $pids 2>/dev/null || true
  for _ in $(seq 30); do
    [[ -n $(ip netns pids "$ns" 2>/dev/null) ]] || return 0
    sleep 0.1
  done
}

th_remove_namespace() {
  local ns=$1
  ip netns list 2>/dev/null | grep -qw "^$ns" || return 0
  th_kill_namespace "$ns"
  ip netns del "$ns" 2>/dev/null || th_log "cannot delete namespace $ns"
}

testhosts_down() {
  local i
  # The shared connections this namespace opened (those of the hosts die with them).
  for i in "${!TH_ADDR[@]}"; do
    ssh -F "$TH_SSH_CONFIG" -O exit "${TH_ADDR[$i]}" 2>/dev/null || true
  done
  for i in "${!TH_NS[@]}"; do th_remove_namespace "${TH_NS[$i]}"; done
  if [[ -n $TH_MADE_SWITCH ]]; then
    ip link del "$TH_PREFIX-root" 2>/dev/null || true
    th_remove_namespace "$TH_PREFIX-sw"
  fi
  TH_NS=()
  TH_MADE_SWITCH=""
}

# Leftovers of an earlier run with the same tag that could not clean up (killed with -9).
th_remove_stale() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$TH_PREFIX-" || true); do
    th_log "removing namespace $ns left by an earlier run"
    th_remove_namespace "$ns"
  done
  ip link del "$TH_PREFIX-root" 2>/dev/null || true
}

th_make_keys() {
  local dir=$1
  rm -f "$dir/client_key" "$dir/client_key.pub"
  ssh-keygen -q -t ed25519 -N '' -C vitscale-test-client -f "$dir/client_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"
  : >"$dir/empty_bashrc"
  cat >"$TH_SSH_CONFIG" <<EOF
Host $TH_SUBNET_BASE.*
  User root
  IdentityFile $dir/client_key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  BatchMode yes
  LogLevel ERROR
  ConnectTimeout 5
  # One connection per host and client host, reused by later commands (ansible runs many).
  ControlMaster auto
  ControlPath $dir/cm-%l-%h
  ControlPersist 300
EOF
}

# Host $1: namespace, link, address, then sshd in fresh UTS and mount namespaces.
th_make_host() {
  local i=$1 dir=$2 ns="$TH_PREFIX-h$1" name="$TH_PREFIX-h$1"
  local addr="$TH_SUBNET_BASE.$((10 + i))"
  local hostdir="$dir/hosts/h$i"
  ip netns add "$ns"
  TH_NS[$i]=$ns
  TH_ADDR[$i]=$addr
  TH_NAME[$i]=$name
  ip link add "$TH_PREFIX-h$i" netns "$TH_PREFIX-sw" type veth peer name eth0 netns "$ns"
  ip -n "$TH_PREFIX-sw" link set "$TH_PREFIX-h$i" master br0 up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up

  rm -rf "$hostdir"
  mkdir -p "$hostdir/etc-upper" "$hostdir/etc-work"
  ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$hostdir/host_key"
  cat >"$hostdir/sshd_config" <<EOF
ListenAddress $addr:22
HostKey $hostdir/host_key
PidFile $hostdir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
EOF
  # /run/sshd is sshd's privilege separation directory; systemd makes it where it runs.
  mkdir -p /run/sshd "$dir/local"
  ip netns exec "$ns" unshare --uts --mount --propagation private sh -ec "
    hostname '$name'
    mount -t overlay overlay -o lowerdir=/etc,upperdir='$hostdir/etc-upper',workdir='$hostdir/etc-work' /etc
    mount -t tmpfs -o mode=0755,size=2g local '$dir/local'
    mount --bind '$dir/empty_bashrc' /root/.bashrc
    exec /usr/sbin/sshd -D -e -f '$hostdir/sshd_config'" >"$hostdir/sshd.log" 2>&1 &
  TH_SSHD_PID[$i]=$!
}

testhosts_up() {
  local tag=$1 octet=$2 dir=$3 count=${4:-3} i
  if [[ $(id -u) != 0 ]]; then th_skip "test hosts need root (network namespaces, sshd)"; fi
  for tool in ip unshare nsenter ssh ssh-keygen /usr/sbin/sshd; do
    if ! command -v "$tool" >/dev/null; then
      th_log "test hosts need '$tool': run scripts/setup.sh"
      return 1
    fi
  done
  TH_PREFIX="vs$tag"
  TH_SUBNET_BASE="10.251.$octet"
  TH_SUBNET="$TH_SUBNET_BASE.0/24"
  TH_GATEWAY="$TH_SUBNET_BASE.1"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  TH_DIR=$dir
  TH_SSH_CONFIG="$dir/ssh_config"
  th_remove_stale
  if ! ip netns add "$TH_PREFIX-sw" 2>"$dir/netns.err"; then
    th_skip "cannot create a network namespace here: $(cat "$dir/netns.err")"
  fi
  TH_MADE_SWITCH=1
  # The switch: a bridge whose traffic no firewall of the machine sees.
  ip netns exec "$TH_PREFIX-sw" sh -c \
    'if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
       sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0
     fi'
  ip -n "$TH_PREFIX-sw" link add br0 type bridge
  ip -n "$TH_PREFIX-sw" link set br0 up
  ip link add "$TH_PREFIX-root" type veth peer name "$TH_PREFIX-r" netns "$TH_PREFIX-sw"
  ip -n "$TH_PREFIX-sw" link set "$TH_PREFIX-r" master br0 up
  ip addr add "$TH_GATEWAY/24" dev "$TH_PREFIX-root"
  ip link set "$TH_PREFIX-root" up

  th_make_keys "$dir"
  for ((i = 1; i <= count; i++)); do th_make_host "$i" "$dir"; done
  # sshd answers within a second or two; wait for every host's.
  for ((i = 1; i <= count; i++)); do
    local ok=""
    for _ in $(seq 100); do
      if ssh -F "$TH_SSH_CONFIG" -o ConnectTimeout=1 "${TH_ADDR[$i]}" true 2>/dev/null; then
        ok=1
        break
      fi
      kill -0 "${TH_SSHD_PID[$i]}" 2>/dev/null || break
      sleep 0.1
    done
    if [[ -z $ok ]]; then
      th_log "host $i (${TH_ADDR[$i]}) did not answer ssh; its sshd log:"
      cat "$dir/hosts/h$i/sshd.log" >&2
      return 1
    fi
  done
  th_log "$count hosts up on $TH_SUBNET: ${TH_ADDR[*]}"
}

th_ssh() {
  local i=$1
  shift
  ssh -F "$TH_SSH_CONFIG" "${TH_ADDR[$i]}" "$@"
}

# Inside host $1's network, mount and UTS namespaces (those of its sshd).
th_enter() {
  local i=$1
  shift
  nsenter -t "${TH_SSHD_PID[$i]}" -n -m -u "$@"
}
