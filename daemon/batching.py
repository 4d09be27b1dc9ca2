"""Dynamic batching: concurrent submissions for one model coalesced into one ``run``.

In the manner of Triton's dynamic batcher: a bounded queue, a maximum batch
size counted in windows, and a maximum queue delay. onnxruntime releases the
GIL, so ``run`` executes in one dedicated worker thread while the event loop
keeps accepting requests. One thread, not a pool: the session is
single-threaded for tail latency, and on a small CPU two concurrent runs only
fight for the same cores; one run of n windows is much cheaper than n runs of
one (about 0.5 ms for one window, about 7 ms for 32). The thread is a plain
one fed through a ``SimpleQueue`` rather than a ``ThreadPoolExecutor``: the
hand-off to it and back is what a lone request pays on top of inference, and
on a 2-core box it measured about 50 us this way, about 20 us less than
through an executor's ``submit``.

Dispatch policy (all decisions are taken on the event loop thread):

* The worker is idle when a submission arrives: it is dispatched in the same
  event-loop turn, together with every other submission made in that turn
  (``loop.call_soon``, no timer). A lone request on an idle daemon never waits
  for the delay; it pays one loop turn (about 10 us). Requests whose bytes
  arrived together are decoded in the same turn, so they share a run instead
  of the first running alone and the rest queueing behind it: with 32 closed-
  loop clients this took the mean batch from 11 to 17 windows and cut the
  daemon's CPU per request by about 5 %.
* The worker is busy: submissions queue. The queue is the load signal.
* The worker frees up with submissions queued: they are dispatched at once if
  they fill a batch, or if the oldest of them has already waited
  ``max_queue_delay_us`` (measured from its submission, as Triton does; under
  load it usually has, because it waited for the previous run). Otherwise the
  batcher holds them until that deadline or until the batch fills, whichever
  comes first.

A batch takes whole submissions in arrival order while their windows fit in
``max_batch_size``; a single submission larger than that runs alone (its
windows are never split across runs). ``max_queue_size`` bounds the number of
submissions waiting for dispatch, as Triton's does; beyond it ``submit``
raises :class:`QueueFullError` at once, so the daemon can answer 503 rather
than let latency grow without bound.

Recursive jobs (``submit_recursive``: a forecast, whose every step's input
is made from the previous step's output) are a submission that goes back to
the front of the queue after each run until its steps are done. The worker
runs a batch's next step itself, without returning to the event loop, as long
as the batch holds nothing but recursive jobs with steps left and nothing is
queued: a lone 30-day forecast on an idle daemon then crosses to the worker
and back once instead of 30 times (measured in-process: about 20 ms against
24-26 ms). As soon as anything is queued, the finished step returns to the
loop and the job's next step is dispatched at once together with what waited,
so the steps of concurrent forecasts (and plain requests) share runs.

A client that goes away cancels its future: a cancelled submission still
waiting is skipped when a batch is formed, and one already running simply has
its result dropped (a recursive job running in the worker finishes the steps
it runs there, at most one forecast's worth). An exception from ``run`` fails exactly the submissions of
that batch, and one from a recursive job's ``feed`` fails that job alone; the
batcher keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

RunFn = Callable[[np.ndarray], np.ndarray]
OnBatch = Callable[[int, float], None]
Feed = Callable[[np.ndarray], np.ndarray]


class QueueFullError(Exception):
    """The batcher's queue is full: the caller should shed load (HTTP 503)."""


class BatcherClosedError(RuntimeError):
    """A submission arrived after :meth:`Batcher.close` began."""


class _Recursion:
    """A recursive job's progress: ``feed(ratios)`` makes the next step's input from a step's outputs."""

    __slots__ = ("error", "feed", "outputs", "steps")

    def __init__(self, feed: Feed, steps: int) -> None:
        self.feed = feed
        self.steps = steps
        self.outputs: list[np.ndarray] = []
        self.error: BaseException | None = None

    @property
    def pending(self) -> bool:
        return self.error is None and len(self.outputs) < self.steps


class _Entry:
    """One submission. ``x`` and ``result`` are written by the worker only while the entry is in its batch."""

    __slots__ = ("future", "recursion", "result", "submitted", "x")

    def __init__(self, x: np.ndarray, future: asyncio.Future, submitted: float, recursion: _Recursion | None) -> None:
        self.x = x
        self.future = future
        self.submitted = submitted  # loop.time() of the submission, or of the re-queue of a recursive job
        self.recursion = recursion
        self.result: np.ndarray | None = None


