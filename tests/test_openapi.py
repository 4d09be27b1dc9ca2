"""GET /openapi.json: a valid OpenAPI 3.1 document of every route, built from the
handlers' own descriptions, whose schemas the real daemon's answers satisfy."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from lstm_predictor.daemon.openapi import UndescribedRoute, build_document, operation

MODEL = "TINY3.SA"
WINDOW = [20.0 + 0.5 * i for i in range(60)]
PATH_VALUES = {"name": MODEL, "version": "1", "filename": "swagger-ui.css"}
V2_BODY = {"inputs": [{"name": "prices", "shape": [1, 60, 1], "datatype": "FP32", "data": WINDOW}]}
# A valid body for each POST operation; a new POST route must add one here.
BODIES: dict[str, Any] = {
    "/predict": {"symbol": MODEL, "prices": WINDOW, "last_date": "2024-02-09"},
    "/predict/live": {"symbol": MODEL},
    "/predict/forecast": {"symbol": MODEL, "days": 3},
    "/v2/models/{name}/infer": V2_BODY,
    "/v2/models/{name}/versions/{version}/infer": V2_BODY,
}


@pytest.fixture(scope="module")
def document(api_daemon) -> dict[str, Any]:
    reply = api_daemon.get("/openapi.json")
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"].startswith("application/json")
    return reply.json()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()]


def fill(path: str, **values: str) -> str:
    for name, value in {**PATH_VALUES, **values}.items():
        path = path.replace("{" + name + "}", value)
    return path


def assert_answer_matches(document: dict[str, Any], op: dict[str, Any], reply) -> None:
    """The reply's status is documented, its media type is the documented one, and a JSON body
    validates against the documented schema."""
    assert str(reply.status) in op["responses"], (op["operationId"], reply.status, reply.body[:300])
    content = op["responses"][str(reply.status)]["content"]
    media_type = reply.headers["Content-Type"].split(";")[0].strip()
    assert media_type in content or "*/*" in content, (op["operationId"], media_type, list(content))
    if media_type == "application/json":
        schema = {**content[media_type]["schema"], "components": document["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(json.loads(reply.body)), key=str)
        assert not errors, (op["operationId"], reply.status, [e.message for e in errors[:3]])


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(document).validate()


def test_the_daemon_and_the_v2_routes_are_all_there(document):
    paths = set(document["paths"])
    assert {"/", "/health", "/metrics", "/predict", "/predict/live", "/predict/forecast",
            "/openapi.json", "/docs", "/docs/static/{filename}", "/v2", "/v2/health/live", "/v2/health/ready",
            "/v2/models/{name}", "/v2/models/{name}/ready", "/v2/models/{name}/infer",
            "/v2/models/{name}/versions/{version}", "/v2/models/{name}/versions/{version}/ready",
            "/v2/models/{name}/versions/{version}/infer"} <= paths


def test_every_link_of_the_index_is_documented(document, api_daemon):
    links = api_daemon.get("/").json()["links"]
    assert set(links.values()) <= set(document["paths"])


def test_every_operation_has_a_summary_a_unique_id_and_its_path_parameters(document):
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))
    for _, path, op in operations(document):
        assert op["summary"], op["operationId"]
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == {name for name in PATH_VALUES if "{" + name + "}" in path}, path


def test_each_operation_answers_as_documented(document, api_daemon):
    for method, path, op in operations(document):
        if method == "get":
            reply = api_daemon.get(fill(path))
        else:
            assert path in BODIES, f"add a valid example body for {method.upper()} {path}"
            reply = api_daemon.post(fill(path), BODIES[path])
        assert reply.status == 200, (method, path, reply.body[:300])
        assert_answer_matches(document, op, reply)


def test_every_request_example_in_the_document_is_accepted(document, api_daemon):
    examples = [(path, op, op["requestBody"]["content"]["application/json"]["example"])
                for method, path, op in operations(document)
                if "example" in op.get("requestBody", {}).get("content", {}).get("application/json", {})]
    assert examples
    for path, op, example in examples:
        reply = api_daemon.post(fill(path), example)
        assert reply.status == 200, (path, reply.body[:300])
        assert_answer_matches(document, op, reply)


def test_each_documented_error_answers_with_the_documented_error_object(document, api_daemon):
    checked = 0
    for method, path, op in operations(document):
        if "404" in op["responses"] and "{name}" in path:
            assert_answer_matches(document, op, api_daemon.request(method.upper(), fill(path, name="NOPE3.SA"),
                                                                   json.dumps(BODIES.get(path, {})).encode()))
            checked += 1
        if "400" in op["responses"] and method == "post":
            reply = api_daemon.request("POST", fill(path), b"{not json")
            assert reply.status == 400
            assert_answer_matches(document, op, reply)
            checked += 1
    assert checked >= 10


def test_every_operation_documents_the_refusals_of_reading_a_body(document):
    """The daemon reads every request's body, a GET's too, before the route sees it."""
    for _, _, op in operations(document):
        assert {"400", "408", "413"} <= set(op["responses"]), op["operationId"]


def test_a_503_error_documents_its_retry_after_header(document):
    for path in ("/predict", "/v2/models/{name}/infer"):
        headers = document["paths"][path]["post"]["responses"]["503"]["headers"]
        assert headers["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}


def test_the_v2_and_daemon_error_objects_differ_as_the_protocol_requires(document):
    predict_400 = document["paths"]["/predict"]["post"]["responses"]["400"]["content"]["application/json"]
    infer_400 = document["paths"]["/v2/models/{name}/infer"]["post"]["responses"]["400"]["content"]["application/json"]
    assert predict_400["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert infer_400["schema"] == {"$ref": "#/components/schemas/V2Error"}
    assert document["components"]["schemas"]["V2Error"]["properties"] == {"error": {"type": "string"}}


def test_binary_tensors_are_documented_for_v2_inference(document):
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert set(infer["responses"]["200"]["content"]) == {"application/json", "application/octet-stream"}
    header = {"name": "Inference-Header-Content-Length", "in": "header", "required": False}
    assert any(header.items() <= p.items() for p in infer["parameters"])
    assert "Inference-Header-Content-Length" in infer["responses"]["200"]["headers"]


# -- the builder itself, on a small application ----------------------------------------------------


class Echo(msgspec.Struct):
    text: str


class Lookup(msgspec.Struct):
    limit: int | None = None


@operation(request=Echo, response=Echo, query=Lookup, errors=(404,))
async def described(request: web.Request) -> web.Response:
    """Echo a text.

    Longer words about it."""
    raise AssertionError("never called")


async def undescribed(request: web.Request) -> web.Response:
    raise AssertionError("never called")


def test_a_route_without_a_description_is_refused_by_name():
    app = web.Application()
    app.router.add_post("/echo/{word}", described)
    app.router.add_get("/plain", undescribed)
    with pytest.raises(UndescribedRoute, match="GET /plain"):
        build_document(app)


def test_the_builder_takes_everything_from_the_handler():
    app = web.Application()
    app.router.add_get("/echo/{word}", described)  # also registers HEAD, which is not listed
    document = build_document(app)
    OpenAPIV31SpecValidator(document).validate()
    assert list(document["paths"]["/echo/{word}"]) == ["get"]
    op = document["paths"]["/echo/{word}"]["get"]
    assert (op["summary"], op["description"]) == ("Echo a text.", "Longer words about it.")
    assert op["parameters"] == [
        {"name": "word", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
    ]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Echo"}
    assert op["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"}
    assert "Echo" in document["components"]["schemas"]
