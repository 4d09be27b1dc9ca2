"""The daemon's life: load, warm up, listen, tell systemd; reload on SIGHUP; drain on SIGTERM.

Order matters to the service manager: ``READY=1`` goes out only once every
model is loaded and has run one inference *and* the socket accepts
connections, so ``systemctl start`` returning means the daemon answers.
A reload builds the new model set beside the old one and swaps the reference
in one assignment; requests already holding an old model finish on it before
its batcher is drained. On SIGTERM the listening socket closes first, then
in-flight requests run to completion (up to ``drain_timeout``), then exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import numpy as np
from aiohttp import web

from .access import reload_token
from .app import create_app
from .bundle import BundleError
from .config import Config
from .market_data import CsvDirectorySource, PriceSource, YFinanceSource
from .market_data.service import MarketDataService
from .metrics import Metrics
from .notify import Notifier
from .registry import Registry, load_registry
from .state import DaemonState

log = logging.getLogger("lstm_predictor.daemon")


class StartupError(Exception):
    """The daemon cannot start; the message says why."""


def price_source(config: Config) -> PriceSource:
    if config.market_data == "yfinance":
        # auto_adjust=True: the bundles are trained on adjusted closes. fresh_for: its disk
        # cache must not keep serving closes the in-memory TTL already considers old.
        return YFinanceSource(cache_dir=config.cache_dir, auto_adjust=True, fresh_for=config.market_data_ttl,
                              timeout=config.market_data_timeout)
    return CsvDirectorySource(Path(config.market_data))


def _describe(registry: Registry) -> str:
    return ", ".join(f"{m.name} ({m.bundle.symbol} {m.bundle.version}, {m.variant})" for m in registry.models.values())


class Daemon:
    def __init__(self, config: Config, notifier: Notifier) -> None:
        self.config = config
        self.notifier = notifier
        self.metrics = Metrics()
        self._stop = asyncio.Event()
        self._reload_wanted = False
        self._serving = False
        self._reloader: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        # Before loading: SIGHUP's default action would kill the process.
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        self.notifier.status(f"loading models from {config.models}")
        try:
            registry = await asyncio.to_thread(load_registry, config, self.metrics)
        except BundleError as exc:
            raise StartupError(f"cannot load the models: {exc}") from None
        self._publish(registry)
        market = MarketDataService(price_source(config), ttl=config.market_data_ttl,
                                   timeout=config.market_data_timeout, metrics=self.metrics)
        self.state = state = DaemonState(config=config, registry=registry, metrics=self.metrics, market=market)
        # keepalive_timeout: aiohttp closes a connection that has not sent a complete request head
        # this long after it opened or after its last answer (slow-loris headers, idle clients).
        self.app = create_app(state)
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                               shutdown_timeout=config.drain_timeout, keepalive_timeout=config.idle_timeout)
        await runner.setup()
        try:
            # backlog: aiohttp's 128 overflows under a burst of connections (thousands of clients,
            # or a flood of idle ones), and each dropped SYN costs its client a 1 s retransmit.
            site = web.TCPSite(runner, config.host, config.port, backlog=1024)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise StartupError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None

        host, port = runner.addresses[0][:2]
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        state.ready = True
        status = f"serving {len(registry.models)} model(s) on http://{host}:{port}: {_describe(registry)}"
        log.info("%s", status)
        self.notifier.ready(status)
        self._serving = True
        if self._reload_wanted:  # asked for while starting
            self.request_reload()
        watchdog = asyncio.ensure_future(self.notifier.watchdog_loop(self.liveness))

        await self._stop.wait()

        state.stopping = True
        state.ready = False
        log.info("stopping: draining in-flight requests (up to %g s)", config.drain_timeout)
        self.notifier.stopping("draining in-flight requests")
        watchdog.cancel()
        if self._reloader is not None:
            self._reloader.cancel()
        # Stop accepting first, then let every request already received finish, and only
        # then close connections: aiohttp's own cleanup stops reading request bodies at
        # once, which would strand a request whose body is still arriving.
        await site.stop()
        await self._drain(config.drain_timeout)
        await runner.cleanup()
        await state.registry.close(config.drain_timeout)
        await asyncio.gather(*self._retiring)
        log.info("stopped")

    async def _drain(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.state.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self.state.in_flight:
            log.warning("%d request(s) still running after %g s; closing them", self.state.in_flight, timeout)

    def _publish(self, registry: Registry) -> None:
        self.metrics.models_loaded(registry.bundles, registry.variants)

    async def liveness(self) -> bool:
        """For the systemd watchdog: the loop runs this, and the default model answers
        a tiny inference through its batcher and worker thread."""
        model = self.state.registry.default
        prediction = await model.predict(np.ones((1, model.look_back)))
        return bool(np.isfinite(prediction.prices).all())

    # -- reload ------------------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: reload the models directory (and the token file). Signals arriving during
        a reload are coalesced into one more reload after it, which sees the latest files;
        one arriving while the models load at start-up runs once the daemon serves, as the
        files may have changed after they were read."""
        if self._stop.is_set():
            return
        self._reload_wanted = True
        if not self._serving:
            return
        reload_token(self.app)
        if self._reloader is None or self._reloader.done():
            self._reloader = asyncio.ensure_future(self._reload_loop())

    async def _reload_loop(self) -> None:
        while self._reload_wanted:
            self._reload_wanted = False
            await self._reload()

    async def _reload(self) -> None:
        state = self.state
        log.info("reloading models from %s", self.config.models)
        self.notifier.reloading(f"reloading models from {self.config.models}")
        try:
            registry = await asyncio.to_thread(load_registry, self.config, self.metrics)
        except Exception as exc:  # whatever went wrong, the models being served keep serving
            if not isinstance(exc, BundleError):  # a bug rather than a bad bundle: keep its traceback
                log.exception("reload raised an unexpected error")
            message = f"reload failed, still serving {', '.join(state.registry.names)}: {exc}"
            log.error("%s", message)
            state.record_reload(False, message)
            self.notifier.ready(message)
            return
        old, state.registry = state.registry, registry
        self._publish(registry)
        message = f"reloaded: serving {_describe(registry)}"
        log.info("%s", message)
        state.record_reload(True, message)
        self.notifier.ready(message)
        task = asyncio.ensure_future(old.close(self.config.drain_timeout))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


async def serve(config: Config) -> None:
    """Run the daemon until SIGTERM/SIGINT; raises StartupError when it cannot start."""
    notifier = Notifier.from_env()
    try:
        await Daemon(config, notifier).run()
    finally:
        notifier.close()
