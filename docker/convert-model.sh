#!/bin/sh
# The image's MODELS=converted step: convert one Keras model into a bundle beside the shipped
# ones, with `lstm-predictor convert` (it needs the train extra; it proves Keras/ONNX parity
# and writes nothing if they differ). tests/test_docker.py runs this step too.
# Usage: docker/convert-model.sh KERAS_MODEL SYMBOL MODELS_DIR [convert flags...]
set -eu
if [ "$#" -lt 3 ] || [ -z "$1" ] || [ -z "$2" ]; then
    echo "MODELS=converted needs --build-arg KERAS_MODEL=<file in the build context> and --build-arg SYMBOL=<ticker>" >&2
    exit 2
fi
keras=$1
symbol=$2
models=$3
shift 3
# --force: a bundle of the same symbol among the shipped ones is replaced.
exec lstm-predictor convert "$keras" --symbol "$symbol" --out "$models/$symbol" --force "$@"
