"""Bad input at scale: property-based tests of every request body the daemon accepts.

Two layers, one set of generators:

* in process, the decoding and validation the handlers run, hundreds of examples
  a second: whatever the bytes, they end in a valid request or in an
  :class:`~lstm_predictor.daemon.errors.ApiError` (which the error middleware
  renders), never in another exception (which would be a 500);
* over HTTP against one real daemon (``api_daemon``, the tiny TINY3.SA bundle),
  fewer examples: never a 5xx, always the route family's JSON error object whose
  status is the HTTP status and which holds no traceback, and for a valid body a
  200 with finite, positive prices.

The generators write JSON text themselves, so bodies may hold what a JSON encoder
would never write: ``NaN`` and ``Infinity``, ``1e400``, integers of hundreds of
digits, repeated keys, arrays nested thousands deep. Examples are derandomized
and no example database is written: every run tries the same inputs.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_predictor.daemon.errors import ApiError, error_body
from lstm_predictor.daemon.jsonio import decode_json
from lstm_predictor.daemon.kserve.tensors import (
    HEADER_LENGTH,
    OUTPUT_NAMES,
    decode_request,
    read_windows,
    requested_outputs,
)
from lstm_predictor.daemon.schemas import MAX_FORECAST_DAYS, ForecastRequest, LiveRequest, PredictRequest
from lstm_predictor.daemon.trading_calendar import LAST_DATABLE_DAY
from lstm_predictor.daemon.windows import WindowError, check_predictions, check_scale, validate_prices

MODEL = "TINY3.SA"
LOOK_BACK = 60  # tiny_bundle's default, which api_daemon serves
RULE = "window_last"
FP32_MAX = float(np.finfo(np.float32).max)
PREDICT_ROUTES = ("/predict", "/predict/live", "/predict/forecast")
INFER = f"/v2/models/{MODEL}/infer"
INFER_ROUTES = (INFER, f"/v2/models/{MODEL}/versions/1/infer")

_fuzz = dict(deadline=None, derandomize=True, database=None,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
IN_PROCESS = settings(max_examples=150, **_fuzz)
OVER_HTTP = settings(max_examples=60, **_fuzz)


# -- JSON text, including what an encoder would never write --------------------------------------


class Raw(str):
    """A literal written into the JSON text as it is: ``NaN``, ``1e400``, ``-0``, ``01``..."""


class Obj(tuple):
    """An object as (key, value) pairs, so that a key may repeat."""


def to_json(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Obj):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return to_json(Obj(value.items()))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(to_json, value)) + "]"
    return json.dumps(value)  # floats: NaN, Infinity and -Infinity as Python writes them


ODD_NUMBERS = st.sampled_from([
    "NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "4e38", "1e39", "1e308",
    str(10**400), str(-(10**400)), str(2**64), str(-(2**63) - 1), "9" * 5000,
    "0", "-0", "-0.0", "1E+2", "01", "+1", ".5", "1.", "0x1F", "1e", "--1",
]).map(Raw)
NUMBERS = st.one_of(
    ODD_NUMBERS,
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e-3, max_value=1e5),
)
FIELDS = ("prices", "symbol", "last_date", "days", "id", "inputs", "outputs", "name", "shape", "datatype",
          "data", "parameters", "binary_data", "binary_data_size", "binary_data_output")
KEYS = st.one_of(st.sampled_from(FIELDS), st.text(max_size=12))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20),
                    st.sampled_from(["2024-02-09", "0001-01-01", "9999-12-31", "2024-02-30", MODEL, "FP32"]))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.lists(st.tuples(KEYS, inner), max_size=6).map(Obj)),
    max_leaves=30,
)


DEEP = st.integers(min_value=1, max_value=20_000).map(lambda n: "[" * n + "]" * n)
OBJECT_DEEP = st.integers(min_value=1, max_value=5_000).map(lambda n: '{"a":' * n + "1" + "}" * n)


def window(low: float = 1e-2, high: float = 1e5) -> st.SearchStrategy[list[float]]:
    """LOOK_BACK closes in [low, high]: a log-uniform draw from a seed, then up to four closes
    set by hypothesis (which seeks the edges: ``low``, ``high``...). Drawing all LOOK_BACK
    floats through hypothesis would make each example many times slower."""

    def build(seed: int, edits: list[tuple[int, float]]) -> list[float]:
        rng = np.random.default_rng(seed)
        closes = np.exp(rng.uniform(math.log(low), math.log(high), LOOK_BACK)).clip(low, high).tolist()
        for i, value in edits:
            closes[i] = value
        return closes

    edit = st.tuples(st.integers(min_value=0, max_value=LOOK_BACK - 1), st.floats(min_value=low, max_value=high))
    return st.builds(build, st.integers(min_value=0, max_value=2**32 - 1), st.lists(edit, max_size=4))


WIDE = (5e-324, 1.7e308)  # every positive finite float64, for bodies "valid" but for their scale
DATES = st.dates(max_value=LAST_DATABLE_DAY).map(dt.date.isoformat)
SYMBOLS = st.sampled_from([MODEL, MODEL.lower(), "TINY3.sa"])


@st.composite
def valid_bodies(draw: st.DrawFn, route: str, prices: tuple[float, float] = (1e-2, 1e5)) -> dict[str, Any]:
    """A body each route accepts from the tiny model, whose answers are all finite (with closes
    in the default range ``prices``)."""
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["symbol"] = draw(SYMBOLS)
    if route == "/predict/forecast":
        body["days"] = draw(st.integers(min_value=1, max_value=MAX_FORECAST_DAYS))
    if route == "/predict" or (route == "/predict/forecast" and draw(st.booleans())):
        body["prices"] = draw(window(*prices))
        if draw(st.booleans()):
            body["last_date"] = draw(DATES)
    return body


def nodes(value: Any, path: tuple = ()) -> list[tuple]:
    """The path (keys and indices) of every node of a JSON tree, the root first."""
    out = [path]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        out += nodes(child, (*path, key))
    return out


@st.composite
def mutated(draw: st.DrawFn, body: dict[str, Any]) -> Any:
    """``body`` broken one to three times, anywhere in it: a node replaced by any JSON value (a
    price by ``NaN`` or ``1e400``, a shape by a string...), removed, or an object given a repeated
    key or a stranger; an array cut short or grown."""
    body = json.loads(json.dumps(body))  # a deep copy to edit
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(nodes(body)))
        if not path:
            return Obj([*body.items(), (draw(KEYS), draw(JSON_VALUES))]) if isinstance(body, dict) else body
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "remove", "resize"]))
        if action == "replace":
            parent[key] = draw(st.one_of(NUMBERS, JSON_VALUES))
        elif action == "remove":
            del parent[key]
        elif isinstance(parent[key], list):
            parent[key] = (parent[key] * 3)[: draw(st.integers(min_value=0, max_value=2 * len(parent[key]) + 1))]
    if isinstance(body, dict) and draw(st.booleans()):  # a key repeated: which value wins?
        return Obj([*body.items(), (draw(st.sampled_from(sorted(body) or ["prices"])), draw(JSON_VALUES))])
    return body


def any_body(valid: st.SearchStrategy[dict[str, Any]], wide: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Bytes of any kind, JSON of any shape, valid bodies broken one way or another, and bodies
    valid but for closes from 5e-324 to 1.7e308 (``wide``)."""
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
        JSON_VALUES.map(to_json).map(str.encode),
        DEEP.map(str.encode),
        OBJECT_DEEP.map(str.encode),
        valid.flatmap(mutated).map(to_json).map(str.encode),
        valid.flatmap(mutated).map(to_json).map(str.encode),
        wide.map(to_json).map(str.encode),
    )


