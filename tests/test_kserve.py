"""The KServe Open Inference Protocol (v2), spoken by the stock ``tritonclient.http`` client
to the real daemon.

The daemon serves the tiny TINY3.SA bundle (version "1", rule ``window_last``), whose
graph answers the mean of the normalised window: for a window of raw closes ``w`` the
predicted close is ``mean(w)`` and the ratio is ``mean(w) / w[-1]``, computed here by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

import lstm_predictor

MODEL = "TINY3.SA"
LOOK_BACK = 60


@pytest.fixture(scope="module")
def client(api_daemon) -> triton.InferenceServerClient:
    with triton.InferenceServerClient(f"127.0.0.1:{api_daemon.port}") as client:
        yield client


def windows(batch: int, seed: int = 0) -> np.ndarray:
    """``batch`` windows of positive raw closes around R$ 30, shape (batch, look_back, 1), FP32."""
    rng = np.random.default_rng(seed)
    closes = 30 + np.cumsum(rng.normal(0, 0.3, size=(batch, LOOK_BACK)), axis=1)
    return closes.astype(np.float32)[:, :, None]


def prices_input(x: np.ndarray, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("prices", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def expected(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = x[:, :, 0].astype(np.float64)
    price = w.mean(axis=1)
    return price[:, None], (price / w[:, -1])[:, None]


def v2_predictions(api_daemon) -> float:
    text = api_daemon.get("/metrics").body.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "lstm_predictor_predictions_total" and sample.labels == {"kind": "v2", "model": MODEL}:
                return sample.value
    raise AssertionError("no v2 prediction counter for the model in /metrics")


# -- health and metadata ---------------------------------------------------------------------------


def test_the_server_is_live_ready_and_names_its_extensions(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata == {"name": "lstm-predictor", "version": lstm_predictor.__version__,
                        "extensions": ["binary_tensor_data"]}


def test_model_metadata_describes_raw_price_windows_in_and_prices_out(client):
    metadata = client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnx"
    assert metadata["inputs"] == [{"name": "prices", "datatype": "FP32", "shape": [-1, LOOK_BACK, 1]}]
    assert metadata["outputs"] == [
        {"name": "predicted_price", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "ratio", "datatype": "FP32", "shape": [-1, 1]},
    ]
    assert metadata["parameters"] == {"input": "raw_prices", "symbol": MODEL, "look_back": LOOK_BACK,
                                      "normalisation": "window_last", "variant": "fp32"}
    assert client.get_model_metadata(MODEL, model_version="1") == metadata


def test_model_readiness_by_name_and_version(client):
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, model_version="1")
    assert not client.is_model_ready(MODEL, model_version="2")
    assert not client.is_model_ready("NOPE3.SA")


# -- inference -------------------------------------------------------------------------------------


def test_infer_with_the_clients_defaults_binary_tensors_both_ways(client):
    x = windows(3)
    result = client.infer(MODEL, [prices_input(x)], request_id="req-42")
    response = result.get_response()
    assert response["model_name"] == MODEL
    assert response["model_version"] == "1"
    assert response["id"] == "req-42"
    assert [o["name"] for o in response["outputs"]] == ["predicted_price", "ratio"]
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    price, ratio = expected(x)
    assert result.as_numpy("predicted_price").dtype == np.float32
    assert result.as_numpy("predicted_price").shape == (3, 1)
    np.testing.assert_allclose(result.as_numpy("predicted_price"), price, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("ratio"), ratio, rtol=1e-6)


def test_infer_with_json_tensors_and_one_requested_output(client):
    x = windows(2, seed=1)
    result = client.infer(MODEL, [prices_input(x, binary=False)],
                          outputs=[triton.InferRequestedOutput("ratio", binary_data=False)])
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["ratio"]
    assert "data" in response["outputs"][0]
    assert "id" not in response
    assert result.as_numpy("predicted_price") is None
    np.testing.assert_allclose(result.as_numpy("ratio"), expected(x)[1], rtol=1e-6)


def test_infer_mixes_json_and_binary_outputs_as_asked(client):
    x = windows(1, seed=2)
    outputs = [triton.InferRequestedOutput("predicted_price", binary_data=True),
               triton.InferRequestedOutput("ratio", binary_data=False)]
    result = client.infer(MODEL, [prices_input(x)], outputs=outputs)
    by_name = {o["name"]: o for o in result.get_response()["outputs"]}
    assert by_name["predicted_price"]["parameters"] == {"binary_data_size": 4}
    assert "data" in by_name["ratio"]
    price, ratio = expected(x)
    np.testing.assert_allclose(result.as_numpy("predicted_price"), price, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("ratio"), ratio, rtol=1e-6)


def test_infer_by_version_and_with_a_compressed_request(client):
    x = windows(4, seed=3)
    result = client.infer(MODEL, [prices_input(x)], model_version="1", request_compression_algorithm="gzip")
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_allclose(result.as_numpy("predicted_price"), expected(x)[0], rtol=1e-6)


def test_v2_answers_the_same_price_as_the_daemons_own_predict(client, api_daemon):
    x = windows(1, seed=4)
    own = api_daemon.post("/predict", {"symbol": MODEL, "prices": x[0, :, 0].astype(float).tolist()})
    assert own.status == 200
    v2 = client.infer(MODEL, [prices_input(x)]).as_numpy("predicted_price")[0, 0]
    # /predict rounds to 4 decimals; v2 answers FP32 (about 2e-6 apart at R$ 30).
    assert abs(float(v2) - own.json()["predicted_price"]) <= 5e-5 + 1e-5


def test_v2_predictions_are_counted_per_window_in_metrics(client, api_daemon):
    before = v2_predictions(api_daemon)
    client.infer(MODEL, [prices_input(windows(5, seed=5))])
    assert v2_predictions(api_daemon) == before + 5


# -- errors, as the client reports them ------------------------------------------------------------


def failure(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_a_non_finite_price_is_a_400_naming_the_element(client):
    x = windows(2, seed=6)
    x[1, 7, 0] = np.nan
    error = failure(lambda: client.infer(MODEL, [prices_input(x)]))
    assert error.status() == "400"
    assert error.message() == "input 'prices', window 1: prices[7] is nan: every price must be finite"


def test_a_non_positive_price_is_a_400(client):
    x = windows(1, seed=7)
    x[0, 0, 0] = 0.0
    error = failure(lambda: client.infer(MODEL, [prices_input(x, binary=False)]))
    assert error.status() == "400"
    assert "prices[0] is 0" in error.message() and "greater than 0" in error.message()


def test_a_wrong_datatype_is_a_400(client):
    tensor = triton.InferInput("prices", [1, LOOK_BACK, 1], "FP64")
    tensor.set_data_from_numpy(windows(1).astype(np.float64))
    error = failure(lambda: client.infer(MODEL, [tensor]))
    assert error.status() == "400"
    assert "datatype 'FP64'" in error.message() and "'FP32'" in error.message()


def test_a_window_of_the_wrong_length_is_a_400_that_says_the_shape(client):
    x = windows(1)[:, :30, :]
    error = failure(lambda: client.infer(MODEL, [prices_input(x)]))
    assert error.status() == "400"
    assert f"[batch, {LOOK_BACK}, 1]" in error.message()


def test_an_unknown_model_or_version_is_a_404(client):
    error = failure(lambda: client.infer("NOPE3.SA", [prices_input(windows(1))]))
    assert error.status() == "404"
    assert "NOPE3.SA" in error.message() and MODEL in error.message()
    error = failure(lambda: client.get_model_metadata(MODEL, model_version="9"))
    assert error.status() == "404"
    assert "'9'" in error.message() and "'1'" in error.message()
