"""Tensors in and out of v2 inference requests: JSON ``data`` and the binary
tensor data extension.

The v2 input of this daemon carries RAW PRICES, shape ``[batch, look_back, 1]``,
datatype FP32: a standard client sends the closes it has, and the daemon
normalises them with the bundle's own rule. The outputs are the predicted next
close (``predicted_price``) and the model's raw answer, the ratio to the
window's reference close (``ratio``), both ``[batch, 1]`` FP32.

Binary tensors (``Inference-Header-Content-Length``) are what ``tritonclient``
sends and asks for by default: the JSON header comes first, then each binary
tensor's bytes, little-endian and row-major, in the order the tensors are listed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from ..errors import MalformedRequest
from ..windows import FP32_MAX, Rule, WindowError, check_predictions, check_scale, validate_prices
from .schemas import (
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestInput,
    ResponseOutput,
)

DATATYPE = "FP32"
INPUT_NAME = "prices"
PRICE_OUTPUT = "predicted_price"
RATIO_OUTPUT = "ratio"
OUTPUT_NAMES = (PRICE_OUTPUT, RATIO_OUTPUT)
HEADER_LENGTH = "Inference-Header-Content-Length"
_FP32 = np.dtype("<f4")
# Parameters of extensions this daemon does not implement: refused by name rather than ignored.
_UNSUPPORTED = {
    "shared_memory_region": "the shared-memory extension",
    "classification": "the classification extension",
}

_decoder = msgspec.json.Decoder(InferenceRequest)


class TensorError(MalformedRequest):
    """An inference request this server cannot run; the protocol answers such requests with 400."""

    code = "invalid_tensor"


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


def decode_request(body: bytes, header_length: str | None) -> tuple[InferenceRequest, memoryview]:
    """Split the body into the JSON inference request and the binary tensor section after it."""
    view = memoryview(body)
    if header_length is None:
        split = len(body)
    else:
        try:
            split = int(header_length)
        except ValueError:
            raise TensorError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 <= split <= len(body):
            raise TensorError(f"{HEADER_LENGTH} is {split} but the request body holds {len(body)} bytes")
    try:
        request = _decoder.decode(view[:split])
    except msgspec.ValidationError as exc:
        raise TensorError(f"invalid inference request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise TensorError(f"the inference request is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec decodes nested arrays recursively, within Python's limit
        raise TensorError("the inference request is nested too deeply to decode") from None
    return request, view[split:]


def read_windows(request: InferenceRequest, binary: memoryview, look_back: int, rule: Rule) -> np.ndarray:
    """The request's one input tensor as validated raw price windows ``(batch, look_back)`` float64,
    each close a positive FP32 number and each window within what a model normalising by ``rule`` takes."""
    if len(request.inputs) != 1:
        names = ", ".join(repr(i.name) for i in request.inputs) or "none"
        raise TensorError(f"expected exactly one input tensor named {INPUT_NAME!r}, got {names}")
    tensor = request.inputs[0]
    if tensor.name != INPUT_NAME:
        raise TensorError(f"unexpected input tensor {tensor.name!r}; this model's input is {INPUT_NAME!r}")
    if tensor.datatype != DATATYPE:
        raise TensorError(f"input {INPUT_NAME!r} has datatype {tensor.datatype!r}; expected {DATATYPE!r}")
    _refuse_extensions(f"input {INPUT_NAME!r}", tensor.parameters)
    if len(tensor.shape) != 3 or tensor.shape[1:] != [look_back, 1] or tensor.shape[0] < 1:
        raise TensorError(
            f"input {INPUT_NAME!r} has shape {tensor.shape}; expected [batch, {look_back}, 1] with batch >= 1 "
            f"(a batch of windows of {look_back} raw closes, oldest first)"
        )
    batch = tensor.shape[0]
    if "binary_data_size" in tensor.parameters:
        windows = _binary_windows(tensor, binary, batch, look_back)
        elements: Callable[[int], Sequence[Any]] = lambda b: windows[b].tolist()
    else:
        values = _json_values(tensor, batch * look_back)
        windows = _json_windows(values, batch, look_back)
        elements = lambda b: values[b * look_back : (b + 1) * look_back]
    # All windows are checked at once; one that fails goes through the element-by-element
    # validator, which names the element and what is wrong with it.
    for b in np.flatnonzero(~(np.isfinite(windows) & (windows > 0)).all(axis=1)):
        try:
            windows[b] = validate_prices(elements(b), look_back)
        except WindowError as exc:
            raise TensorError(f"input {INPUT_NAME!r}, window {b}: {exc}") from None
    _check_fp32(windows)
    try:
        check_scale(windows, rule)
    except WindowError as exc:
        raise TensorError(f"input {INPUT_NAME!r}: {exc}") from None
    return windows


def _check_fp32(windows: np.ndarray) -> None:
    """JSON numbers are read as float64; an FP32 tensor holds only those that stay positive and
    finite in FP32 (1e39 would be inf, 1e-46 zero). Binary tensors are FP32 already."""
    with np.errstate(over="ignore"):
        as_fp32 = windows.astype(_FP32)
    bad = np.flatnonzero(~(np.isfinite(as_fp32) & (as_fp32 > 0)))
    if bad.size:
        b, i = divmod(int(bad[0]), windows.shape[1])
        raise TensorError(
            f"input {INPUT_NAME!r}, window {b}: prices[{i}] is {float(windows[b, i])!r}, which {DATATYPE} cannot hold "
            f"as a positive finite number (it holds {float(np.finfo(_FP32).smallest_subnormal):.3g} to {FP32_MAX:.4g})"
        )


def check_outputs(prices: np.ndarray) -> None:
    """Refuse (400) a batch with a predicted price that is no positive finite FP32 number."""
    try:
        check_predictions(prices, FP32_MAX)
    except WindowError as exc:
        raise TensorError(f"input {INPUT_NAME!r}: {exc}") from None


def _json_values(tensor: RequestInput, count: int) -> list[Any]:
    if tensor.data is None:
        raise TensorError(f"input {INPUT_NAME!r} has neither 'data' nor a 'binary_data_size' parameter")
    values = _flatten(tensor.data)
    if len(values) != count:
        raise TensorError(f"input {INPUT_NAME!r} holds {len(values)} elements but its shape {tensor.shape} needs {count}")
    return values


def _json_windows(values: list[Any], batch: int, look_back: int) -> np.ndarray:
    """JSON numbers as float64 windows. When some element is not a number (a string, a
    boolean) or is an integer beyond float range, every window is marked NaN so that the
    validator visits each and names it."""
    if all(type(v) is float or type(v) is int for v in values):
        try:
            return np.array(values, dtype=np.float64).reshape(batch, look_back)
        except OverflowError:  # an int beyond float range: the validator names it
            pass
    return np.full((batch, look_back), np.nan)


def _binary_windows(tensor: RequestInput, binary: memoryview, batch: int, look_back: int) -> np.ndarray:
    if tensor.data is not None:
        raise TensorError(f"input {INPUT_NAME!r} has both 'data' and a 'binary_data_size' parameter")
    size = tensor.parameters["binary_data_size"]
    expected = batch * look_back * _FP32.itemsize
    if isinstance(size, bool) or size != expected:
        raise TensorError(
            f"input {INPUT_NAME!r} binary_data_size is {size!r}; shape {tensor.shape} of {DATATYPE} needs {expected} bytes"
        )
    if len(binary) != expected:
        raise TensorError(
            f"the request carries {len(binary)} bytes of binary tensor data; input {INPUT_NAME!r} declares {expected}"
        )
    return np.frombuffer(binary, dtype=_FP32).astype(np.float64).reshape(batch, look_back)


def _flatten(data: Any) -> list[Any]:
    """Row-major elements of a flat or nested JSON array; non-list leaves are left for validation."""
    if not isinstance(data, list):
        raise TensorError(f"input {INPUT_NAME!r} 'data' must be an array of numbers, got {data!r}")
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def requested_outputs(request: InferenceRequest) -> list[RequestedOutput]:
    """The outputs to return, in the requested order (all of them when none is named)."""
    default_binary = _flag(request.parameters, "binary_data_output", "the request")
    if request.outputs is None:
        return [RequestedOutput(name, default_binary) for name in OUTPUT_NAMES]
    selected: list[RequestedOutput] = []
    for output in request.outputs:
        if output.name not in OUTPUT_NAMES:
            raise TensorError(
                f"unknown output {output.name!r}; this model's outputs are {', '.join(map(repr, OUTPUT_NAMES))}"
            )
        if any(s.name == output.name for s in selected):
            raise TensorError(f"output {output.name!r} is requested twice")
        where = f"output {output.name!r}"
        _refuse_extensions(where, output.parameters)
        binary = _flag(output.parameters, "binary_data", where) if "binary_data" in output.parameters else default_binary
        selected.append(RequestedOutput(output.name, binary))
    return selected


def _flag(parameters: Parameters, key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise TensorError(f"{where}: parameter {key!r} must be true or false, got {value!r}")
    return value


def _refuse_extensions(where: str, parameters: Parameters) -> None:
    for key, extension in _UNSUPPORTED.items():
        if key in parameters:
            raise TensorError(f"{where}: parameter {key!r} needs {extension}, which this server does not support")


def encode_response(
    response: InferenceResponse, tensors: dict[str, np.ndarray], selected: list[RequestedOutput]
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of the response: JSON only, or JSON then binary tensors with their header length."""
    chunks: list[bytes] = []
    for output in selected:
        values = np.ascontiguousarray(tensors[output.name], dtype=_FP32).reshape(-1, 1)
        tensor = ResponseOutput(name=output.name, shape=list(values.shape), datatype=DATATYPE)
        if output.binary:
            raw = values.tobytes()
            tensor.parameters = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            # The shortest decimal that reads back as the same float32: faithful to FP32 and readable.
            tensor.data = [float(str(v)) for v in values.reshape(-1)]
        response.outputs.append(tensor)
    header = msgspec.json.encode(response)
    if not chunks:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(chunks), {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
