"""The v2 protocol on the wire, with a plain HTTP client: the JSON and binary body
layouts, and the protocol's error object ``{"error": "<message>"}`` for every refusal.

The daemon serves the tiny TINY3.SA bundle (version "1"): its predicted close is the
mean of the window.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

MODEL = "TINY3.SA"
LOOK_BACK = 60
INFER = f"/v2/models/{MODEL}/infer"
WINDOW = [20.0 + 0.5 * i for i in range(LOOK_BACK)]  # mean 34.75
HEADER = "Inference-Header-Content-Length"


def request(**overrides) -> dict:
    tensor = {"name": "prices", "shape": [1, LOOK_BACK, 1], "datatype": "FP32", "data": WINDOW}
    body = {"inputs": [{**tensor, **overrides.pop("tensor", {})}], **overrides}
    return body


def post_binary(daemon, header: dict, payload: bytes, header_length: int | str | None = None):
    head = json.dumps(header).encode()
    length = len(head) if header_length is None else header_length
    return daemon.request("POST", INFER, head + payload,
                          {"Content-Type": "application/octet-stream", HEADER: str(length)})


def v2_error(reply, status: int) -> str:
    """The reply must be exactly the protocol's error object, with ``status``."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    return body["error"]


# -- success: body layouts -------------------------------------------------------------------------


def test_json_in_json_out_with_the_request_id(api_daemon):
    reply = api_daemon.post(INFER, request(id="abc"))
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert HEADER not in reply.headers
    body = reply.json()
    assert {k: body[k] for k in ("model_name", "model_version", "id")} == {
        "model_name": MODEL, "model_version": "1", "id": "abc"}
    price, ratio = body["outputs"]
    assert {k: price[k] for k in ("name", "shape", "datatype")} == {"name": "predicted_price", "shape": [1, 1], "datatype": "FP32"}
    assert {k: ratio[k] for k in ("name", "shape", "datatype")} == {"name": "ratio", "shape": [1, 1], "datatype": "FP32"}
    # The graph computes in float32.
    assert price["data"] == [pytest.approx(34.75, rel=1e-6)]
    assert ratio["data"] == [pytest.approx(34.75 / 49.5, rel=1e-6)]


def test_nested_and_flat_data_mean_the_same_tensor(api_daemon):
    nested = [[[p] for p in WINDOW], [[p + 1] for p in WINDOW]]
    flat = WINDOW + [p + 1 for p in WINDOW]
    answers = [
        api_daemon.post(INFER, request(tensor={"shape": [2, LOOK_BACK, 1], "data": data})).json()["outputs"]
        for data in (nested, flat)
    ]
    assert answers[0] == answers[1]
    assert answers[0][0]["data"] == pytest.approx([34.75, 35.75], rel=1e-6)


def test_binary_in_binary_out_follows_the_extension_layout(api_daemon):
    x = np.array([WINDOW, [p * 2 for p in WINDOW]], dtype="<f4")
    header = {"inputs": [{"name": "prices", "shape": [2, LOOK_BACK, 1], "datatype": "FP32",
                          "parameters": {"binary_data_size": x.nbytes}}],
              "outputs": [{"name": "predicted_price", "parameters": {"binary_data": True}}]}
    reply = post_binary(api_daemon, header, x.tobytes())
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"] == "application/octet-stream"
    split = int(reply.headers[HEADER])
    head = json.loads(reply.body[:split])
    assert head["outputs"] == [{"name": "predicted_price", "shape": [2, 1], "datatype": "FP32",
                                "parameters": {"binary_data_size": 8}}]
    assert struct.unpack("<2f", reply.body[split:]) == pytest.approx((34.75, 69.5), rel=1e-6)


def test_binary_data_output_asks_for_every_output_in_binary_unless_one_says_otherwise(api_daemon):
    body = request(parameters={"binary_data_output": True},
                   outputs=[{"name": "ratio"}, {"name": "predicted_price", "parameters": {"binary_data": False}}])
    reply = api_daemon.post(INFER, body)
    assert reply.status == 200
    split = int(reply.headers[HEADER])
    ratio, price = json.loads(reply.body[:split])["outputs"]
    assert ratio["parameters"] == {"binary_data_size": 4} and "data" not in ratio
    assert price["data"] == [pytest.approx(34.75, rel=1e-6)]
    assert struct.unpack("<f", reply.body[split:]) == pytest.approx((34.75 / 49.5,), rel=1e-6)


# -- refusals: 400 with the protocol's error object ------------------------------------------------

