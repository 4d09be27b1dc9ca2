"""The daemon under test as a process: start it and time it to ready, find it by port, read its memory."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_listening_on(port: int) -> int | None:
    """The pid of the process listening on a local TCP port (needs permission to see it)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


def rss_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


def cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU time the process has used so far."""
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def peak_rss_bytes(pid: int | None) -> int | None:
    """The process's peak resident set (Linux ``VmHWM``), or None where unavailable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, TypeError):
        pass
    return None


def serve_command(models: Path, port: int, extra: tuple[str, ...] = ()) -> list[str]:
    exe = shutil.which("lstm-predictor")
    prefix = [exe] if exe else [sys.executable, "-m", "lstm_predictor"]
    return [*prefix, "serve", "--models", str(models), "--host", "127.0.0.1", "--port", str(port), *extra]


@dataclass
class StartedDaemon:
    process: subprocess.Popen
    url: str
    ready_seconds: float  # from spawning the process to its READY=1
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM (the daemon drains and exits), then remove the log and notify socket."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.log_path.parent, ignore_errors=True)


def start(models: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> StartedDaemon:
    """Spawn ``lstm-predictor serve`` and wait for its systemd READY=1.

    The daemon sends READY=1 only once its models are loaded and warmed up, so
    listening on a notify socket of our own measures start-to-ready exactly
    as systemd sees it, with no polling granularity.
    """
    port = port or free_port()
    tmp = Path(tempfile.mkdtemp(prefix="lstm-bench-"))
    notify_path = tmp / "notify.sock"
    log_path = tmp / "daemon.log"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
    env.pop("WATCHDOG_USEC", None)
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(serve_command(models, port, extra), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = _wait_ready(sock, process, started)
    except BaseException as exc:
        process.kill()
        process.wait()
        log_tail = log_path.read_text(errors="replace").strip()[-2000:]
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, RuntimeError):
            raise RuntimeError(f"{exc}; its output:\n{log_tail}") from None
        raise
    finally:
        sock.close()
    return StartedDaemon(process, f"http://127.0.0.1:{port}", ready - started, log_path)


def _wait_ready(sock: socket.socket, process: subprocess.Popen, started: float) -> float:
    deadline = started + READY_TIMEOUT
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise RuntimeError(f"the daemon sent no READY=1 within {READY_TIMEOUT:.0f} s")
        sock.settimeout(min(remaining, 0.2))
        try:
            message = sock.recv(4096)
        except TimeoutError:
            if process.poll() is not None:
                raise RuntimeError(f"the daemon exited with status {process.returncode} before it was ready")
            continue
        if b"READY=1" in message.split(b"\n"):
            return time.perf_counter()
