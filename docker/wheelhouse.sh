#!/usr/bin/env bash
# Fill wheelhouse/ with every wheel the images install, so that they build on a host without internet:
# run this where the package index is reachable, carry the folder along, and `docker compose build`
# installs from it alone (docker/install.sh).
#
#   docker/wheelhouse.sh [DIR]        (default: wheelhouse/ beside compose.yaml)
#
# The wheels must suit the images' Python: run it with Python 3.11 on Linux x86-64, e.g. on any host with
# Docker and internet:
#   docker run --rm -v "$PWD:/src" -w /src python:3.11-slim docker/wheelhouse.sh
# Projects published only as source are built into wheels here (pip wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-wheelhouse}
PYTHON=${PYTHON:-python3}
MARKER_PASSES=3 # rounds of adding what the added wheels need in turn

fail() { echo "wheelhouse: error: $*" >&2; exit 2; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || fail "$PYTHON is $("$PYTHON" -V 2>&1); the images run Python 3.11 (set PYTHON=python3.11, or run this in python:3.11-slim)"
[ "$(uname -m)" = x86_64 ] || fail "this is $(uname -m); the images are x86-64"

requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
"$PYTHON" docker/service_requirements.py --wheelhouse pyproject.toml >"$requirements"
mkdir -p "$DIR"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$DIR" -r "$requirements"
# What a dependency needs only under another patch release (redis: async-timeout before 3.11.3), so that
# the Python 3.11 of any base image (Debian 12: 3.11.2, Ubuntu 22.04: 3.11.0) finds all it installs.
for _ in $(seq "$MARKER_PASSES"); do
  "$PYTHON" docker/marker_requirements.py "$DIR" >"$requirements"
  [ -s "$requirements" ] || break
  "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$DIR" --find-links "$DIR" \
    -r "$requirements"
done
echo "wheelhouse: $(find "$DIR" -name '*.whl' | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR"
