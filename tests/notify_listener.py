"""The receiving end of ``$NOTIFY_SOCKET``: a real AF_UNIX datagram socket that
collects notify messages as systemd would, for the notify tests.

Fixtures (imported by ``tests/conftest.py``): ``notify_listener``, parametrised
over a filesystem socket and an ``@abstract`` one, and ``notify_path_listener``.
"""

from __future__ import annotations

import select
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

Message = dict[str, str]


class NotifyListener:
    """Bound to a filesystem path, or to an abstract name when ``directory`` is None.
    ``address`` is what goes into ``NOTIFY_SOCKET``."""

    def __init__(self, directory: Path | None = None) -> None:
        if directory is None:
            name = f"lstm-predictor-test-{uuid.uuid4().hex}"
            self.address, bind_to = "@" + name, "\0" + name
        else:
            self.address = bind_to = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_to)
        self.sock.setblocking(False)
        self._pending: deque[Message] = deque()

    def messages(self) -> list[Message]:
        """The messages that arrived and were not returned yet."""
        self._read()
        new = list(self._pending)
        self._pending.clear()
        return new

    def wait_for(self, wanted: Callable[[Message], bool], timeout: float = 60.0) -> list[Message]:
        """Messages up to and including the first one ``wanted`` accepts; later ones stay pending."""
        seen: list[Message] = []
        deadline = time.monotonic() + timeout
        while True:
            self._read()
            while self._pending:
                seen.append(message := self._pending.popleft())
                if wanted(message):
                    return seen
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no wanted notify message within {timeout:g} s; got {seen}")
            select.select([self.sock], [], [], left)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            self._pending.append(dict(line.split("=", 1) for line in data.decode().splitlines()))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify_listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifyListener]:
    """systemd's end of the socket: a filesystem path, or an ``@abstract`` name."""
    listener = NotifyListener(tmp_path if request.param == "path" else None)
    yield listener
    listener.close()


@pytest.fixture
def notify_path_listener(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(tmp_path)
    yield listener
    listener.close()
