# Two entry points for a fresh machine:
#   make serve   the daemon with the shipped models, runtime-only install (no TensorFlow)
#   make test    everything the test suite needs (train + test extras, Prometheus, wrk), then the suite
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
RUN_VENV := .venv-run
DEV_VENV := .venv
# Debian packages the tests drive for real: Prometheus (and promtool), wrk, systemd-analyze.
TEST_DEBS := prometheus wrk systemd

.PHONY: serve test test-deps clean

$(RUN_VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/pip install --quiet --upgrade pip
	$(RUN_VENV)/bin/pip install --quiet -e .
	touch $@

serve: $(RUN_VENV)/.installed
	$(RUN_VENV)/bin/lstm-predictor serve --host $(HOST) --port $(PORT) --models models --default-model PETR4.SA

$(DEV_VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/pip install --quiet --upgrade pip
	$(DEV_VENV)/bin/pip install --quiet -e '.[train,test]'
	touch $@

test-deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "installing$$missing needs root: sudo apt-get install$$missing (tests that need them skip)"; fi; \
	fi

test: $(DEV_VENV)/.installed test-deps
	$(DEV_VENV)/bin/python -m pytest -q -rs -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(RUN_VENV) $(DEV_VENV) build *.egg-info
