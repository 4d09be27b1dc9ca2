"""Run the real daemon as a subprocess, for end-to-end tests.

``python -m lstm_predictor serve`` on a free loopback port, with the given
models directory, market-data directory, flags and environment; started when
``/health`` answers 200 and stopped with SIGTERM. Fixtures (imported by
``tests/conftest.py``, so any test can ask for them):

* ``start_daemon``: a factory ``start_daemon(models, prices=None, args=(), env=None, healthy=True) -> RunningDaemon``
  (``healthy=False``: return at once, without waiting for ``/health``);
  every daemon it started is stopped (SIGTERM, then SIGKILL) at teardown.
* ``models_dir``: a temporary models directory with one tiny bundle ``TINY3.SA``
  (predicts the mean of its window; see ``tiny_bundle.py``).
* ``prices_dir``: a temporary CSV directory with ``TINY3.SA.csv``: 120 B3
  sessions ending on Friday 2024-02-09, the session before Carnival.

Example::

    def test_something(start_daemon, models_dir, prices_dir):
        daemon = start_daemon(models_dir, prices_dir)
        reply = daemon.post("/predict/live", {"symbol": "TINY3.SA"})
        assert reply.status == 200
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Environment variables a developer's shell may carry that would change what a test runs.
_SCRUBBED_PREFIXES = ("LSTM_PREDICTOR_",)
_SCRUBBED = {"MODEL_PATH", "METADATA_PATH", "LOOK_BACK", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}

TINY_SYMBOL = "TINY3.SA"
LAST_SESSION = dt.date(2024, 2, 9)  # Friday before Carnival (12-13 Feb 2024)
SESSIONS = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def daemon_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(extra or {})
    return env


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lstm_predictor", "serve", *args]


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RunningDaemon:
    """A daemon subprocess and a tiny HTTP client for it (one connection per request)."""

    def __init__(self, process: subprocess.Popen, port: int, stderr_path: Path) -> None:
        self.process = process
        self.port = port
        self.stderr_path = stderr_path
        self.url = f"http://127.0.0.1:{port}"

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, timeout: float = 30.0) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, payload: Any) -> Reply:
        return self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the daemon exited with {self.process.returncode} before becoming healthy:\n{self.stderr}")
            try:
                if self.get("/health").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the daemon was not healthy within {timeout:g} s:\n{self.stderr}")

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the daemon did not stop within {timeout:g} s of SIGTERM:\n{self.stderr}") from None


def launch(models: Path | None, prices: Path | None = None, args: Sequence[str] = (),
           env: Mapping[str, str] | None = None, log_dir: Path | None = None) -> RunningDaemon:
    """Start a daemon without waiting for it (see :meth:`RunningDaemon.wait_healthy`)."""
    port = free_port()
    argv = ["--host", "127.0.0.1", "--port", str(port)]
    if models is not None:
        argv += ["--models", str(models)]
    if prices is not None:
        argv += ["--market-data", str(prices)]
    return spawn(serve_command(*argv, *args), port, env, log_dir)


def spawn(command: Sequence[str], port: int, env: Mapping[str, str] | None = None,
          log_dir: Path | None = None) -> RunningDaemon:
    """Start ``command``, a daemon that will listen on ``port``, without waiting for it;
    its output goes to a log file in ``log_dir``."""
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="daemon-"))
    stderr_path = log_dir / f"daemon-{port}.stderr"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(list(command), env=daemon_env(env), stdin=subprocess.DEVNULL,
                                   stdout=stderr, stderr=stderr)
    return RunningDaemon(process, port, stderr_path)


def run_to_exit(args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``serve`` expecting it to exit by itself (a start-up failure)."""
    return subprocess.run(serve_command(*args), env=daemon_env(env), capture_output=True, text=True, timeout=timeout)


def write_prices(directory: Path, symbol: str = TINY_SYMBOL, last: dt.date = LAST_SESSION,
                 sessions: int = SESSIONS) -> Path:
    """A ``Date,Close`` file of ``sessions`` B3 trading days ending on ``last``: a gentle,
    deterministic wave around R$ 30."""
    from lstm_predictor.daemon.trading_calendar import is_trading_day

    days: list[dt.date] = []
    day = last
    while len(days) < sessions:
        if is_trading_day(day):
            days.append(day)
        day -= dt.timedelta(days=1)
    days.reverse()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{symbol}.csv"
    lines = ["Date,Close"] + [f"{d.isoformat()},{30 + 2 * ((i % 20) - 10) / 10:.2f}" for i, d in enumerate(days)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    started: list[RunningDaemon] = []

    def start(models: Path | None, prices: Path | None = None, args: Sequence[str] = (),
              env: Mapping[str, str] | None = None, timeout: float = 60.0, healthy: bool = True) -> RunningDaemon:
        daemon = launch(models, prices, args, env, log_dir=tmp_path)
        started.append(daemon)
        if healthy:
            daemon.wait_healthy(timeout)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGCONT)  # a test may have left it stopped (SIGSTOP)
            daemon.process.send_signal(signal.SIGTERM)
            try:
                daemon.process.wait(10)
            except subprocess.TimeoutExpired:
                daemon.process.kill()
                daemon.process.wait()


@pytest.fixture
def models_dir(tiny_bundle: Path) -> Path:
    return tiny_bundle.parent


@pytest.fixture
def prices_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "prices"
    write_prices(directory)
    return directory
