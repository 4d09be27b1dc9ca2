"""Slow, idle and malformed clients against the real daemon: a connection that does not
send a complete request head within idle_timeout is closed, a body that stalls is a 408,
a request the HTTP parser refuses is a 400 that leaves no traceback in the log, and
thousands of idle connections neither exhaust the daemon's descriptors nor stop it
from answering others."""

from __future__ import annotations

import json
import resource
import select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from daemon_harness import RunningDaemon

WINDOW = [round(20 + 0.1 * i, 2) for i in range(60)]
IDLE_TIMEOUT = "1"
BODY_TIMEOUT = "1"
# Far longer than any timeout under test: only there so that a broken daemon fails the test instead of hanging it.
PATIENCE = 60.0


def connect(daemon: RunningDaemon) -> socket.socket:
    return socket.create_connection(("127.0.0.1", daemon.port), timeout=PATIENCE)


def closed_by_server(sock: socket.socket, timeout: float = PATIENCE) -> bytes:
    """Wait until the daemon closes ``sock``; everything it sent before closing."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def http_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length, read from a connection that may stay open."""
    sock.settimeout(PATIENCE)
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"the daemon closed the connection without an answer: {raw!r}"
        raw += chunk
    status, headers, body = http_response(raw)
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return status, headers, body


@pytest.fixture
def daemon(start_daemon, models_dir, prices_dir) -> RunningDaemon:
    return start_daemon(models_dir, prices_dir, args=["--idle-timeout", IDLE_TIMEOUT, "--body-timeout", BODY_TIMEOUT])


def test_a_client_sending_its_headers_a_byte_at_a_time_is_disconnected_while_others_are_served(daemon) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"x" * 600  # 60 s at 10 bytes a second
    slow = connect(daemon)
    sent = 0
    served_meanwhile = False
    try:
        for byte in head:
            slow.send(bytes([byte]))
            sent += 1
            if sent == 5:
                served_meanwhile = daemon.get("/health").status == 200
            if select.select([slow], [], [], 0.1)[0]:  # readable: the daemon answered or closed
                break
        assert closed_by_server(slow) == b"", "the daemon answered an incomplete request head"
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed while we were still sending
    finally:
        slow.close()
    assert sent < len(head), "the daemon waited for the whole trickled head"
    assert served_meanwhile


def test_a_kept_alive_connection_is_closed_once_idle(daemon) -> None:
    with connect(daemon) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 200 and headers.get("connection", "").lower() != "close"
        assert closed_by_server(sock) == b""


UNPARSABLE = {
    "a NUL byte in a header": b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Bad: a\x00b\r\n\r\n",
    "a request line that is not HTTP": b"GARBAGE\r\n\r\n",
    "a Content-Length that is not a number": b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n",
    "a header over 8 KiB": b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
}


def test_a_request_the_http_parser_refuses_is_a_400_and_closed_without_a_traceback_in_the_log(daemon) -> None:
    for name, raw in UNPARSABLE.items():
        with connect(daemon) as sock:
            sock.sendall(raw)
            status, _, body = http_response(closed_by_server(sock))
        assert status == 400, name
        assert b"Traceback" not in body, name
    assert daemon.get("/health").status == 200
    # Any client could send these in a loop: each would otherwise log an ERROR with a traceback.
    assert "Traceback" not in daemon.stderr and "ERROR" not in daemon.stderr


@pytest.mark.parametrize(("path", "v2"), [("/predict", False), ("/v2/models/TINY3.SA/infer", True)])
def test_a_body_that_stalls_is_a_408_in_the_routes_error_shape(daemon, path: str, v2: bool) -> None:
    with connect(daemon) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     "Content-Length: 1000\r\n\r\n".encode() + b'{"prices": [1.0, ')
        status, headers, body = read_response(sock)
    assert status == 408 and headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    message = error if v2 else error["message"]
    assert "body_timeout" in message
    if not v2:
        assert error["status"] == 408 and error["code"] == "body_timeout"
    metrics = daemon.get("/metrics").body.decode()
    assert 'status="408"' in metrics


@contextmanager
def open_file_limit(soft: int) -> Iterator[None]:
    """Run with this process's soft limit on open files at ``soft`` (children inherit it)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


IDLE_CONNECTIONS = 2000


@pytest.mark.slow
def test_thousands_of_idle_connections_neither_starve_others_nor_outlive_the_idle_timeout(
        start_daemon, models_dir, prices_dir) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < IDLE_CONNECTIONS + 500:
        pytest.skip(f"the hard limit on open files ({hard}) is below {IDLE_CONNECTIONS} connections")
    # The daemon starts with a soft limit of 1024, far below the connections below, as
    # under systemd: it must raise its own limit to the hard one to accept them all.
    with open_file_limit(1024):
        daemon = start_daemon(models_dir, prices_dir, args=["--idle-timeout", "5"])
    with open_file_limit(hard if hard != resource.RLIM_INFINITY else IDLE_CONNECTIONS + 500):
        idle = []
        try:
            for _ in range(IDLE_CONNECTIONS):
                idle.append(connect(daemon))
            assert daemon.get("/health").status == 200
            reply = daemon.post("/predict", {"symbol": "TINY3.SA", "prices": WINDOW})
            assert reply.status == 200, reply.body
            # Every idle connection was accepted and is then closed by the daemon, unanswered.
            deadline = time.monotonic() + PATIENCE
            for sock in idle:
                assert closed_by_server(sock, max(0.1, deadline - time.monotonic())) == b""
        finally:
            for sock in idle:
                sock.close()
    assert "Too many open files" not in daemon.stderr
