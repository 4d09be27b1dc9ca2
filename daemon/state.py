"""What the running daemon holds, reachable from any handler as ``request.app[STATE]``."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import psutil
from aiohttp import web

from .config import Config
from .market_data.service import MarketDataService
from .metrics import Metrics
from .registry import Registry, ServedModel
from .schemas import ReloadStatus

__all__ = ["STATE", "DaemonState", "Registry", "ServedModel"]


@dataclass
class DaemonState:
    config: Config
    registry: Registry  # the served model set, replaced whole by a reload
    metrics: Metrics
    market: MarketDataService
    started_at: float = field(default_factory=time.time)
    ready: bool = False  # models loaded, warmed up, and the socket is listening
    stopping: bool = False  # a shutdown is draining requests
    in_flight: int = 0  # requests being handled, which a shutdown waits for
    last_reload: ReloadStatus | None = None
    process: psutil.Process = field(default_factory=psutil.Process)

    def __post_init__(self) -> None:
        self.process.cpu_percent(None)  # the first call only starts the measurement

    @property
    def uptime_seconds(self) -> float:
        return time.time() - self.started_at

    def record_reload(self, ok: bool, message: str) -> None:
        # backslashreplace: a path in the message may hold undecodable bytes (lone surrogates),
        # which no JSON encoder takes; /health must still answer.
        text = message.encode("utf-8", "backslashreplace").decode("utf-8")
        self.last_reload = ReloadStatus(ok=ok, at=dt.datetime.now(dt.timezone.utc), message=text)
        self.metrics.reload(ok)


STATE = web.AppKey("state", DaemonState)