# -- the v2 inference request, JSON and binary ----------------------------------------------------


def v2_tensor(batch: int, data: Any = None, **overrides: Any) -> dict[str, Any]:
    tensor = {"name": "prices", "shape": [batch, LOOK_BACK, 1], "datatype": "FP32", **overrides}
    if data is not None:
        tensor["data"] = data
    return tensor


@st.composite
def v2_json_bodies(draw: st.DrawFn, prices: tuple[float, float] = (1e-2, 1e5)) -> dict[str, Any]:
    batch = draw(st.integers(min_value=1, max_value=4))
    rows = draw(st.lists(window(*prices), min_size=batch, max_size=batch))
    data = draw(st.sampled_from(["flat", "rows", "nested"]))
    tensor_data = {"flat": [p for r in rows for p in r], "rows": rows, "nested": [[[p] for p in r] for r in rows]}[data]
    body: dict[str, Any] = {"inputs": [v2_tensor(batch, tensor_data)]}
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=10))
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(OUTPUT_NAMES), unique=True, min_size=1))
        body["outputs"] = [{"name": n, "parameters": {"binary_data": False}} for n in names]
    return body


@st.composite
def v2_binary_requests(draw: st.DrawFn, valid: bool) -> tuple[bytes, dict[str, str]]:
    """A header with a binary tensor after it. Valid: positive FP32 closes of sane size; else any
    bit patterns (NaN, infinities, negatives, subnormals), and sizes and lengths that may lie."""
    batch = draw(st.integers(min_value=1, max_value=3))
    if valid:
        values = draw(st.lists(window(), min_size=batch, max_size=batch))
        raw = np.asarray(values, dtype="<f4").tobytes()
    else:
        raw = draw(st.binary(min_size=0, max_size=4 * LOOK_BACK * batch + 8))
    size: Any = len(raw) if valid else draw(st.one_of(st.just(len(raw)), st.integers(), NUMBERS, st.booleans()))
    header = {"inputs": [v2_tensor(batch, parameters={"binary_data_size": size})],
              "parameters": {"binary_data_output": draw(st.booleans())}}
    text = to_json(header).encode()
    length: Any = len(text)
    if not valid:
        length = draw(st.one_of(st.just(len(text)), st.integers(min_value=-5, max_value=len(text) + len(raw) + 5),
                                st.sampled_from(["", " 1", "ten", "1e3", "-0", "9" * 30])))
    return text + raw, {HEADER_LENGTH: str(length), "Content-Type": "application/octet-stream"}