def _batch_input(batch: list[_Entry]) -> np.ndarray:
    """The model input of a batch: its submissions' windows in order (a lone one as it is, uncopied)."""
    return batch[0].x if len(batch) == 1 else np.concatenate([e.x for e in batch])


class Batcher:
    """Coalesces concurrent ``submit`` calls into batched ``run`` calls on one worker thread.

    ``run`` takes model input ``(n, look_back, 1)`` float32 and returns ``(n,)``
    ratios; it is called from the worker thread only, never concurrently with
    itself. ``on_batch(batch_size, queue_wait_seconds)`` is called on the event
    loop at each dispatch, with the number of windows in the batch and how long
    its oldest submission waited; an exception it raises is logged and ignored.

    Use from one event loop (the one of the first ``submit``).
    """

    def __init__(
        self,
        run: RunFn,
        *,
        max_batch_size: int = 32,
        max_queue_delay_us: int = 200,
        max_queue_size: int = 1024,
        on_batch: OnBatch | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_queue_delay_us < 0:
            raise ValueError(f"max_queue_delay_us must be >= 0, got {max_queue_delay_us}")
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be at least 1, got {max_queue_size}")
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay_us / 1e6
        self.max_queue_size = max_queue_size
        self._on_batch = on_batch
        self._jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, list[_Entry], np.ndarray] | None] = (
            queue.SimpleQueue()
        )
        self._worker: threading.Thread | None = None  # started by the first dispatch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[_Entry] = deque()
        self._queued_windows = 0
        self._busy = False  # a batch is in the worker thread
        self._timer: asyncio.Handle | None = None  # the pending dispatch: end of this loop turn, or fill deadline
        self._closing = False
        self._drained: asyncio.Future | None = None

    @property
    def queued(self) -> int:
        """Submissions waiting for dispatch (cancelled ones included until skipped)."""
        return len(self._queue)

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """Run windows ``x`` ``(k, look_back, 1)`` float32 in some batch; return their ``(k,)`` ratios."""
        return await self._enqueue(x, None)

    async def submit_recursive(self, x: np.ndarray, steps: int, feed: Feed) -> np.ndarray:
        """Run ``steps`` dependent steps from windows ``x`` ``(k, look_back, 1)``; return ``(steps, k)`` ratios.

        After each step but the last, ``feed(ratios (k,))`` returns the next step's input of
        the same shape. It is called in the worker thread, so it must only touch state of its own.
        """
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        return await self._enqueue(x, _Recursion(feed, steps))

    async def _enqueue(self, x: np.ndarray, recursion: _Recursion | None) -> np.ndarray:
        if self._closing:
            raise BatcherClosedError("the batcher is closed")
        if x.ndim != 3 or x.shape[0] < 1:
            raise ValueError(f"expected model input of shape (k, look_back, 1) with k >= 1, got {x.shape}")
        if len(self._queue) >= self.max_queue_size:
            raise QueueFullError(f"inference queue is full ({self.max_queue_size} requests waiting)")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append(_Entry(x, future, loop.time(), recursion))
        self._queued_windows += x.shape[0]
        if not self._busy:
            if self._timer is None:
                # Idle worker: dispatch at the end of this loop turn, with whatever else arrives in it.
                self._timer = loop.call_soon(self._dispatch)
            elif self._queued_windows >= self.max_batch_size:
                self._dispatch()  # the batch being filled is full
        return await future

    async def close(self) -> None:
        """Refuse new submissions, run everything queued without delay, stop the worker."""
        self._closing = True
        if self._busy or self._queue:
            if self._drained is None:
                assert self._loop is not None  # something was submitted, so the loop is known
                self._drained = self._loop.create_future()
                if not self._busy:
                    self._dispatch()
            await asyncio.shield(self._drained)
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join()  # idle by now: it returns as soon as it reads the sentinel
            self._worker = None

    # -- event-loop side -------------------------------------------------------

    def _take_batch(self) -> list[_Entry]:
        """Pop whole live submissions, oldest first, while their windows fit in one batch."""
        batch: list[_Entry] = []
        windows = 0
        queue = self._queue
        while queue:
            entry = queue[0]
            if entry.future.done():  # cancelled while waiting: skip it
                queue.popleft()
                self._queued_windows -= entry.x.shape[0]
                continue
            k = entry.x.shape[0]
            if batch and windows + k > self.max_batch_size:
                break
            queue.popleft()
            self._queued_windows -= k
            batch.append(entry)
            windows += k
        return batch

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = self._take_batch()
        if not batch:
            self._maybe_drained()
            return
        loop = self._loop
        assert loop is not None
        x = _batch_input(batch)
        self._busy = True
        if self._on_batch is not None:
            try:
                self._on_batch(x.shape[0], loop.time() - batch[0].submitted)
            except Exception:  # metrics must never break inference
                log.exception("on_batch callback failed")
        if self._worker is None:
            self._worker = threading.Thread(target=self._work_loop, name="batcher", daemon=True)
            self._worker.start()
        self._jobs.put((loop, batch, x))

    def _after_run(self, resumed: bool) -> None:
        """The worker is free: dispatch what queued meanwhile, now or at its fill deadline
        (at once when recursive jobs were re-queued: their next step must not wait)."""
        self._busy = False
        if not self._queue:
            self._maybe_drained()
            return
        if resumed or self._closing or self._queued_windows >= self.max_batch_size:
            self._dispatch()
            return
        loop = self._loop
        assert loop is not None
        deadline = self._queue[0].submitted + self.max_queue_delay
        if loop.time() >= deadline:
            self._dispatch()
        else:
            self._timer = loop.call_at(deadline, self._dispatch)

    def _complete(self, batch: list[_Entry], error: BaseException | None) -> None:
        resumed: list[_Entry] = []
        for entry in batch:
            if entry.future.done():  # a client that went away cancelled its future
                continue
            recursion = entry.recursion
            if error is not None:
                entry.future.set_exception(error)
            elif recursion is None:
                entry.future.set_result(entry.result)
            elif recursion.error is not None:
                entry.future.set_exception(recursion.error)
            elif recursion.pending:
                resumed.append(entry)
            else:
                entry.future.set_result(np.stack(recursion.outputs))
        if resumed:  # back to the front of the queue: they are the oldest work there is
            assert self._loop is not None
            now = self._loop.time()
            for entry in resumed:
                entry.submitted = now
                self._queued_windows += entry.x.shape[0]
            self._queue.extendleft(reversed(resumed))
        self._after_run(bool(resumed))

    def _maybe_drained(self) -> None:
        if self._drained is not None and not self._busy and not self._queue and not self._drained.done():
            self._drained.set_result(None)

    # -- worker-thread side ----------------------------------------------------

    def _work_loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._work(*job)

    def _work(self, loop: asyncio.AbstractEventLoop, batch: list[_Entry], x: np.ndarray) -> None:
        error: BaseException | None = None
        try:
            while True:
                self._run_step(batch, x)
                # Stay in this thread only while every entry has another step to run and
                # nothing waits in the queue (len() of a deque is atomic: a submission that
                # races this check waits for one more step, as it would for any run).
                if self._queue or not all(e.recursion is not None and e.recursion.pending for e in batch):
                    break
                x = _batch_input(batch)
        except Exception as exc:  # fails this batch's submissions, not the batcher
            error = exc
        try:
            loop.call_soon_threadsafe(self._complete, batch, error)
        except RuntimeError:  # the loop was closed under us: nobody is left to answer
            pass

    def _run_step(self, batch: list[_Entry], x: np.ndarray) -> None:
        """One run; each entry gets its slice of the outputs, and each recursive job its next input."""
        ratios = np.asarray(self._run(x)).reshape(-1)
        if ratios.shape[0] != x.shape[0]:
            raise RuntimeError(f"the model returned {ratios.shape[0]} outputs for {x.shape[0]} windows")
        offset = 0
        for entry in batch:
            k = entry.x.shape[0]
            out = ratios[offset : offset + k]
            offset += k
            recursion = entry.recursion
            if recursion is None:
                entry.result = out
                continue
            recursion.outputs.append(out)
            if recursion.pending:
                try:
                    entry.x = recursion.feed(out)
                except Exception as exc:  # fails this job alone
                    recursion.error = exc
