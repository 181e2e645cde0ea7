#!/bin/sh
# pip install into the image's environment (/opt/wsp), during an image build: from the wheels in /wheels
# alone when the build context had any in wheelhouse/ (a host without internet), from the index otherwise.
#   sh docker/install.sh -r requirements.txt
set -eu
WHEELS=${WHEELS:-/wheels}
PIP=${PIP:-/opt/wsp/bin/pip}
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  set -- --no-index --find-links "$WHEELS" "$@"
fi
exec "$PIP" install "$@"