def v2_any_body() -> st.SearchStrategy[bytes]:
    tensor_fields = st.fixed_dictionaries({}, optional={
        "name": st.one_of(st.just("prices"), JSON_VALUES),
        "shape": st.one_of(st.just([1, LOOK_BACK, 1]), st.lists(st.one_of(st.integers(), NUMBERS), max_size=4), JSON_VALUES),
        "datatype": st.one_of(st.sampled_from(["FP32", "FP64", "INT8", "BYTES", ""]), JSON_VALUES),
        "data": st.one_of(JSON_VALUES, st.lists(NUMBERS, min_size=LOOK_BACK, max_size=LOOK_BACK), DEEP.map(Raw)),
        "parameters": st.one_of(st.dictionaries(KEYS, SCALARS, max_size=3), JSON_VALUES),
    })
    structured = st.fixed_dictionaries({"inputs": st.one_of(st.lists(tensor_fields, max_size=2), JSON_VALUES)}, optional={
        "id": JSON_VALUES, "parameters": st.one_of(st.dictionaries(KEYS, SCALARS, max_size=3), JSON_VALUES),
        "outputs": st.one_of(st.lists(st.fixed_dictionaries({"name": st.one_of(st.sampled_from(OUTPUT_NAMES), JSON_VALUES)},
                                                            optional={"parameters": JSON_VALUES}), max_size=3), JSON_VALUES),
    })
    return st.one_of(any_body(v2_json_bodies(), v2_json_bodies(WIDE)), structured.map(to_json).map(str.encode))


# -- in process: the handlers' own decoding and validation -----------------------------------------

DECODERS = {route: msgspec.json.Decoder(t) for route, t in
            zip(PREDICT_ROUTES, (PredictRequest, LiveRequest, ForecastRequest))}


def validate_predict_body(route: str, body: bytes) -> Any:
    """What a /predict route does with a body before it reaches the model: decode it, then check
    its window (the tiny model's look_back and rule), raising ApiError or WindowError."""
    request = decode_json(body, DECODERS[route])
    prices = getattr(request, "prices", None)
    if prices is not None:
        check_scale(validate_prices(prices, LOOK_BACK), RULE)
    return request


def validate_v2_body(body: bytes, header_length: str | None) -> np.ndarray:
    """What the v2 infer route does with a body before it reaches the model."""
    request, binary = decode_request(body, header_length)
    windows = read_windows(request, binary, LOOK_BACK, RULE)
    requested_outputs(request)
    return windows


def assert_refused_in_shape(call: Callable[[], Any], v2: bool) -> Any:
    """``call()`` either succeeds or raises an ApiError (a 4xx or 503) whose rendered body is the
    documented error object; a WindowError (which the route makes a 422) is also a refusal."""
    try:
        return call()
    except WindowError as exc:
        assert str(exc), "a refusal says why"
        return None
    except ApiError as exc:
        assert 400 <= exc.status < 500 or exc.status == 503, (exc.status, exc.message)
        assert_error_object(json.loads(error_body(exc, v2)), exc.status, v2)
        return None


def assert_error_object(payload: Any, status: int, v2: bool) -> None:
    if v2:
        assert set(payload) == {"error"} and isinstance(payload["error"], str) and payload["error"], payload
        message = payload["error"]
    else:
        error = payload["error"]
        assert {"status", "code", "message"} <= set(error) <= {"status", "code", "message", "details"}, payload
        assert error["status"] == status and error["code"] and error["message"], payload
        message = error["message"]
    assert "Traceback" not in message


