"""The daemon's life end to end: start-up failures, SIGHUP reloads, SIGTERM drains.
(What systemd hears of it is in test_notify_daemon.py.)"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from daemon_harness import RunningDaemon, free_port, run_to_exit
from tiny_bundle import make_tiny_bundle

WINDOW = [round(20 + 0.1 * i, 2) for i in range(60)]


def wait_for(condition: Callable[[], object], what: str, daemon: RunningDaemon, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}:\n{daemon.stderr}")


def reload_and_wait(daemon: RunningDaemon) -> dict:
    """SIGHUP, then the health report once that reload has finished (its last_reload changed)."""
    before = daemon.get("/health").json()["last_reload"]
    daemon.signal(signal.SIGHUP)
    return wait_for(lambda: (h := daemon.get("/health").json())["last_reload"] != before and h,
                    "the reload to finish", daemon)


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


# -- start-up ---------------------------------------------------------------------------------------


def test_a_broken_bundle_at_start_exits_1_naming_it(tmp_path: Path) -> None:
    make_tiny_bundle(tmp_path / "models" / "TINY3.SA")
    (tmp_path / "models" / "BAD3.SA").mkdir()
    (tmp_path / "models" / "BAD3.SA" / "model.onnx").write_bytes(b"")
    (tmp_path / "models" / "BAD3.SA" / "metadata.json").write_text("{", encoding="utf-8")
    result = run_to_exit(["--models", str(tmp_path / "models"), "--port", str(free_port())])
    assert result.returncode == 1
    assert "BAD3.SA" in result.stderr and "metadata.json is not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_corrupted_model_file_at_start_exits_1(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "models" / "TINY3.SA")
    with open(bundle / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    result = run_to_exit(["--models", str(tmp_path / "models"), "--port", str(free_port())])
    assert result.returncode == 1 and "sha256" in result.stderr


def test_an_empty_models_directory_exits_1(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    result = run_to_exit(["--models", str(tmp_path / "models"), "--port", str(free_port())])
    assert result.returncode == 1 and "holds no bundle" in result.stderr


def test_a_port_in_use_exits_1(models_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_to_exit(["--models", str(models_dir), "--port", str(port)])
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_a_bad_flag_value_exits_2_naming_it(models_dir: Path) -> None:
    result = run_to_exit(["--models", str(models_dir), "--max-batch-size", "zero"])
    assert result.returncode == 2 and "--max-batch-size" in result.stderr and "'zero'" in result.stderr


# -- SIGHUP ------------------------------------------------------------------------------------------


def test_sighup_adds_a_new_bundle_and_swaps_a_changed_one(start_daemon, models_dir: Path) -> None:
    daemon = start_daemon(models_dir)
    assert daemon.post("/predict", {"prices": WINDOW}).json()["model_version"] == "1"
    make_tiny_bundle(models_dir / "OTHER3.SA", symbol="OTHER3.SA")
    make_tiny_bundle(models_dir / "TINY3.SA", version="2")

    health = reload_and_wait(daemon)

    assert health["status"] == "healthy" and health["last_reload"]["ok"] is True
    assert sorted(health["models"]) == ["OTHER3.SA", "TINY3.SA"]
    assert health["models"]["TINY3.SA"]["version"] == "2"
    assert daemon.post("/predict", {"symbol": "TINY3.SA", "prices": WINDOW}).json()["model_version"] == "2"
    assert daemon.post("/predict", {"symbol": "OTHER3.SA", "prices": WINDOW}).status == 200
    assert daemon.stop() == 0


def test_sighup_with_a_broken_bundle_keeps_the_old_set_and_reports_degraded(start_daemon, models_dir: Path) -> None:
    daemon = start_daemon(models_dir)
    bad = models_dir / "BAD3.SA"
    make_tiny_bundle(bad, symbol="BAD3.SA")
    (bad / "model.onnx").write_bytes(b"not an onnx graph")  # no longer matches its recorded sha256

    health = reload_and_wait(daemon)

    assert daemon.get("/health").status == 200
    assert health["status"] == "degraded" and health["last_reload"]["ok"] is False
    assert "BAD3.SA" in health["last_reload"]["message"] and "sha256" in health["last_reload"]["message"]
    assert list(health["models"]) == ["TINY3.SA"]
    assert daemon.post("/predict", {"prices": WINDOW}).status == 200
    assert "lstm_predictor_last_reload_successful 0.0" in daemon.get("/metrics").body.decode()

    shutil.rmtree(bad)
    health = reload_and_wait(daemon)
    assert health["status"] == "healthy" and health["last_reload"]["ok"] is True
    assert daemon.stop() == 0


def test_requests_during_reloads_all_succeed(start_daemon, models_dir: Path) -> None:
    daemon = start_daemon(models_dir)

    def forecasts(_: int) -> list[int]:
        body = {"days": 10, "prices": WINDOW, "last_date": "2024-02-09"}
        return [daemon.post("/predict/forecast", body).status for _ in range(15)]

    with ThreadPoolExecutor(4) as pool:
        results = pool.map(forecasts, range(4))
        for version in ("2", "3", "4"):
            make_tiny_bundle(models_dir / "TINY3.SA", version=version)
            daemon.signal(signal.SIGHUP)
            time.sleep(0.2)
        statuses = [status for batch in results for status in batch]
    assert statuses == [200] * 60
    wait_for(lambda: daemon.get("/health").json()["models"]["TINY3.SA"]["version"] == "4", "version 4", daemon)
    assert daemon.stop() == 0


# -- SIGTERM -----------------------------------------------------------------------------------------

UPLOADED = 10  # bytes of each body sent before the rest is held back
# A daemon whose clients hold their bodies back for as long as a test needs: the default
# body_timeout (10 s) would answer them 408 first on a slow or busy machine.
PATIENT_WITH_BODIES = ("--body-timeout", "300")


def begin_uploads(daemon: RunningDaemon, path: str, body: bytes, count: int) -> list[socket.socket]:
    """``count`` POSTs of ``body`` to ``path`` with only the head and the first bytes of the body
    sent: the daemon has received them, and their handlers wait for the rest."""
    head = (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", daemon.port), timeout=30)
        client.sendall(head + body[:UPLOADED])
        clients.append(client)
    return clients


def finish_uploads(clients: list[socket.socket], body: bytes) -> list[bytes]:
    """Send the rest of each body; each whole raw answer (the daemon closes after it)."""
    for client in clients:
        client.sendall(body[UPLOADED:])
    answers = []
    for client in clients:
        with client:
            answers.append(b"".join(iter(lambda c=client: c.recv(65536), b"")))
    return answers


def test_sigterm_drains_in_flight_requests_then_exits_0(start_daemon, models_dir: Path) -> None:
    daemon = start_daemon(models_dir, args=PATIENT_WITH_BODIES)
    body = json.dumps({"prices": WINDOW}).encode()
    clients = begin_uploads(daemon, "/predict", body, 5)
    # 5 requests in flight, plus the stats request that counts them.
    wait_for(lambda: daemon.get("/monitoring/stats").json()["requests"]["in_flight"] >= 6, "5 requests in flight", daemon)

    daemon.signal(signal.SIGTERM)
    wait_for(lambda: "draining in-flight requests" in daemon.stderr, "the drain to begin", daemon)
    wait_for(lambda: not accepts_connections(daemon.port), "the listening socket to close", daemon)

    answers = finish_uploads(clients, body)
    assert all(a.startswith(b"HTTP/1.1 200 OK") for a in answers), answers
    assert all(b'"predicted_price"' in a for a in answers)
    assert daemon.process.wait(30) == 0, daemon.stderr
