"""Shared fixtures. Real price files and the original model live in ``../shared``
beside the repository; tests that need them skip where it is absent (a user's clone)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# The real-daemon fixtures (start_daemon, models_dir, prices_dir): see tests/daemon_harness.py.
from daemon_harness import models_dir, prices_dir, start_daemon  # noqa: F401
# systemd's end of NOTIFY_SOCKET (notify_listener, notify_path_listener): see tests/notify_listener.py.
from notify_listener import notify_listener, notify_path_listener  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MODELS = REPO / "models"


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"real data not available ({SHARED} is absent)")
    return SHARED


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus' checker (Debian package ``prometheus``)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


@pytest.fixture(scope="session")
def seed_keras_file(shared_dir: Path) -> Path:
    path = shared_dir / "seed-model" / "lstm_petr4_final.keras"
    if not path.is_file():
        pytest.skip(f"the original model is not available ({path})")
    return path


@pytest.fixture(scope="session")
def seed_bundle(seed_keras_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The original model converted into a bundle by the real converter (needs the train extra)."""
    from lstm_predictor.convert.keras_model import load_keras_model
    from lstm_predictor.convert.keras_to_onnx import convert_model

    out = tmp_path_factory.mktemp("seed") / "PETR4.SA"
    convert_model(load_keras_model(seed_keras_file), out, symbol="PETR4.SA", normalisation="window_first")
    return out


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    """A real bundle whose graph predicts the window's mean (see tests/tiny_bundle.py)."""
    from tiny_bundle import make_tiny_bundle

    return make_tiny_bundle(tmp_path / "models" / "TINY3.SA")


@pytest.fixture(scope="session")
def api_daemon(tmp_path_factory: pytest.TempPathFactory):
    """One real daemon for the protocol and documentation tests: the tiny TINY3.SA bundle
    (version "1"), its CSV prices, and a 16 KiB body limit."""
    from daemon_harness import launch, write_prices
    from tiny_bundle import make_tiny_bundle

    root = tmp_path_factory.mktemp("api-daemon")
    make_tiny_bundle(root / "models" / "TINY3.SA")
    write_prices(root / "prices")
    daemon = launch(root / "models", root / "prices", ["--max-body-bytes", "16384"], log_dir=root)
    daemon.wait_healthy()
    yield daemon
    assert daemon.stop() == 0, daemon.stderr