def assert_window_ok(windows: np.ndarray, batch: int | None = None) -> None:
    assert windows.dtype == np.float64 and windows.shape[-1] == LOOK_BACK
    if batch is not None:
        assert windows.shape == (batch, LOOK_BACK)
    assert np.isfinite(windows).all() and (windows > 0).all()


@pytest.mark.parametrize("route", PREDICT_ROUTES)
@IN_PROCESS
@given(data=st.data())
def test_any_body_is_decoded_or_refused_with_an_api_error(route, data):
    body = data.draw(any_body(valid_bodies(route), valid_bodies(route, WIDE)))
    request = assert_refused_in_shape(lambda: validate_predict_body(route, body), v2=False)
    if getattr(request, "prices", None) is not None:
        assert_window_ok(validate_prices(request.prices, LOOK_BACK))


@pytest.mark.parametrize("route", PREDICT_ROUTES)
@IN_PROCESS
@given(data=st.data())
def test_every_valid_body_is_accepted(route, data):
    body = data.draw(valid_bodies(route))
    request = validate_predict_body(route, to_json(body).encode())
    assert getattr(request, "prices", None) == body.get("prices")


@IN_PROCESS
@given(body=v2_any_body())
def test_any_v2_body_is_decoded_or_refused_with_an_api_error(body):
    windows = assert_refused_in_shape(lambda: validate_v2_body(body, None), v2=True)
    if windows is not None:
        assert_window_ok(windows)
        assert (windows <= FP32_MAX).all()


@IN_PROCESS
@given(request=v2_binary_requests(valid=False))
def test_any_binary_tensor_is_decoded_or_refused_with_an_api_error(request):
    body, headers = request
    windows = assert_refused_in_shape(lambda: validate_v2_body(body, headers[HEADER_LENGTH]), v2=True)
    if windows is not None:
        assert_window_ok(windows)


@IN_PROCESS
@given(body=v2_json_bodies())
def test_every_valid_v2_json_body_is_accepted(body):
    batch = body["inputs"][0]["shape"][0]
    assert_window_ok(validate_v2_body(to_json(body).encode(), None), batch)


@IN_PROCESS
@given(request=v2_binary_requests(valid=True))
def test_every_valid_binary_tensor_is_accepted(request):
    body, headers = request
    windows = validate_v2_body(body, headers[HEADER_LENGTH])
    assert_window_ok(windows)


# -- over HTTP: the real daemon ---------------------------------------------------------------------


def assert_error_reply(reply, v2: bool) -> None:
    assert reply.status < 500, (reply.status, reply.body[:300])
    assert 400 <= reply.status, (reply.status, reply.body[:300])
    assert reply.headers["Content-Type"].startswith("application/json"), reply.headers["Content-Type"]
    assert b"Traceback" not in reply.body
    assert_error_object(json.loads(reply.body), reply.status, v2)


def assert_answer(reply, v2: bool) -> Any:
    """A 200 (whose body the caller checks) or an error in the documented shape; never a 5xx."""
    if reply.status == 200:
        return reply
    assert_error_reply(reply, v2)
    return None


def post(daemon, path: str, body: bytes, headers: dict[str, str] | None = None):
    return daemon.request("POST", path, body, headers or {"Content-Type": "application/json"})


def finite_prices(payload: dict[str, Any]) -> list[float]:
    prices = [day["predicted_price"] for day in payload["forecast"]] if "forecast" in payload else [payload["predicted_price"]]
    assert all(isinstance(p, float) and math.isfinite(p) and p > 0 for p in prices), payload
    return prices


@pytest.mark.parametrize("route", PREDICT_ROUTES)
@OVER_HTTP
@given(data=st.data())
def test_the_daemon_answers_any_body_with_a_200_or_its_error_object(api_daemon, route, data):
    reply = assert_answer(post(api_daemon, route, data.draw(any_body(valid_bodies(route), valid_bodies(route, WIDE)))), v2=False)
    if reply is not None:
        finite_prices(reply.json())


@pytest.mark.parametrize("route", PREDICT_ROUTES)
@OVER_HTTP
@given(data=st.data())
def test_the_daemon_answers_every_valid_body_with_finite_prices(api_daemon, route, data):
    reply = post(api_daemon, route, to_json(data.draw(valid_bodies(route))).encode())
    assert reply.status == 200, reply.body[:300]
    finite_prices(reply.json())


