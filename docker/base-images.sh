#!/usr/bin/env bash
# Base images made on this host, for a Docker engine that cannot pull from an image registry: Debian
# bookworm (Python 3.11, Redis 7.0) from a Debian mirror with debootstrap, then `docker import`.
#
#   sudo docker/base-images.sh [--mirror URL] [--work DIR]
#
# Makes two images:
#   wsp-base/python:3.11-bookworm   python3.11 with venv: the base of the service and CPU worker images
#                                   (PYTHON_IMAGE=wsp-base/python:3.11-bookworm)
#   wsp-base/redis:7-bookworm       redis-server and redis-cli (REDIS_IMAGE=wsp-base/redis:7-bookworm)
# An image that already exists is kept (--force makes it again). Needs root, debootstrap and a running
# Docker engine; the .deb files are kept under --work so a second run downloads nothing.
set -euo pipefail

PYTHON_IMAGE=wsp-base/python:3.11-bookworm
REDIS_IMAGE=wsp-base/redis:7-bookworm
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
WORK=/var/tmp/wsp-base-images
FORCE=0
# Nothing a container reads at run time: documentation, manuals, translations, apt's lists and cache.
TRIM=(usr/share/doc usr/share/man usr/share/info usr/share/locale usr/share/lintian var/cache/apt
  var/lib/apt/lists var/log)

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
fail() { echo "base-images: error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --mirror) MIRROR=${2:?}; shift 2 ;;
    --work) WORK=${2:?}; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) fail "unknown argument $1 (see --help)" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || fail "debootstrap needs root: run it with sudo"
command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install debootstrap)"
docker info >/dev/null 2>&1 || fail "no Docker engine answers (start dockerd, or check DOCKER_HOST)"

# make_image TAG PACKAGES CHANGES...: a minbase bookworm with PACKAGES, trimmed, imported as TAG.
make_image() {
  local tag=$1 packages=$2 rootfs
  shift 2
  if [ "$FORCE" -eq 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base-images: $tag exists"
    return
  fi
  rootfs=$(mktemp -d "$WORK/rootfs.XXXXXX")
  echo "base-images: debootstrap $SUITE with $packages"
  debootstrap --variant=minbase --include="$packages" --cache-dir="$WORK/debs" \
    "$SUITE" "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; rm -rf "$rootfs"; fail "debootstrap failed (log: $WORK/debootstrap.log)"; }
  for path in "${TRIM[@]}"; do
    rm -rf "${rootfs:?}/$path"
  done
  mkdir -p "$rootfs/var/lib/apt/lists/partial" "$rootfs/var/cache/apt/archives/partial" "$rootfs/var/log"
  local changes=()
  for change in "$@"; do
    changes+=(--change "$change")
  done
  tar --numeric-owner -C "$rootfs" -c . | docker import "${changes[@]}" - "$tag" >/dev/null
  rm -rf "$rootfs"
  echo "base-images: $tag $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
}

mkdir -p "$WORK/debs"
make_image "$PYTHON_IMAGE" python3,python3-venv,ca-certificates \
  'ENV LANG=C.UTF-8' 'CMD ["python3"]'
make_image "$REDIS_IMAGE" redis-server \
  'ENV LANG=C.UTF-8' 'WORKDIR /data' 'EXPOSE 6379' 'CMD ["redis-server"]'
