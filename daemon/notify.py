"""The systemd notify protocol (``sd_notify(3)``) without libsystemd.

The protocol is one datagram per state change, ``KEY=VALUE`` lines, sent to the
AF_UNIX datagram socket named by ``$NOTIFY_SOCKET``. Doing it in a few lines of
stdlib keeps the daemon free of a C dependency that container images and
non-systemd hosts do not have. Outside systemd (``NOTIFY_SOCKET`` unset) every
method is a no-op, so the daemon calls them unconditionally.

Notification failures never take the daemon down: a service whose manager went
away should keep answering requests. The first failure is logged, repeats are
not, until a send succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger(__name__)

# systemd reads the socket promptly; this only bounds how long a wedged manager
# can stall the caller (the event loop) on a full socket buffer.
_SEND_TIMEOUT_SECONDS = 1.0


def socket_address(value: str) -> str | None:
    """Map ``$NOTIFY_SOCKET`` to a ``sendto`` address: ``@name`` is Linux's abstract
    namespace (a leading NUL byte), an absolute path is a filesystem socket.
    Other forms (``vsock:...`` in recent systemd) are not supported: ``None``."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, as ``sd_watchdog_enabled(3)`` advises;
    ``None`` when no watchdog is armed or it is armed for another process."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment inside the datagram.
    return " ".join(text.splitlines())


class Notifier:
    """Tells the service manager about start-up, reloads, shutdown and liveness."""

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        self.address = address
        self.enabled = address is not None
        self.watchdog_interval = watchdog_interval if self.enabled else None
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``; a no-op
        notifier when the process was not started by systemd as ``Type=notify``."""
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address = socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%r is not a supported address; systemd notifications are off", raw)
        return cls(address, _watchdog_interval(env))

    def ready(self, status: str) -> None:
        """Start-up (or a reload) finished: systemd now reports the unit active."""
        self._send(f"READY=1\nSTATUS={_one_line(status)}")

    def reloading(self, status: str) -> None:
        """A reload began. ``MONOTONIC_USEC`` is required by ``Type=notify-reload``
        (systemd >= 253) to match this message to the reload it requested; older
        managers ignore the unknown key."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={_one_line(status)}")

    def stopping(self, status: str) -> None:
        """Shutdown began: systemd shows the unit as deactivating while we drain."""
        self._send(f"STOPPING=1\nSTATUS={_one_line(status)}")

    def status(self, text: str) -> None:
        """Free-form status line shown by ``systemctl status``."""
        self._send(f"STATUS={_one_line(text)}")

    async def watchdog_loop(self, liveness: Callable[[], Awaitable[bool]]) -> None:
        """Send ``WATCHDOG=1`` every ``watchdog_interval`` seconds while ``liveness()``
        answers True. A liveness check that fails, raises or outlasts one interval
        skips the ping, so a wedged daemon is restarted by systemd instead of
        being kept alive by a timer. Returns at once when no watchdog is armed;
        otherwise runs until cancelled."""
        interval = self.watchdog_interval
        if interval is None:
            return
        alive = True
        while True:
            started = time.monotonic()
            ok = await self._check(liveness, interval)
            if ok:
                self._send("WATCHDOG=1")
            if ok != alive:
                if ok:
                    log.info("liveness check passes again; watchdog pings resumed")
                else:
                    log.warning("liveness check failed; withholding watchdog pings")
                alive = ok
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    @staticmethod
    async def _check(liveness: Callable[[], Awaitable[bool]], timeout: float) -> bool:
        try:
            return bool(await asyncio.wait_for(liveness(), timeout))
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11, which setup.cfg supports
            log.warning("liveness check did not answer within %.1f s", timeout)
            return False
        except Exception:
            log.exception("liveness check raised")
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, message: str) -> None:
        if self.address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(_SEND_TIMEOUT_SECONDS)
            # backslashreplace: a path in a status may hold undecodable bytes (lone surrogates).
            self._sock.sendto(message.encode("utf-8", "backslashreplace"), self.address)
        except OSError as exc:
            if not self._failing:
                shown = self.address.replace("\0", "@", 1)
                log.warning("cannot notify systemd at %r (%s); carrying on without it", shown, exc)
                self._failing = True
            return
        if self._failing:
            log.info("systemd notifications are getting through again")
            self._failing = False