BAD_REQUESTS = {
    "shape without the trailing 1": (request(tensor={"shape": [1, LOOK_BACK]}), "[batch, 60, 1]"),
    "window too short": (request(tensor={"shape": [1, 59, 1], "data": WINDOW[:59]}), "[batch, 60, 1]"),
    "empty batch": (request(tensor={"shape": [0, LOOK_BACK, 1], "data": []}), "batch >= 1"),
    "negative dimension": (request(tensor={"shape": [-1, LOOK_BACK, 1]}), "$.inputs[0].shape[0]"),
    "datatype FP64": (request(tensor={"datatype": "FP64"}), "datatype 'FP64'"),
    "datatype INT32": (request(tensor={"datatype": "INT32"}), "expected 'FP32'"),
    "wrong input name": (request(tensor={"name": "input_1"}), "'input_1'"),
    "two inputs": ({"inputs": request()["inputs"] * 2}, "exactly one input"),
    "no inputs": ({"inputs": []}, "exactly one input"),
    "missing inputs": ({"id": "x"}, "inputs"),
    "fewer elements than the shape": (request(tensor={"data": WINDOW[:-1]}), "holds 59 elements"),
    "a string price": (request(tensor={"data": WINDOW[:3] + ["31.5"] + WINDOW[4:]}), "prices[3] is '31.5'"),
    "a boolean price": (request(tensor={"data": [True] + WINDOW[1:]}), "prices[0] is True"),
    "a zero price": (request(tensor={"data": WINDOW[:5] + [0] + WINDOW[6:]}), "prices[5] is 0"),
    "a negative price": (request(tensor={"data": WINDOW[:-1] + [-1.5]}), "prices[59] is -1.5"),
    "data not an array": (request(tensor={"data": 30.0}), "must be an array"),
    "neither data nor binary": (request(tensor={"data": None}), "neither 'data' nor"),
    "unknown output": (request(outputs=[{"name": "volatility"}]), "unknown output 'volatility'"),
    "an output twice": (request(outputs=[{"name": "ratio"}, {"name": "ratio"}]), "requested twice"),
    "binary_data_output not a boolean": (request(parameters={"binary_data_output": "yes"}), "true or false"),
    "shared memory input": (request(tensor={"parameters": {"shared_memory_region": "r"}}), "shared-memory"),
    "classification output": (request(outputs=[{"name": "ratio", "parameters": {"classification": 2}}]),
                              "classification"),
    "parameters of an object value": (request(parameters={"priority": {"level": 1}}), "$.parameters"),
}


@pytest.mark.parametrize("body, says", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_an_unusable_json_request_is_a_400(api_daemon, body, says):
    assert says in v2_error(api_daemon.post(INFER, body), 400)


def test_a_body_that_is_not_json_is_a_400(api_daemon):
    assert "not valid JSON" in v2_error(api_daemon.request("POST", INFER, b"{prices: 1"), 400)


def test_data_nested_deeper_than_the_decoder_goes_is_a_400(api_daemon):
    deep = b"[" * 5000 + b"]" * 5000
    body = b'{"inputs": [{"name": "prices", "shape": [1, 60, 1], "datatype": "FP32", "data": ' + deep + b"}]}"
    assert "nested too deeply" in v2_error(api_daemon.request("POST", INFER, body), 400)


BINARY_HEADER = {"inputs": [{"name": "prices", "shape": [1, LOOK_BACK, 1], "datatype": "FP32",
                             "parameters": {"binary_data_size": 4 * LOOK_BACK}}]}
GOOD_BYTES = np.array(WINDOW, dtype="<f4").tobytes()


@pytest.mark.parametrize("value, says", [(np.nan, "is nan"), (np.inf, "is inf"), (-np.inf, "is -inf")])
def test_a_non_finite_binary_price_is_a_400(api_daemon, value, says):
    x = np.array(WINDOW, dtype="<f4")
    x[10] = value
    assert f"prices[10] {says}: every price must be finite" in v2_error(post_binary(api_daemon, BINARY_HEADER, x.tobytes()), 400)


def test_binary_sizes_that_disagree_are_a_400(api_daemon):
    short = post_binary(api_daemon, BINARY_HEADER, GOOD_BYTES[:-4])
    assert "236 bytes of binary tensor data" in v2_error(short, 400)
    wrong_size = {"inputs": [{**BINARY_HEADER["inputs"][0], "parameters": {"binary_data_size": 8}}]}
    assert "needs 240 bytes" in v2_error(post_binary(api_daemon, wrong_size, GOOD_BYTES), 400)
    both = {"inputs": [{**BINARY_HEADER["inputs"][0], "data": WINDOW}]}
    assert "both 'data' and" in v2_error(post_binary(api_daemon, both, GOOD_BYTES), 400)


def test_a_bad_header_length_is_a_400(api_daemon):
    assert "must be an integer" in v2_error(post_binary(api_daemon, BINARY_HEADER, GOOD_BYTES, "ten"), 400)
    too_long = post_binary(api_daemon, BINARY_HEADER, GOOD_BYTES, 10**6)
    assert "the request body holds" in v2_error(too_long, 400)


# -- other statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v2/models/NOPE3.SA", "/v2/models/NOPE3.SA/ready",
                                  "/v2/models/NOPE3.SA/versions/1"])
def test_an_unknown_model_is_a_404_listing_the_served_ones(api_daemon, path):
    assert v2_error(api_daemon.get(path), 404) == f"no model serves 'NOPE3.SA'; served: {MODEL}"


def test_inference_on_an_unknown_model_or_version_is_a_404(api_daemon):
    assert "NOPE3.SA" in v2_error(api_daemon.post("/v2/models/NOPE3.SA/infer", request()), 404)
    reply = api_daemon.post(f"/v2/models/{MODEL}/versions/2/infer", request())
    assert v2_error(reply, 404) == f"model '{MODEL}' has no version '2'; the served version is '1'"


def test_an_unknown_v2_path_and_a_wrong_method_answer_in_the_v2_shape(api_daemon):
    v2_error(api_daemon.get(f"/v2/models/{MODEL}/config"), 404)
    assert "POST" in v2_error(api_daemon.get(INFER), 405)


def test_a_body_over_the_limit_is_a_413(api_daemon):
    big = request(tensor={"shape": [300, LOOK_BACK, 1], "data": WINDOW * 300})
    assert "16384-byte limit" in v2_error(api_daemon.post(INFER, big), 413)


def test_readiness_bodies(api_daemon):
    assert api_daemon.get("/v2/health/live").json() == {"live": True}
    assert api_daemon.get("/v2/health/ready").json() == {"ready": True}
    assert api_daemon.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
    assert api_daemon.get(f"/v2/models/{MODEL}/versions/1/ready").json() == {"name": MODEL, "ready": True}
