#!/usr/bin/env bash
# The compose topology, for real (run by .ci/run after the unit tests; see docs/scaling.md).
#
# Installs Docker from Debian's packages if it is missing, starts dockerd if none is
# running (and stops the one it started), builds stand-ins for the public base images
# when no registry can be reached (scripts/docker-standins.sh), builds the image, checks
# that no compiler, cache or test file is in it, brings up docker-compose.yml plus
# tests/compose/docker-compose.test.yml (fake Amplitude and VWO), and runs
# tests/compose/check.py: the README's first example through the published port, events
# at the fake Amplitude through JetStream and the forwarder, the forwarder SIGKILLed
# mid-stream with nothing lost, every service healthy. Then `docker-compose down -v`.
#
# COMPOSE_TEST=skip skips it (e.g. on a machine without root). Needs root otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${COMPOSE_TEST:-}" = skip ]; then
  echo "compose-test: skipped (COMPOSE_TEST=skip)" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "compose-test: needs root (apt-get, dockerd); COMPOSE_TEST=skip to skip" >&2
  exit 1
fi

t0=$(date +%s)
elapsed() { echo $(($(date +%s) - t0)); }
log() { echo "compose-test [$(elapsed) s]: $*" >&2; }
export DOCKER_BUILDKIT=0  # Debian's docker.io has the classic builder only

# -- Docker ---------------------------------------------------------------------------------
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
  log "installing docker.io and docker-compose from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io docker-compose debootstrap >/dev/null
fi

STATE=${COMPOSE_TEST_STATE:-/var/tmp/metrics-router-compose-test}
mkdir -p "$STATE"
started_dockerd=""
project="mrcompose$$"
files=(-f docker-compose.yml -f tests/compose/docker-compose.test.yml)
compose() { docker-compose -p "$project" "${files[@]}" "$@"; }

cleanup() {
  local code=$?
  if [ -n "${up:-}" ]; then
    if [ "$code" -ne 0 ]; then
      compose ps >&2 || true
      compose logs --no-color --tail 40 >&2 || true
    fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  if [ -n "$started_dockerd" ]; then
    log "stopping the dockerd it started (pid $started_dockerd)"
    kill "$started_dockerd" 2>/dev/null || true
    wait "$started_dockerd" 2>/dev/null || true
  fi
  exit "$code"
}
trap cleanup EXIT

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (vfs storage, no iptables)"
  dockerd --storage-driver=vfs --iptables=false >"$STATE/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$started_dockerd" 2>/dev/null || { cat "$STATE/dockerd.log" >&2; exit 1; }
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up"; exit 1; }
fi

# -- images -----------------------------------------------------------------------------------
base=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)
nats=$(sed -n 's/^ *image: \(nats:.*\)$/\1/p' docker-compose.yml)
memcached=$(sed -n 's/^ *image: \(memcached:.*\)$/\1/p' docker-compose.yml)
image=$(sed -n 's/^ *image: \(metrics-router:.*\)$/\1/p' docker-compose.yml | head -1)
scripts/docker-standins.sh "$base" "$nats" "$memcached"
t_bases=$(elapsed)

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
log "building $image at $commit (classic builder)"
docker build -q --network host --build-arg VERSION_COMMIT="$commit" -t "$image" . >/dev/null
t_build=$(elapsed)

log "checking the image: no compiler, cache, test or source file"
user=$(docker image inspect --format '{{.Config.User}}' "$image")
case "$user" in "" | root | 0) log "the image runs as root"; exit 1 ;; esac
docker run --rm --user root --entrypoint sh "$image" -c '
  set -e
  for tool in gcc cc c++ g++ clang make; do
    if command -v "$tool" >/dev/null; then echo "compiler in the image: $tool"; exit 1; fi
  done
  site=$(python -c "import os, router; print(os.path.dirname(router.__file__))")
  bad=$(find / -xdev \( -path /proc -o -path /sys \) -prune -o \( \
      -path "*/.cache/pip" -o -path /src -o -path /dist -o -path /out -o -name .git \
      -o -name .venv -o -path "$site/*" -name "test*" -o -path "$site/*" -name conftest.py \
      -o -path "/opt/*.whl" -o -path "/tmp/*.whl" \) -print)
  if [ -n "$bad" ]; then echo "not for the image: $bad"; exit 1; fi
  test -f /app/version.json
  # The user it runs as can write where the service writes.
  su -s /bin/sh "$0" -c "touch \$HOME/.w && rm \$HOME/.w"
' "$user"
size=$(docker image inspect --format '{{.Size}}' "$image")

# -- the topology -----------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
router_port=$(free_port)
fakes_port=$(free_port)
export ROUTER_PUBLISH="127.0.0.1:$router_port" FAKES_PUBLISH="$fakes_port" ROUTER_IMAGE="$image"
export FLOW_KEY=compose-test-flow-key-0123456789abcdef ID_KEY=compose-test-id-key-0123456789
export AMPLITUDE_API_KEY=test-api-key VWO_ACCOUNT_ID=123456 VWO_SDK_KEY=example-sdk-key

log "docker-compose up ($project)"
up=1
compose up -d --no-build >/dev/null 2>&1 || { compose up -d --no-build; exit 1; }
t_up=$(elapsed)
python3 - "$router_port" <<'EOF'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/__lbheartbeat__"
for _ in range(600):  # the router is up when its published port answers
    try:
        urllib.request.urlopen(url, timeout=2)
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit(f"router never answered on {url}")
EOF
t_ready=$(elapsed)

log "checks"
figures=$(EXPECT_COMMIT="$commit" python3 -m tests.compose.check "http://127.0.0.1:$router_port" \
  "http://127.0.0.1:$fakes_port" -- docker-compose -p "$project" "${files[@]}")
t_checks=$(elapsed)
compose down -v --remove-orphans >/dev/null 2>&1
up=""
t_down=$(elapsed)

echo "$figures"
cat <<EOF
compose-test: passed in $t_down s: base images ${t_bases} s, image build $((t_build - t_bases)) s \
($((size / 1000000)) MB), up $((t_up - t_build)) s, router answering $((t_ready - t_up)) s, \
checks $((t_checks - t_ready)) s, down $((t_down - t_checks)) s
EOF
