"""The model bundle: the one contract between training, conversion and serving.

A bundle is a folder::

    model.onnx          the fp32 graph (required)
    metadata.json       everything the daemon needs and nothing it must guess (required)
    model.int8.onnx     optional dynamically quantised variant
    model.keras         optional source model
    report/             optional evaluation report

This module reads and checks the folder and the metadata; the tensor shapes
are checked against the graph itself by :mod:`lstm_predictor.daemon.engine`,
which is the only place an onnxruntime session is made.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .windows import RULES, Rule

FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
METADATA_FILE = "metadata.json"
KERAS_FILE = "model.keras"
REPORT_DIR = "report"


class BundleError(Exception):
    """A bundle that cannot be served; the message names the bundle and the problem."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class Bundle:
    """A checked bundle folder. ``metadata`` is the full metadata.json, for display."""

    path: Path
    name: str
    version: str
    symbol: str
    look_back: int
    normalisation: Rule
    input: TensorSpec
    output: TensorSpec
    metadata: Mapping[str, Any] = field(repr=False)

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def int8_file(self) -> Path | None:
        """The int8 variant, only when the metadata records it *and* its accuracy gate passed."""
        info = self.metadata.get("files", {}).get(INT8_FILE)
        gate = info.get("accuracy_gate") if isinstance(info, dict) else None
        if not isinstance(gate, dict) or not gate.get("passed", False):
            return None
        return self.path / INT8_FILE

    def sha256(self, filename: str = MODEL_FILE) -> str:
        return self.metadata["files"][filename]["sha256"]


def _require(meta: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in meta:
        raise BundleError(f"{where}: metadata.json has no {key!r}")
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise BundleError(f"{where}: metadata.json {key!r} is {value!r}, which is not a {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _tensor(meta: Mapping[str, Any], key: str, where: str) -> TensorSpec:
    spec = _require(meta, key, dict, where)
    name = _require(spec, "name", str, f"{where} {key}")
    shape = _require(spec, "shape", list, f"{where} {key}")
    if not all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in shape):
        raise BundleError(f"{where}: {key}.shape {shape!r} must hold positive integers or null")
    return TensorSpec(name=name, shape=tuple(shape))


def read_bundle(path: str | Path) -> Bundle:
    """Read and check a bundle folder, or raise BundleError naming what is wrong."""
    path = Path(path)
    where = f"bundle {path}"
    if not path.is_dir():
        raise BundleError(f"{where}: not a directory")
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        raise BundleError(f"{where}: {METADATA_FILE} is missing")
    if not (path / MODEL_FILE).is_file():
        raise BundleError(f"{where}: {MODEL_FILE} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise BundleError(f"{where}: {METADATA_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise BundleError(f"{where}: {METADATA_FILE} must hold a JSON object")

    version = _require(meta, "format_version", int, where)
    if version != FORMAT_VERSION:
        raise BundleError(f"{where}: format_version {version} is not supported (this daemon reads {FORMAT_VERSION})")
    symbol = _require(meta, "symbol", str, where)
    look_back = _require(meta, "look_back", int, where)
    if look_back < 2:
        raise BundleError(f"{where}: look_back must be at least 2, got {look_back}")
    rule = _require(meta, "normalisation", str, where)
    if rule not in RULES:
        raise BundleError(f"{where}: normalisation {rule!r} is unknown; expected one of {', '.join(RULES)}")
    inp = _tensor(meta, "input", where)
    out = _tensor(meta, "output", where)
    if len(inp.shape) != 3 or inp.shape[1:] != (look_back, 1):
        raise BundleError(f"{where}: input shape {list(inp.shape)} must be [batch, {look_back}, 1] (look_back {look_back})")
    if len(out.shape) != 2 or out.shape[1] != 1:
        raise BundleError(f"{where}: output shape {list(out.shape)} must be [batch, 1]")

    files = _require(meta, "files", dict, where)
    if MODEL_FILE not in files:
        raise BundleError(f"{where}: metadata.json 'files' does not record {MODEL_FILE}")
    for filename in files:
        file_path = path / filename
        if not file_path.is_file():
            raise BundleError(f"{where}: {filename} is recorded in metadata.json but missing")
        info = _require(files, filename, dict, f"{where} files")
        expected = _require(info, "sha256", str, f"{where} files.{filename}")
        actual = sha256_file(file_path)
        if actual != expected:
            raise BundleError(
                f"{where}: {filename} does not match its recorded sha256 "
                f"(recorded {expected[:12]}…, file {actual[:12]}…): the file was changed or corrupted"
            )

    return Bundle(
        path=path,
        name=str(meta.get("name") or path.name),
        version=str(meta.get("version") or meta.get("created_at") or "unversioned"),
        symbol=symbol,
        look_back=look_back,
        normalisation=rule,  # type: ignore[arg-type]
        input=inp,
        output=out,
        metadata=meta,
    )


def write_metadata(path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write metadata.json, recording the sha256 of every ONNX file already in the folder.

    The writer computes the hashes so that no caller can record a stale one.
    """
    path = Path(path)
    files = dict(metadata.get("files", {}))
    for filename in (MODEL_FILE, INT8_FILE):
        if (path / filename).is_file():
            files[filename] = {**files.get(filename, {}), "sha256": sha256_file(path / filename)}
        else:
            files.pop(filename, None)
    out = {"format_version": FORMAT_VERSION, **metadata, "files": files}
    meta_path = path / METADATA_FILE
    meta_path.write_text(json.dumps(out, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return meta_path
