# syntax=docker/dockerfile:1
#
# The lstm-predictor daemon with the shipped models and the runtime dependencies only
# (onnxruntime, aiohttp, ...): no TensorFlow, tf2onnx, Keras or onnx in the image.
# Needs BuildKit (the default builder since Docker Engine 23) for RUN --mount.
#
#   docker build -t lstm-predictor .
#
# Stages:
#   build             builds the lstm-predictor wheel (docker/build-wheel.sh)
#   models-shipped    the repository's models/ exactly as committed: the default
#                     (fast, nothing trained or converted, the same models every build)
#   models-converted  models/ plus one Keras model from the build context converted into
#                     a bundle by `lstm-predictor convert`; only this stage installs the
#                     train extra (TensorFlow, tf2onnx), and only when it is asked for:
#                       docker build --build-arg MODELS=converted \
#                         --build-arg KERAS_MODEL=path/in/context/model.keras \
#                         --build-arg SYMBOL=BBAS3.SA \
#                         [--build-arg CONVERT_FLAGS="--normalisation window_last --int8"] .
#   runtime           the image: the wheel installed by docker/install-runtime.sh (the
#                     steps tests/test_docker.py runs), the models, user 10001
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG MODELS=shipped

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY lstm_predictor lstm_predictor
COPY daemon daemon
COPY convert convert
COPY training training
COPY systemd systemd
COPY docker/build-wheel.sh docker/
RUN PIP_NO_CACHE_DIR=1 sh docker/build-wheel.sh /dist

FROM scratch AS models-shipped
COPY models /models

FROM build AS models-converted
ARG KERAS_MODEL
ARG SYMBOL
ARG CONVERT_FLAGS=
RUN PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore python -m pip install "$(echo /dist/lstm_predictor-*.whl)[train]"
COPY models /models
# The build context is mounted, so KERAS_MODEL and any file CONVERT_FLAGS names are paths in it.
WORKDIR /context
# CONVERT_FLAGS is split into words on purpose: it holds zero or more flags (--int8 --csv F).
# hadolint ignore=SC2086
RUN --mount=type=bind,target=/context \
    sh docker/convert-model.sh "$KERAS_MODEL" "$SYMBOL" /models $CONVERT_FLAGS

# Picks models-shipped or models-converted; BuildKit builds only the stage picked. A stage
# name, not an image, so there is no tag to pin (DL3006).
# hadolint ignore=DL3006
FROM models-${MODELS} AS models

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="lstm-predictor" \
      org.opencontainers.image.description="Stock-forecasting LSTM served from ONNX on a plain CPU" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The wheel and the install script are mounted, not copied: neither stays in a layer.
RUN --mount=type=bind,from=build,source=/dist,target=/tmp/dist \
    --mount=type=bind,source=docker,target=/tmp/docker \
    PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore sh /tmp/docker/install-runtime.sh /tmp/dist \
    && groupadd --system --gid 10001 lstm-predictor \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/lstm-predictor --create-home \
       --shell /usr/sbin/nologin lstm-predictor \
    && install -d -o 10001 -g 10001 /var/cache/lstm-predictor
# Owned by root: the daemon reads its models and cannot change them.
COPY --from=models /models /opt/lstm-predictor/models
# Numeric, so that a runtime can check it is not root (Kubernetes' runAsNonRoot).
USER 10001:10001
# Inside its container the daemon listens on every interface: the container's network is
# the boundary, and publishing the port (-p) is the choice to expose it. For a bearer
# token, mount a file as a secret and point LSTM_PREDICTOR_TOKEN_FILE at it (README, Docker).
# The drain fits in Docker's default 10 s between SIGTERM and SIGKILL.
ENV LSTM_PREDICTOR_HOST=0.0.0.0 \
    LSTM_PREDICTOR_ALLOW_REMOTE=true \
    LSTM_PREDICTOR_PORT=8000 \
    LSTM_PREDICTOR_MODELS=/opt/lstm-predictor/models \
    LSTM_PREDICTOR_DEFAULT_MODEL=PETR4.SA \
    LSTM_PREDICTOR_CACHE_DIR=/var/cache/lstm-predictor \
    LSTM_PREDICTOR_DRAIN_TIMEOUT=8
EXPOSE 8000
# Liveness on /health (never behind the token), on the port the daemon was given; http.client
# rather than urllib, so that a proxy set in the environment cannot intercept it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import http.client as h, os, sys; c = h.HTTPConnection('127.0.0.1', int(os.environ.get('LSTM_PREDICTOR_PORT', '8000')), timeout=2); c.request('GET', '/health'); sys.exit(c.getresponse().status != 200)"]
# SIGTERM drains in-flight requests and exits 0; SIGHUP (docker kill -s HUP) reloads the models.
STOPSIGNAL SIGTERM
ENTRYPOINT ["lstm-predictor", "serve"]
