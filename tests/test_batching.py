"""The dynamic batcher, specified against a real onnxruntime session on a tiny LSTM bundle.

Scheduling is pinned down by structure, never by the clock: a run that waits on
a gate keeps the worker busy while submissions queue, and the sizes the batcher
reports through ``on_batch`` say exactly which submissions ran together.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from lstm_predictor.daemon.batching import Batcher, BatcherClosedError, QueueFullError
from lstm_predictor.daemon.bundle import read_bundle, write_metadata
from lstm_predictor.daemon.engine import Engine

LOOK_BACK = 60
HOUR_US = 3_600_000_000  # a queue delay no test could sit out


def write_tiny_lstm_bundle(path: Path, hidden: int = 8, seed: int = 0) -> Path:
    """A bundle with the served model's shape contract: input (n, 60, 1) -> LSTM -> Dense -> (n, 1)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def const(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(value.astype(np.float32) if value.dtype.kind == "f" else value, name)

    inits = [
        const("W", rng.normal(0, 0.5, (1, 4 * hidden, 1))),
        const("R", rng.normal(0, 0.3, (1, 4 * hidden, hidden))),
        const("B", rng.normal(0, 0.1, (1, 8 * hidden))),
        const("dense_w", rng.normal(0, 0.3, (hidden, 1))),
        const("dense_b", np.array([1.0])),
        const("flat", np.array([-1, hidden], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Transpose", ["prices"], ["seq_major"], perm=[1, 0, 2]),  # ONNX LSTM wants (seq, n, 1)
        helper.make_node("LSTM", ["seq_major", "W", "R", "B"], ["", "h_last"], hidden_size=hidden),
        helper.make_node("Reshape", ["h_last", "flat"], ["h"]),
        helper.make_node("MatMul", ["h", "dense_w"], ["hw"]),
        helper.make_node("Add", ["hw", "dense_b"], ["ratio"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_lstm",
        [helper.make_tensor_value_info("prices", TensorProto.FLOAT, [None, LOOK_BACK, 1])],
        [helper.make_tensor_value_info("ratio", TensorProto.FLOAT, [None, 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path / "model.onnx"))
    write_metadata(
        path,
        {
            "name": "TINY",
            "version": "test",
            "symbol": "TINY.SA",
            "look_back": LOOK_BACK,
            "normalisation": "window_first",
            "input": {"name": "prices", "shape": [None, LOOK_BACK, 1]},
            "output": {"name": "ratio", "shape": [None, 1]},
        },
    )
    return path


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    bundle = read_bundle(write_tiny_lstm_bundle(tmp_path_factory.mktemp("bundle") / "TINY.SA"))
    return Engine(bundle)


def model_input(rng: np.random.Generator, k: int = 1) -> np.ndarray:
    """k normalised random-walk windows, as the daemon feeds the model: (k, 60, 1) float32."""
    walks = np.cumprod(1.0 + rng.normal(0, 0.02, (k, LOOK_BACK)), axis=1)
    return (walks / walks[:, :1]).astype(np.float32)[:, :, None]


class GatedRun:
    """The engine's run, held at a gate: while it is closed the worker stays busy and submissions queue."""

    def __init__(self, engine: Engine, fail_on: float | None = None) -> None:
        self.engine = engine
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail_on = fail_on  # a sentinel first value that makes the whole run raise

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        if self.fail_on is not None and np.any(x[:, 0, 0] == self.fail_on):
            raise RuntimeError("the model failed on this batch")
        return self.engine.run_normalised(x)

    async def wait_busy(self) -> None:
        """Return once the worker is inside a run (held at the gate)."""
        assert await asyncio.to_thread(self.entered.wait, 60), "the worker never started a run"

    async def queue_behind(self, batcher: Batcher, inputs: list[np.ndarray]) -> list[asyncio.Task]:
        """Submit ``inputs[0]``, wait until the worker holds it at the gate, then submit the rest
        in one loop turn: they queue behind a busy worker."""
        first = await started(batcher.submit(inputs[0]))
        await self.wait_busy()
        return first + await started(*(batcher.submit(x) for x in inputs[1:]))


def batches_recorder() -> tuple[list[int], list[float], object]:
    sizes: list[int] = []
    waits: list[float] = []

    def on_batch(size: int, wait: float) -> None:
        sizes.append(size)
        waits.append(wait)

    return sizes, waits, on_batch


async def started(*coros) -> list[asyncio.Task]:
    """Start submissions as tasks, in order, and let each reach the queue."""
    tasks = [asyncio.create_task(c) for c in coros]
    await asyncio.sleep(0)
    return tasks


def test_concurrent_results_equal_one_by_one_results(engine: Engine) -> None:
    rng = np.random.default_rng(1)
    inputs = [model_input(rng, k) for k in rng.integers(1, 4, size=60)]
    expected = [engine.run_normalised(x) for x in inputs]
    sizes, _, on_batch = batches_recorder()

    async def main() -> list[np.ndarray]:
        batcher = Batcher(engine.run_normalised, max_batch_size=8, max_queue_delay_us=0, on_batch=on_batch)
        try:
            return await asyncio.gather(*(batcher.submit(x) for x in inputs))
        finally:
            await batcher.close()

    results = asyncio.run(main())
    for got, want, x in zip(results, expected, inputs):
        assert got.shape == (x.shape[0],)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert sum(sizes) == sum(x.shape[0] for x in inputs)
    assert max(sizes) > 1, "concurrent submissions were never coalesced"
    assert max(sizes) <= 8


def test_a_lone_request_on_an_idle_batcher_does_not_wait_for_the_queue_delay(engine: Engine) -> None:
    rng = np.random.default_rng(2)
    sizes, _, on_batch = batches_recorder()

    async def main() -> None:
        batcher = Batcher(engine.run_normalised, max_queue_delay_us=HOUR_US, on_batch=on_batch)
        for _ in range(3):  # one after another: the worker is idle at each arrival
            x = model_input(rng)
            got = await asyncio.wait_for(batcher.submit(x), timeout=60)
            np.testing.assert_allclose(got, engine.run_normalised(x), atol=1e-6)
        await batcher.close()

    asyncio.run(main())
    assert sizes == [1, 1, 1]


def test_submissions_made_in_one_loop_turn_on_an_idle_batcher_share_one_run(engine: Engine) -> None:
    rng = np.random.default_rng(11)
    inputs = [model_input(rng) for _ in range(5)]
    sizes, _, on_batch = batches_recorder()

    async def main() -> list[np.ndarray]:
        batcher = Batcher(engine.run_normalised, max_batch_size=8, max_queue_delay_us=HOUR_US, on_batch=on_batch)
        try:
            return await asyncio.wait_for(asyncio.gather(*(batcher.submit(x) for x in inputs)), timeout=60)
        finally:
            await batcher.close()

    results = asyncio.run(main())
    assert sizes == [5]  # not a lone first run with the other four queued behind it
    for got, x in zip(results, inputs):
        np.testing.assert_allclose(got, engine.run_normalised(x), atol=1e-6)


def test_submissions_queued_behind_a_busy_worker_wait_to_fill_a_batch(engine: Engine) -> None:
    rng = np.random.default_rng(3)
    run = GatedRun(engine)
    sizes, _, on_batch = batches_recorder()

    async def main() -> None:
        batcher = Batcher(run, max_batch_size=4, max_queue_delay_us=HOUR_US, on_batch=on_batch)
        first, *queued = await run.queue_behind(batcher, [model_input(rng) for _ in range(3)])
        run.gate.set()
        await first
        # The worker is free, but the two queued submissions are held for the batch to fill.
        assert batcher.queued == 2 and sizes == [1]
        more = await started(*(batcher.submit(model_input(rng)) for _ in range(2)))
        await asyncio.wait_for(asyncio.gather(*queued, *more), timeout=60)
        await batcher.close()

    asyncio.run(main())
    # 2 held + 2 newcomers = a full batch of 4, dispatched as it filled
    assert sizes == [1, 4]


def test_with_no_queue_delay_a_freed_worker_takes_whatever_queued(engine: Engine) -> None:
    rng = np.random.default_rng(4)
    run = GatedRun(engine)
    sizes, waits, on_batch = batches_recorder()

    async def main() -> None:
        batcher = Batcher(run, max_batch_size=4, max_queue_delay_us=0, on_batch=on_batch)
        tasks = await run.queue_behind(batcher, [model_input(rng, k) for k in (1, 1, 2, 3, 1)])
        run.gate.set()
        await asyncio.gather(*tasks)
        await batcher.close()

    asyncio.run(main())
    # whole submissions in arrival order while they fit in 4 windows
    assert sizes == [1, 3, 4]
    assert all(w >= 0 for w in waits)


def test_a_submission_larger_than_a_batch_runs_alone_and_whole(engine: Engine) -> None:
    rng = np.random.default_rng(5)
    x = model_input(rng, 10)
    sizes, _, on_batch = batches_recorder()

    async def main() -> np.ndarray:
        batcher = Batcher(engine.run_normalised, max_batch_size=4, on_batch=on_batch)
        try:
            return await batcher.submit(x)
        finally:
            await batcher.close()

    np.testing.assert_allclose(asyncio.run(main()), engine.run_normalised(x), atol=1e-6)
    assert sizes == [10]


def test_a_full_queue_refuses_at_once_and_the_queued_work_still_completes(engine: Engine) -> None:
    rng = np.random.default_rng(6)
    run = GatedRun(engine)

    async def main() -> None:
        batcher = Batcher(run, max_queue_size=2, max_queue_delay_us=0)
        tasks = await run.queue_behind(batcher, [model_input(rng) for _ in range(3)])
        # one running, two waiting: the queue is full
        with pytest.raises(QueueFullError):
            await batcher.submit(model_input(rng))
        run.gate.set()
        results = await asyncio.gather(*tasks)
        assert all(r.shape == (1,) and np.isfinite(r).all() for r in results)
        # room again once the queue drained
        assert (await batcher.submit(model_input(rng))).shape == (1,)
        await batcher.close()

    asyncio.run(main())


def test_a_client_that_goes_away_does_not_break_its_batch(engine: Engine) -> None:
    rng = np.random.default_rng(7)
    inputs = [model_input(rng) for _ in range(5)]
    run = GatedRun(engine)
    sizes, _, on_batch = batches_recorder()
    loop_errors: list[dict] = []

    async def main() -> list:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: loop_errors.append(ctx))
        batcher = Batcher(run, max_batch_size=8, max_queue_delay_us=0, on_batch=on_batch)
        tasks = await run.queue_behind(batcher, inputs)
        tasks[0].cancel()  # gone while its batch runs
        tasks[2].cancel()  # gone while waiting in the queue
        await asyncio.sleep(0)
        run.gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.close()
        return outcomes

    outcomes = asyncio.run(main())
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert isinstance(outcomes[2], asyncio.CancelledError)
    for i in (1, 3, 4):
        np.testing.assert_allclose(outcomes[i], engine.run_normalised(inputs[i]), atol=1e-6)
    assert sizes == [1, 3], "the waiting cancelled submission should have been skipped"
    assert loop_errors == []


def test_an_exception_from_run_fails_exactly_the_submissions_of_that_batch(engine: Engine) -> None:
    rng = np.random.default_rng(8)
    inputs = [model_input(rng) for _ in range(5)]
    inputs[1] = inputs[1].copy()
    inputs[1][0, 0, 0] = -7.0  # the sentinel: the run holding it raises
    run = GatedRun(engine, fail_on=-7.0)
    sizes, _, on_batch = batches_recorder()

    async def main() -> list:
        batcher = Batcher(run, max_batch_size=2, max_queue_delay_us=0, on_batch=on_batch)
        tasks = await run.queue_behind(batcher, inputs)
        run.gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        # and the batcher keeps serving
        outcomes.append(await batcher.submit(inputs[0]))
        await batcher.close()
        return outcomes

    outcomes = asyncio.run(main())
    assert sizes == [1, 2, 2, 1]  # [0], [1, 2], [3, 4], then the one after
    assert isinstance(outcomes[1], RuntimeError) and isinstance(outcomes[2], RuntimeError)
    for i in (0, 3, 4):
        np.testing.assert_allclose(outcomes[i], engine.run_normalised(inputs[i]), atol=1e-6)
    np.testing.assert_allclose(outcomes[5], engine.run_normalised(inputs[0]), atol=1e-6)


def test_a_nan_window_does_not_poison_the_other_rows_of_its_batch(engine: Engine) -> None:
    rng = np.random.default_rng(9)
    inputs = [model_input(rng) for _ in range(4)]
    inputs[2] = inputs[2].copy()
    inputs[2][0, 30, 0] = np.nan
    run = GatedRun(engine)
    sizes, _, on_batch = batches_recorder()

    async def main() -> list[np.ndarray]:
        batcher = Batcher(run, max_batch_size=8, max_queue_delay_us=0, on_batch=on_batch)
        tasks = await run.queue_behind(batcher, inputs)
        run.gate.set()
        try:
            return await asyncio.gather(*tasks)
        finally:
            await batcher.close()

    results = asyncio.run(main())
    assert sizes == [1, 3]  # the NaN window shared a run with two good ones
    # Whatever the model makes of the NaN window, every row is what it would be alone.
    for i in range(4):
        np.testing.assert_allclose(results[i], engine.run_normalised(inputs[i]), atol=1e-6, equal_nan=True)
    assert np.isfinite(np.concatenate([results[0], results[1], results[3]])).all()


def test_close_drains_the_queue_then_refuses_new_work(engine: Engine) -> None:
    rng = np.random.default_rng(10)
    run = GatedRun(engine)

    async def main() -> None:
        batcher = Batcher(run, max_batch_size=2, max_queue_delay_us=HOUR_US)
        tasks = await run.queue_behind(batcher, [model_input(rng) for _ in range(4)])
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0)
        with pytest.raises(BatcherClosedError):
            await batcher.submit(model_input(rng))
        run.gate.set()
        await asyncio.wait_for(closing, timeout=60)  # no waiting out the hour-long delay
        assert all(t.done() and t.result().shape == (1,) for t in tasks)

    asyncio.run(main())


@pytest.mark.parametrize("shape", [(60, 1), (0, 60, 1)])
def test_a_submission_that_is_not_a_batch_of_windows_is_refused(engine: Engine, shape: tuple) -> None:
    async def main() -> None:
        batcher = Batcher(engine.run_normalised)
        with pytest.raises(ValueError, match="shape"):
            await batcher.submit(np.ones(shape, dtype=np.float32))
        await batcher.close()

    asyncio.run(main())


# -- recursive jobs (forecasts) -------------------------------------------------------------------


class RecordingRun:
    """The engine's run, recording the number of windows of every run (in the worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sizes: list[int] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.sizes.append(x.shape[0])
        return self.engine.run_normalised(x)


def shift_in(x: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """A recursive step's feed: drop the oldest value, append the output, renormalise by the first."""
    nxt = np.concatenate([x[:, 1:, 0], ratios[:, None]], axis=1)
    return (nxt / nxt[:, :1]).astype(np.float32)[:, :, None]


def recursive_feed(x: np.ndarray) -> tuple[list[np.ndarray], object]:
    """A feed over windows starting at ``x``, and the inputs it was fed, in order."""
    inputs = [x]

    def feed(ratios: np.ndarray) -> np.ndarray:
        inputs.append(shift_in(inputs[-1], ratios))
        return inputs[-1]

    return inputs, feed


def one_by_one(engine: Engine, x: np.ndarray, steps: int) -> np.ndarray:
    out = []
    for _ in range(steps):
        ratios = engine.run_normalised(x)
        out.append(ratios)
        x = shift_in(x, ratios)
    return np.stack(out)


def test_a_lone_recursive_job_runs_all_its_steps_in_the_worker_after_one_dispatch(engine: Engine) -> None:
    x = model_input(np.random.default_rng(20))
    run = RecordingRun(engine)
    sizes, _, on_batch = batches_recorder()

    async def main() -> np.ndarray:
        batcher = Batcher(run, max_queue_delay_us=HOUR_US, on_batch=on_batch)
        _, feed = recursive_feed(x)
        out = await batcher.submit_recursive(x, 30, feed)
        await batcher.close()
        return out

    out = asyncio.run(main())
    assert out.shape == (30, 1)
    np.testing.assert_allclose(out, one_by_one(engine, x, 30), atol=1e-6)
    assert sizes == [1], "the 30 steps should cross from the loop to the worker once"
    assert run.sizes == [1] * 30


def test_concurrent_recursive_jobs_share_every_run_and_equal_one_by_one_results(engine: Engine) -> None:
    rng = np.random.default_rng(21)
    xs = [model_input(rng) for _ in range(3)]
    plain = model_input(rng, 2)
    steps = [5, 3, 5]
    run = RecordingRun(engine)
    sizes, _, on_batch = batches_recorder()

    async def main() -> list:
        batcher = Batcher(run, max_queue_delay_us=HOUR_US, on_batch=on_batch)
        jobs = [batcher.submit_recursive(x, n, recursive_feed(x)[1]) for x, n in zip(xs, steps)]
        outcomes = await asyncio.gather(*jobs, batcher.submit(plain))
        await batcher.close()
        return outcomes

    *forecasts, plain_out = asyncio.run(main())
    for x, n, out in zip(xs, steps, forecasts):
        np.testing.assert_allclose(out, one_by_one(engine, x, n), atol=1e-6)
    np.testing.assert_allclose(plain_out, engine.run_normalised(plain), atol=1e-6)
    # step 1 with the plain submission (whose answer goes back to the loop), steps 2-3 of all
    # three jobs (the second in the worker), then steps 4-5 of the two longer ones
    assert run.sizes == [5, 3, 3, 2, 2]
    assert sizes == [5, 3, 2]


def test_work_arriving_during_a_recursive_job_joins_its_next_step(engine: Engine) -> None:
    rng = np.random.default_rng(22)
    x, late = model_input(rng), model_input(rng)
    run = GatedRun(engine)
    sizes, _, on_batch = batches_recorder()

    async def main() -> tuple:
        batcher = Batcher(run, max_queue_delay_us=HOUR_US, on_batch=on_batch)
        job = await started(batcher.submit_recursive(x, 4, recursive_feed(x)[1]))
        await run.wait_busy()
        arrived = await started(batcher.submit(late))  # queues while step 1 runs
        run.gate.set()
        outcomes = await asyncio.gather(*job, *arrived)
        await batcher.close()
        return outcomes

    out, late_out = asyncio.run(main())
    np.testing.assert_allclose(out, one_by_one(engine, x, 4), atol=1e-6)
    np.testing.assert_allclose(late_out, engine.run_normalised(late), atol=1e-6)
    # step 2 ran together with the submission that waited; steps 3-4 after one more dispatch
    assert sizes == [1, 2, 1]


def test_a_failing_feed_or_a_cancelled_job_leaves_the_other_jobs_of_its_runs_alone(engine: Engine) -> None:
    rng = np.random.default_rng(23)
    xs = [model_input(rng) for _ in range(3)]
    run = GatedRun(engine)

    def broken_feed(ratios: np.ndarray) -> np.ndarray:
        raise ValueError("no next window")

    async def main() -> list:
        batcher = Batcher(run, max_queue_delay_us=0)
        first = await started(batcher.submit(xs[0]))
        await run.wait_busy()
        tasks = first + await started(
            batcher.submit_recursive(xs[0], 3, broken_feed),
            batcher.submit_recursive(xs[1], 3, recursive_feed(xs[1])[1]),
            batcher.submit_recursive(xs[2], 3, recursive_feed(xs[2])[1]),
        )
        tasks[3].cancel()  # gone while waiting in the queue
        run.gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        outcomes.append(await batcher.submit_recursive(xs[2], 2, recursive_feed(xs[2])[1]))  # still serving
        await batcher.close()
        return outcomes

    outcomes = asyncio.run(main())
    assert isinstance(outcomes[1], ValueError)
    np.testing.assert_allclose(outcomes[2], one_by_one(engine, xs[1], 3), atol=1e-6)
    assert isinstance(outcomes[3], asyncio.CancelledError)
    np.testing.assert_allclose(outcomes[4], one_by_one(engine, xs[2], 2), atol=1e-6)


def test_a_served_models_forecast_equals_predicting_step_by_step(engine: Engine) -> None:
    from lstm_predictor.daemon.config import Config
    from lstm_predictor.daemon.metrics import Metrics
    from lstm_predictor.daemon.registry import ServedModel

    rng = np.random.default_rng(24)
    windows = [30.0 * np.cumprod(1.0 + rng.normal(0, 0.02, LOOK_BACK)) for _ in range(3)]

    async def main() -> list:
        model = ServedModel(engine, Config(), Metrics())
        outcomes = await asyncio.gather(*(model.forecast(w, 30) for w in windows))
        await model.close()
        return outcomes

    for window, got in zip(windows, asyncio.run(main())):
        expected = []
        for _ in range(30):
            price = float(engine.predict(window[None, :]).prices[0])
            expected.append(price)
            window = np.append(window[1:], price)
        np.testing.assert_allclose(got.prices, expected, rtol=0, atol=1e-6)
