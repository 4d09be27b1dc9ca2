"""Blocking calls off the event loop, in daemon threads, at most ``size`` at a time.

Not a ThreadPoolExecutor: the interpreter joins its threads at exit, so one
fetch hung on a dead network mount or socket would keep the daemon from ever
exiting after SIGTERM. A call that outlives its caller (cancelled by a
timeout) keeps its slot until it returns, so hung calls cannot pile up beyond
``size`` threads; later calls wait for a slot, within their own timeout.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class DaemonThreads:
    def __init__(self, size: int, name: str) -> None:
        self._slots = asyncio.Semaphore(size)
        self._name = name

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a new daemon thread; cancelling the wait abandons the call, not the slot."""
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def finish(result: Any, error: Exception | None) -> None:  # on the loop
            self._slots.release()
            if future.done():  # the caller gave up (timeout, cancellation)
                return
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        def work() -> None:
            try:
                result, error = fn(*args), None
            except Exception as exc:  # noqa: BLE001 - not swallowed: the caller's await raises it
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(finish, result, error)
            except RuntimeError:  # the loop is closed: the daemon is exiting and nobody waits
                pass

        try:
            threading.Thread(target=work, name=self._name, daemon=True).start()
        except BaseException:
            self._slots.release()
            raise
        return await future
