#!/usr/bin/env bash
# Installs the Debian 12 packages vitscale builds and runs with. Idempotent: when every package
# is already installed it only checks them (a second or so) and touches nothing.
set -euo pipefail

# The package list is scripts/packages.txt (the ansible play installs from it too).
mapfile -t packages < <(sed -n 's/^[a-z]*:[[:space:]]*//p' "$(dirname "$0")/packages.txt" | tr -s ' \t' '\n\n' | grep .)
# Node.js and npm build the dashboard; the machine's own (newer) install is used when present.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#packages[@]} packages present"
fi

# The dashboard's npm packages, from its committed lock file; reinstalled only when it changed.
dashboards="$(dirname "$0")/../dashboards"
if [[ ! "$dashboards/node_modules/.package-lock.json" -nt "$dashboards/package-lock.json" ]]; then
  echo "setup: installing the dashboard's npm packages"
  (cd "$dashboards" && npm ci --no-audit --no-fund --loglevel=error)
fi
