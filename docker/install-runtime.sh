#!/bin/sh
# The daemon's runtime install: the wheel that build-wheel.sh made, with its runtime
# dependencies only (onnxruntime, aiohttp, ...; no TensorFlow, tf2onnx, Keras or onnx),
# every one pinned by runtime-constraints.txt beside this script.
# The Docker image's runtime stage runs this; tests/test_docker.py runs it into a fresh
# virtual environment and serves from there, so these are the steps the suite verifies.
# Usage: docker/install-runtime.sh WHEEL_DIR      (installs into the first `python` on PATH)
#
# No --no-cache-dir here: the image sets PIP_NO_CACHE_DIR=1 for this step (no cache in a
# layer), while the suite keeps pip's cache so it does not download everything every run.
set -eu
[ "$#" -eq 1 ] || { echo "usage: $0 WHEEL_DIR" >&2; exit 2; }
here=$(dirname "$0")
set -- "$1"/lstm_predictor-*.whl
if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
    echo "install-runtime.sh: expected exactly one lstm_predictor wheel, found: $*" >&2
    exit 2
fi
python -m pip install --disable-pip-version-check --constraint "$here/runtime-constraints.txt" "$1"
python -m pip check
