"""The set of served models: found in a directory, loaded together, swapped together.

A registry is built whole, off to the side (every bundle read, its session
opened and warmed up) and only then handed to the server, so a reload either
replaces the entire set or changes nothing. Building blocks the calling thread
(hashing files, opening onnxruntime sessions); the server does it in a worker
thread on reload so requests keep being answered meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .batching import Batcher
from .bundle import METADATA_FILE, Bundle, BundleError, read_bundle
from .config import Config
from .engine import Engine, Prediction
from .errors import UnknownModelError
from .metrics import Metrics
from .windows import denormalise, normalise

log = logging.getLogger(__name__)


class ServedModel:
    """One bundle being served: its engine, behind its own batcher."""

    def __init__(self, engine: Engine, config: Config, metrics: Metrics) -> None:
        self.bundle: Bundle = engine.bundle
        self.name = self.bundle.name
        self.engine = engine
        self.variant = engine.variant
        self.look_back = self.bundle.look_back
        self._metrics = metrics
        self.batcher = Batcher(
            self._run,
            max_batch_size=config.max_batch_size,
            max_queue_delay_us=config.max_queue_delay_us,
            max_queue_size=config.max_queue_size,
            on_batch=self._on_batch,
        )

    async def predict(self, windows: np.ndarray) -> Prediction:
        """Validated raw price windows ``(n, look_back)`` -> predictions, batched with concurrent requests."""
        x, refs = normalise(windows, self.bundle.normalisation)
        ratios = (await self.batcher.submit(x)).astype(np.float64)
        return Prediction(prices=denormalise(ratios, refs), ratios=ratios, refs=refs)

    async def forecast(self, window: np.ndarray, steps: int) -> Prediction:
        """One validated raw price window ``(look_back,)`` -> ``steps`` recursive predictions
        ``(steps,)``: each step's full-precision price becomes the newest close of the next
        step's window. The steps run in the batcher's worker, batched with concurrent work."""
        rule = self.bundle.normalisation
        windows = np.asarray(window, dtype=np.float64)[None, :]
        x, ref = normalise(windows, rule)
        refs = [ref]

        def feed(ratios: np.ndarray) -> np.ndarray:  # the worker thread; the same arithmetic as predict()
            nonlocal windows
            price = denormalise(ratios.astype(np.float64), refs[-1])
            windows = np.concatenate([windows[:, 1:], price[:, None]], axis=1)
            x, ref = normalise(windows, rule)
            refs.append(ref)
            return x

        ratios = (await self.batcher.submit_recursive(x, steps, feed)).astype(np.float64).reshape(-1)
        step_refs = np.concatenate(refs)
        return Prediction(prices=denormalise(ratios, step_refs), ratios=ratios, refs=step_refs)

    async def close(self) -> None:
        await self.batcher.close()

    def _run(self, x: np.ndarray) -> np.ndarray:
        # The batcher's worker thread: time the inference itself, without queueing
        # (Metrics.inference is the one metric recorded off the event loop).
        started = time.perf_counter()
        ratios = self.engine.run_normalised(x)
        self._metrics.inference(self.name, time.perf_counter() - started, x.shape[0])
        return ratios

    def _on_batch(self, size: int, queue_wait: float) -> None:
        self._metrics.queue_wait(self.name, queue_wait)


class Registry:
    """Served models by name (bundle folder name), also reachable by ticker symbol.

    ``requests`` counts the requests that began while this set was the served one
    (the app's middleware keeps it): only they can hold one of its models, so once
    a reload has replaced the set and the count is back to zero it can be closed,
    however many awaits a handler takes between looking a model up and using it.
    """

    def __init__(self, models: Mapping[str, ServedModel], default: str) -> None:
        self.models = dict(sorted(models.items()))
        self.default = self.models[default]
        self.requests = 0
        self._lookup: dict[str, ServedModel] = {}
        # Names first, so a folder name always wins over another bundle's symbol;
        # a symbol served by two bundles is reachable only by their names.
        by_symbol: dict[str, list[ServedModel]] = {}
        for model in self.models.values():
            by_symbol.setdefault(model.bundle.symbol.casefold(), []).append(model)
        for symbol, served in by_symbol.items():
            if len(served) == 1:
                self._lookup[symbol] = served[0]
        for name, model in self.models.items():
            self._lookup[name.casefold()] = model

    @property
    def names(self) -> list[str]:
        return list(self.models)

    @property
    def bundles(self) -> list[Bundle]:
        return [model.bundle for model in self.models.values()]

    @property
    def variants(self) -> dict[str, str]:
        return {model.name: model.variant for model in self.models.values()}

    def get(self, name_or_symbol: str | None) -> ServedModel:
        """The model for a request's ``symbol`` (case-insensitive); the default model for ``None``."""
        if name_or_symbol is None:
            return self.default
        model = self._lookup.get(name_or_symbol.casefold())
        if model is None:
            raise UnknownModelError(name_or_symbol, self.names)
        return model

    async def close(self, timeout: float) -> None:
        """Retire this set once it is no longer served: wait (up to ``timeout`` seconds) for
        the requests that began under it, then drain every batcher."""
        deadline = time.monotonic() + timeout
        while self.requests and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for model in self.models.values():
            await model.close()


def bundle_dirs(path: Path) -> list[Path]:
    """The bundle folders under ``path``: ``path`` itself when it is a bundle, else its
    visible sub-folders (each of which must then be a valid bundle)."""
    if not path.is_dir():
        raise BundleError(f"models directory {path} {'is not a directory' if path.exists() else 'does not exist'}")
    if (path / METADATA_FILE).is_file():
        return [path]
    try:
        dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    except OSError as exc:
        raise BundleError(f"models directory {path} cannot be listed ({exc.strerror or exc})") from None
    if not dirs:
        raise BundleError(f"models directory {path} holds no bundle (one folder per model, each with metadata.json)")
    return dirs


def load_registry(config: Config, metrics: Metrics) -> Registry:
    """Read, check, open and warm up every bundle in ``config.models``, or raise BundleError
    naming each bundle that failed (none is served unless all load)."""
    engines: list[Engine] = []
    failures: list[str] = []
    for path in bundle_dirs(config.models):
        try:
            engines.append(_load(path, config))
        except BundleError as exc:
            failures.append(str(exc))
        except OSError as exc:  # unreadable files: permissions, a disk error
            failures.append(f"bundle {path}: {exc}")
    if failures:
        raise BundleError("; ".join(failures))
    if config.expect_symbol and not any(e.bundle.symbol == config.expect_symbol for e in engines):
        raise BundleError(
            f"METADATA_PATH names symbol {config.expect_symbol!r}, but no bundle in {config.models} serves it"
        )
    names = sorted(engine.bundle.name for engine in engines)
    default = config.default_model or names[0]
    if default not in names:
        raise BundleError(f"default_model {default!r} is not among the loaded models ({', '.join(names)})")
    models = {engine.bundle.name: ServedModel(engine, config, metrics) for engine in engines}
    return Registry(models, default)


def _load(path: Path, config: Config) -> Engine:
    # A model is served (and labelled in metrics) under its folder name, which is
    # unique in the directory; metadata "name" may repeat when a bundle is copied.
    # So the name must be text: undecodable bytes could not be put in JSON or a metric label.
    if not _is_text(path.name):
        raise BundleError(f"bundle folder {path.name!a} in {path.parent}: the name is not valid UTF-8; rename it")
    bundle = dataclasses.replace(read_bundle(path), name=path.name)
    _check_expectations(bundle, config)
    engine = _open(bundle, config)
    engine.warm_up()
    return engine


def _is_text(name: str) -> bool:
    try:
        name.encode("utf-8")  # undecodable bytes come through os.listdir as lone surrogates
    except UnicodeEncodeError:
        return False
    return True


def _open(bundle: Bundle, config: Config) -> Engine:
    if config.variant == "int8" and bundle.int8_file is None:
        log.warning("bundle %s has no int8 variant that passed its accuracy gate; serving fp32", bundle.path)
        return Engine(bundle, "fp32")
    return Engine(bundle, config.variant)


def _check_expectations(bundle: Bundle, config: Config) -> None:
    if config.expect_look_back is not None and bundle.look_back != config.expect_look_back:
        raise BundleError(
            f"bundle {bundle.path}: look_back is {bundle.look_back}, but LOOK_BACK/METADATA_PATH "
            f"expects {config.expect_look_back}"
        )
