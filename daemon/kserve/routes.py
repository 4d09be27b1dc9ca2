"""The Open Inference Protocol (KServe v2) REST endpoints.

Health, server and model metadata, and inference, each also under
``/v2/models/{name}/versions/{version}``. Errors are raised as
:class:`~lstm_predictor.daemon.errors.ApiError`; the daemon's error middleware
renders them in the protocol's ``{"error": "<message>"}`` shape for ``/v2`` paths.
"""

from __future__ import annotations

from aiohttp import web

from lstm_predictor import __version__

from ..errors import NotFound
from ..jsonio import json_response
from ..openapi import operation
from ..state import STATE, ServedModel
from .schemas import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
    TensorMetadata,
)
from .tensors import (
    DATATYPE,
    HEADER_LENGTH,
    INPUT_NAME,
    OUTPUT_NAMES,
    PRICE_OUTPUT,
    RATIO_OUTPUT,
    check_outputs,
    decode_request,
    encode_response,
    read_windows,
    requested_outputs,
)

SERVER_NAME = "lstm-predictor"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "onnx"
# What the v2 input tensor carries: the closes themselves, normalised by the
# daemon with the bundle's rule (clients need not know the rule).
INPUT_SEMANTICS = "raw_prices"
TAGS = ("Open Inference Protocol (v2)",)
# For "Try it out": one window of 60 PETR4.SA closes (25 Apr to 19 Jul 2024) for a look_back-60 model.
EXAMPLE_REQUEST = {
    "id": "example-1",
    "inputs": [{"name": INPUT_NAME, "shape": [1, 60, 1], "datatype": DATATYPE, "data": [
        42.22, 41.65, 42.15, 42.02, 42.18, 39.89, 40.16, 40.65, 41.27, 41.67, 41.58, 41.62, 40.87, 38.4, 37.28,
        36.69, 36.75, 36.68, 37.18, 36.81, 36.61, 37.01, 37.8, 37.75, 38.79, 38.58, 38.15, 38.2, 38.38, 36.94,
        37.5, 37.66, 35.82, 35.46, 34.68, 34.81, 35.9, 35.93, 36.5, 36.69, 37.06, 37.03, 37.09, 37.71, 38.05,
        38.63, 38.51, 37.84, 37.32, 37.52, 38.44, 38.43, 38.07, 38.33, 38.15, 38.5, 38.4, 38.6, 38.53, 38.69,
    ]}],
}

routes = web.RouteTableDef()


def _model(request: web.Request) -> ServedModel:
    """The model named in the path; a version, when given, must be the one served."""
    served = request.app[STATE].registry.get(request.match_info["name"])
    version = request.match_info.get("version")
    if version is not None and version != served.bundle.version:
        raise NotFound(
            f"model {served.name!r} has no version {version!r}; the served version is {served.bundle.version!r}",
            code="unknown_model_version",
        )
    return served


@routes.get("/v2")
@operation(response=ServerMetadata, tags=TAGS)
async def server_metadata(request: web.Request) -> web.Response:
    """Server metadata: name, version and protocol extensions."""
    return json_response(ServerMetadata(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS))


@routes.get("/v2/health/live")
@operation(response=ServerLive, tags=TAGS)
async def server_live(request: web.Request) -> web.Response:
    """Liveness: the server answers metadata and inference requests."""
    return json_response(ServerLive(live=True))


@routes.get("/v2/health/ready")
@operation(response=ServerReady, alternatives={503: ServerReady}, tags=TAGS)
async def server_ready(request: web.Request) -> web.Response:
    """Readiness: every model is loaded and warmed up (503 until then)."""
    ready = request.app[STATE].ready
    return json_response(ServerReady(ready=ready), status=200 if ready else 503)


@routes.get("/v2/models/{name}/versions/{version}")
@routes.get("/v2/models/{name}")
@operation(response=ModelMetadata, errors=(404,), tags=TAGS)
async def model_metadata(request: web.Request) -> web.Response:
    """Model metadata: tensors, versions, and (in ``parameters``) what the tensors mean.

    The input tensor ``prices`` carries raw closes, oldest first, shape
    ``[batch, look_back, 1]``: the daemon normalises each window with the
    bundle's rule. ``predicted_price`` is the next close; ``ratio`` is the
    model's own output, the next close divided by the window's reference close.
    """
    served = _model(request)
    bundle = served.bundle
    look_back = bundle.look_back
    return json_response(
        ModelMetadata(
            name=served.name,
            versions=[bundle.version],
            platform=PLATFORM,
            inputs=[TensorMetadata(name=INPUT_NAME, datatype=DATATYPE, shape=[-1, look_back, 1])],
            outputs=[TensorMetadata(name=name, datatype=DATATYPE, shape=[-1, 1]) for name in OUTPUT_NAMES],
            parameters={
                "input": INPUT_SEMANTICS,
                "symbol": bundle.symbol,
                "look_back": look_back,
                "normalisation": bundle.normalisation,
                "variant": served.variant,
            },
        )
    )


@routes.get("/v2/models/{name}/versions/{version}/ready")
@routes.get("/v2/models/{name}/ready")
@operation(response=ModelReady, alternatives={503: ModelReady}, errors=(404,), tags=TAGS)
async def model_ready(request: web.Request) -> web.Response:
    """Model readiness (503 while the daemon is still starting)."""
    served = _model(request)
    ready = request.app[STATE].ready
    return json_response(ModelReady(name=served.name, ready=ready), status=200 if ready else 503)


@routes.post("/v2/models/{name}/versions/{version}/infer")
@routes.post("/v2/models/{name}/infer")
@operation(
    request=InferenceRequest,
    request_example=EXAMPLE_REQUEST,
    response=InferenceResponse,
    binary_tensors=True,
    errors=(400, 404, 413, 503),
    tags=TAGS,
)
async def infer(request: web.Request) -> web.Response:
    """Inference on a batch of raw price windows, through the model's dynamic batcher.

    Input ``prices``: FP32 ``[batch, look_back, 1]``, raw closes oldest first,
    as JSON ``data`` (flat or nested) or binary. Outputs ``predicted_price``
    and ``ratio``: FP32 ``[batch, 1]``; all of them unless ``outputs`` names
    some, as JSON unless ``binary_data`` / ``binary_data_output`` asks for binary.
    """
    served = _model(request)
    state = request.app[STATE]
    inference, binary = decode_request(await request.read(), request.headers.get(HEADER_LENGTH))
    windows = read_windows(inference, binary, served.bundle.look_back, served.bundle.normalisation)
    selected = requested_outputs(inference)
    prediction = await served.predict(windows)
    check_outputs(prediction.prices)
    state.metrics.prediction("v2", served.name, len(windows))
    response = InferenceResponse(
        model_name=served.name, model_version=served.bundle.version, id=inference.id, outputs=[]
    )
    payload, headers = encode_response(
        response, {PRICE_OUTPUT: prediction.prices, RATIO_OUTPUT: prediction.ratios}, selected
    )
    return web.Response(body=payload, headers=headers)
