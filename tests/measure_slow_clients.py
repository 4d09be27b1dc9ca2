"""Measure the daemon against slow and idle clients, beside a quiet baseline in the same run.

    python tests/measure_slow_clients.py [--connections 5000] [--idle-timeout 10] [--body-timeout 10]

Starts the real daemon on the shipped models (``models/``) and prints, each with the
figures it was compared to:

* ``/predict`` latency over one kept-alive connection with no other client (the
  baseline), then again while N idle connections are open; the daemon's descriptors
  and resident memory before and with them; how long until the daemon closed them all;
* a client trickling its request head one byte every 0.5 s: when it is cut off;
* a request whose body stalls: when the 408 arrives and when the connection closes.

``tests/test_slow_clients.py`` asserts the behaviour; this prints the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import select
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from daemon_harness import RunningDaemon, launch

MODELS = Path(__file__).resolve().parents[1] / "models"
WINDOW = [round(34 + i / 15, 4) for i in range(60)]


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def predict_latencies(daemon: RunningDaemon, count: int = 200) -> list[float]:
    """Seconds per ``/predict`` over one kept-alive connection."""
    body = json.dumps({"prices": WINDOW}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=60)
    seconds = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            seconds.append(time.perf_counter() - started)
            assert response.status == 200, response.status
    finally:
        conn.close()
    return seconds


def describe(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return (f"p50 {statistics.median(ms):.2f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms, "
            f"max {ms[-1]:.2f} ms ({len(ms)} requests)")


def idle_connections(daemon: RunningDaemon, count: int, idle_timeout: float) -> None:
    pid = daemon.process.pid
    baseline = predict_latencies(daemon)
    fds, rss = descriptors(pid), proc_status(pid, "VmRSS")
    started = time.monotonic()
    socks = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(count)]
    opened = time.monotonic() - started
    loaded = predict_latencies(daemon)
    fds_open, rss_open = descriptors(pid), proc_status(pid, "VmRSS")
    print(f"{count} idle connections, all accepted in {opened:.1f} s")
    print(f"  /predict alone:            {describe(baseline)}")
    print(f"  /predict while they idle:  {describe(loaded)}")
    print(f"  daemon descriptors {fds} -> {fds_open}; resident memory {rss / 1024:.1f} -> {rss_open / 1024:.1f} MiB "
          f"({(rss_open - rss) / count:.1f} KiB per connection)")
    poller = select.poll()
    waiting = {sock.fileno(): sock for sock in socks}
    for sock in socks:
        poller.register(sock, select.POLLIN)
    deadline = time.monotonic() + 3 * idle_timeout + 60
    while waiting and time.monotonic() < deadline:
        for fd, _ in poller.poll(1000):
            poller.unregister(fd)
            waiting.pop(fd).close()
    print(f"  closed by the daemon: {count - len(waiting)} of {count}, the last "
          f"{time.monotonic() - started:.1f} s after the first opened (idle_timeout {idle_timeout:g} s)")
    for sock in waiting.values():
        sock.close()


def slow_head(daemon: RunningDaemon) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"x" * 100_000
    sent = 0
    with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
        started = time.monotonic()
        try:
            for byte in head:
                sock.send(bytes([byte]))
                sent += 1
                if select.select([sock], [], [], 0.5)[0]:
                    break
            answer = sock.recv(100)
        except OSError:
            answer = b""
    print(f"request head trickled at 1 byte per 0.5 s: cut off after {time.monotonic() - started:.1f} s "
          f"({sent} bytes sent), answer {answer[:40]!r}")


def stalled_body(daemon: RunningDaemon) -> None:
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=120) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"prices\": [")
        answer = sock.recv(4096)
        answered = time.monotonic() - started
        status_line = answer.split(b"\r\n")[0].decode()
        while sock.recv(4096):
            pass
        print(f"body stalled after 12 of 1000 bytes: {status_line} after {answered:.1f} s, "
              f"connection closed after {time.monotonic() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--idle-timeout", type=float, default=10.0)
    parser.add_argument("--body-timeout", type=float, default=10.0)
    opts = parser.parse_args()
    # This client holds the connections too: it needs as many descriptors as the daemon.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if opts.connections + 100 > hard:
        sys.exit(f"the open-file hard limit is {hard}; ask for fewer connections")
    log_dir = Path(tempfile.mkdtemp(prefix="slow-clients-"))
    daemon = launch(MODELS, args=["--idle-timeout", str(opts.idle_timeout), "--body-timeout", str(opts.body_timeout)],
                    log_dir=log_dir)
    try:
        daemon.wait_healthy()
        print(f"daemon: {MODELS} on port {daemon.port}, idle_timeout {opts.idle_timeout:g} s, "
              f"body_timeout {opts.body_timeout:g} s; load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
        idle_connections(daemon, opts.connections, opts.idle_timeout)
        slow_head(daemon)
        stalled_body(daemon)
    finally:
        daemon.stop()
    print("reproduce: python tests/measure_slow_clients.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
