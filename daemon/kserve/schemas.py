"""The Open Inference Protocol (v2) REST payloads, as msgspec types.

Field names, optionality and nesting follow the protocol's JSON objects
(`$metadata_server_response`, `$inference_request`, ...) so that stock
clients such as `tritonclient.http` work unchanged. The same types decode
requests, encode responses and generate the OpenAPI document, so the three
cannot disagree.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

# Protocol parameters are flat key/value pairs whose values are scalars.
Parameter = bool | int | float | str
Parameters = dict[str, Parameter]

# Tensor elements, row-major, as a flat or nested JSON array. Nested arrays are
# accepted as the protocol allows; only the total element count is checked.
TensorData = Annotated[
    Any,
    msgspec.Meta(
        extra_json_schema={
            "type": ["array", "null"],
            "description": (
                "Tensor elements in row-major order, as a flat or nested array of numbers; "
                "absent when the tensor travels as binary data."
            ),
            "items": {},
        }
    ),
]

Dimension = Annotated[int, msgspec.Meta(ge=0)]
MetadataDimension = Annotated[int, msgspec.Meta(ge=-1, description="-1 marks a variable-size dimension")]


class ServerMetadata(msgspec.Struct):
    """`$metadata_server_response`."""

    name: str
    version: str
    extensions: list[str]


class ServerLive(msgspec.Struct):
    """`$live_server_response`."""

    live: bool


class ServerReady(msgspec.Struct):
    """`$ready_server_response`."""

    ready: bool


class ModelReady(msgspec.Struct):
    """`$ready_model_response`."""

    name: str
    ready: bool


class TensorMetadata(msgspec.Struct):
    """`$metadata_tensor`."""

    name: str
    datatype: str
    shape: list[MetadataDimension]


class ModelMetadata(msgspec.Struct):
    """`$metadata_model_response`, with `parameters` saying what the tensors mean."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: Parameters


class RequestInput(msgspec.Struct, omit_defaults=True):
    """`$request_input`: the tensor travels as JSON `data` or, with the binary
    tensor data extension, after the JSON header (`parameters.binary_data_size`)."""

    name: str
    shape: list[Dimension]
    datatype: str
    parameters: Parameters = {}
    data: TensorData = None


class RequestOutput(msgspec.Struct, omit_defaults=True):
    """`$request_output`; `parameters.binary_data` asks for the tensor in binary."""

    name: str
    parameters: Parameters = {}


class InferenceRequest(msgspec.Struct, omit_defaults=True, kw_only=True):
    """`$inference_request`; `parameters.binary_data_output` asks for every output in binary."""

    id: str | None = None
    parameters: Parameters = {}
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(msgspec.Struct, omit_defaults=True):
    """`$response_output`: JSON `data`, or `parameters.binary_data_size` bytes after the header."""

    name: str
    shape: list[Dimension]
    datatype: str
    parameters: Parameters | None = None
    data: list[float] | None = None


class InferenceResponse(msgspec.Struct, omit_defaults=True, kw_only=True):
    """`$inference_response`; `id` is present when the request carried one."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


class V2Error(msgspec.Struct):
    """The protocol's error object for every v2 failure: `{"error": "<message>"}`."""

    error: str
