# Multi-stage: the build stage makes a wheel; the runtime image installs only the
# runtime dependencies (onnxruntime, aiohttp, ...): no TensorFlow, tf2onnx or Keras.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY lstm_predictor lstm_predictor
COPY daemon daemon
COPY convert convert
COPY training training
COPY systemd systemd
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --no-create-home --home-dir /var/lib/lstm-predictor lstm-predictor \
    && mkdir -p /var/cache/lstm-predictor && chown lstm-predictor /var/cache/lstm-predictor
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY models /opt/lstm-predictor/models
USER lstm-predictor
ENV LSTM_PREDICTOR_HOST=0.0.0.0 \
    LSTM_PREDICTOR_PORT=8000 \
    LSTM_PREDICTOR_MODELS=/opt/lstm-predictor/models \
    LSTM_PREDICTOR_DEFAULT_MODEL=PETR4.SA \
    LSTM_PREDICTOR_CACHE_DIR=/var/cache/lstm-predictor
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
# SIGTERM drains in-flight requests; SIGHUP reloads the models folder.
STOPSIGNAL SIGTERM
ENTRYPOINT ["lstm-predictor", "serve"]