def v2_outputs(reply) -> dict[str, np.ndarray]:
    """Each output tensor of a 200 v2 answer, from JSON ``data`` or the binary section."""
    split = int(reply.headers.get(HEADER_LENGTH, len(reply.body)))
    header, offset, out = json.loads(reply.body[:split]), split, {}
    for output in header["outputs"]:
        if "data" in output:
            out[output["name"]] = np.array(output["data"], dtype=np.float64)
        else:
            size = output["parameters"]["binary_data_size"]
            out[output["name"]] = np.frombuffer(reply.body[offset:offset + size], dtype="<f4")
            offset += size
        assert out[output["name"]].shape == (output["shape"][0],) and np.isfinite(out[output["name"]]).all(), output
    assert offset == len(reply.body)
    if "predicted_price" in out:
        assert (out["predicted_price"] > 0).all()
    return out


@pytest.mark.parametrize("path", INFER_ROUTES)
@OVER_HTTP
@given(body=v2_any_body())
def test_the_daemon_answers_any_v2_body_with_a_200_or_the_protocol_error(api_daemon, path, body):
    reply = assert_answer(post(api_daemon, path, body), v2=True)
    if reply is not None:
        v2_outputs(reply)


@OVER_HTTP
@given(request=v2_binary_requests(valid=False))
def test_the_daemon_answers_any_binary_tensor_with_a_200_or_the_protocol_error(api_daemon, request):
    body, headers = request
    reply = assert_answer(post(api_daemon, INFER, body, headers), v2=True)
    if reply is not None:
        assert set(v2_outputs(reply)) == set(OUTPUT_NAMES)


@OVER_HTTP
@given(request=st.one_of(v2_json_bodies().map(lambda b: (to_json(b).encode(), None)), v2_binary_requests(valid=True)))
def test_the_daemon_answers_every_valid_v2_body_with_finite_prices(api_daemon, request):
    body, headers = request
    reply = post(api_daemon, INFER, body, headers)
    assert reply.status == 200, reply.body[:300]
    assert v2_outputs(reply)


# -- what the fuzzing found, pinned ------------------------------------------------------------------

FAR_APART = [1e30] * (LOOK_BACK - 1) + [1e-20]  # window_last: ratios of 1e50, beyond float32


def test_closes_too_far_apart_for_the_model_are_refused_not_answered_with_a_null_price(api_daemon):
    for route in ("/predict", "/predict/forecast"):
        reply = api_daemon.post(route, {"prices": FAR_APART})
        assert_error_reply(reply, v2=False)
        assert reply.status == 422 and reply.json()["error"]["code"] == "invalid_prices"
        assert "spans too wide a range" in reply.json()["error"]["message"]
    reply = api_daemon.post(INFER, {"inputs": [v2_tensor(1, [1e30] * (LOOK_BACK - 1) + [1e-30])]})
    assert_error_reply(reply, v2=True)
    assert reply.status == 400 and "spans too wide a range" in reply.json()["error"]


@pytest.mark.parametrize(("literal", "says"), [
    (str(10**400), "must be finite"),  # a JSON integer beyond float range was a 500 (OverflowError)
    ("1e39", "FP32 cannot hold"),  # beyond FP32: the answer was inf, sent as null
    ("1e-46", "FP32 cannot hold"),  # below FP32's smallest: zero
])
def test_a_v2_json_element_beyond_fp32_is_a_400_naming_it(api_daemon, literal, says):
    body = to_json({"inputs": [v2_tensor(1, [Raw(literal)] + [30.0] * (LOOK_BACK - 1))]}).encode()
    reply = post(api_daemon, INFER, body)
    assert_error_reply(reply, v2=True)
    assert reply.status == 400 and "prices[0]" in reply.json()["error"] and says in reply.json()["error"]


@pytest.mark.parametrize("price", [math.nan, math.inf, 0.0, -1.0, 1e39])
def test_a_prediction_that_is_no_positive_finite_price_is_refused(price):
    with pytest.raises(WindowError, match="beyond what the model can answer"):
        check_predictions(np.array([30.0, price]), FP32_MAX)
    check_predictions(np.array([30.0, FP32_MAX]), FP32_MAX)


@pytest.mark.parametrize(("headers", "status"), [({}, 413), ({"Content-Encoding": "gzip"}, 400)])
def test_a_body_on_a_route_that_takes_none_is_refused_as_its_document_says(api_daemon, headers, status):
    """Every body is read (within body_timeout), a GET's too: one over the limit or unreadable is
    refused with a status the operation documents, in its route family's error shape."""
    document = api_daemon.get("/openapi.json").json()
    for path, v2 in (("/health", False), (f"/v2/models/{MODEL}", True)):
        reply = api_daemon.request("GET", path, b"x" * 20_000, headers)  # over api_daemon's 16 KiB limit
        assert_error_reply(reply, v2)
        assert reply.status == status
        template = path.replace(MODEL, "{name}")
        assert str(status) in document["paths"][template]["get"]["responses"]
