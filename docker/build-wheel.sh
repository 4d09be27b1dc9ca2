#!/bin/sh
# Build the lstm-predictor wheel from the source tree in the current directory into DIR.
# The Docker image's build stage runs this; tests/test_docker.py runs it too, on the files
# that stage copies, so the wheel the suite installs is built the way the image's is.
# Usage: docker/build-wheel.sh DIR      (uses the first `python` on PATH)
set -eu
[ "$#" -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
# --no-deps: only our own wheel; the runtime stage resolves the dependencies.
python -m pip wheel --no-deps --wheel-dir "$1" .
