"""Access control: loopback by default, remote only when asked for or protected by a
bearer token, CORS only for the origins named, and no path a client names is ever
read from disk."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import RunningDaemon, free_port, launch, run_to_exit, write_prices
from lstm_predictor.daemon.config import ConfigError, load_config
from openapi_spec_validator import OpenAPIV31SpecValidator
from tiny_bundle import make_tiny_bundle

TOKEN = "9f2c4e7a1b3d5f60a8c9e1d2b4f6a7c8"
ORIGIN = "https://dashboard.example.com"
WINDOW = [round(20 + 0.1 * i, 2) for i in range(60)]
OPEN_ROUTES = {"/health", "/v2/health/live", "/metrics"}
PATH_VALUES = {"name": "TINY3.SA", "version": "1", "filename": "swagger-ui.css"}
V2_BODY = {"inputs": [{"name": "prices", "shape": [1, 60, 1], "datatype": "FP32", "data": WINDOW}]}


def write_token(path: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path.write_text(text, encoding="ascii")
    path.chmod(mode)
    return path


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_message(reply) -> str:
    """The message of an error in either route family's shape (v2: {"error": "..."})."""
    assert reply.headers["Content-Type"].startswith("application/json"), reply.body
    error = reply.json()["error"]
    if isinstance(error, str):
        return error
    assert error["status"] == reply.status
    return error["message"]


def fill(template: str) -> str:
    for name, value in PATH_VALUES.items():
        template = template.replace("{" + name + "}", value)
    return template


def documented_operations(daemon: RunningDaemon, headers: dict[str, str] | None = None) -> list[tuple[str, str]]:
    reply = daemon.request("GET", "/openapi.json", headers=headers)
    assert reply.status == 200, reply.body
    return [(method.upper(), path) for path, item in reply.json()["paths"].items() for method in item]


def call(daemon: RunningDaemon, method: str, path: str, headers: dict[str, str] | None = None):
    body = json.dumps(V2_BODY if path.startswith("/v2/") else {"prices": WINDOW}).encode() if method == "POST" else None
    return daemon.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})


# -- where the daemon may listen ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"])
def test_loopback_addresses_need_nothing(host: str) -> None:
    assert load_config({"host": host}, environ={}).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "predictor.example.com"])
def test_any_other_address_is_refused_saying_how_to_allow_it(host: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config({"host": host}, environ={})
    message = str(refused.value)
    assert "\n" not in message and host in message
    assert "--token-file" in message and "--allow-remote" in message


@pytest.mark.parametrize("value", ["true", "1", "yes", "YES", "on"])
def test_allow_remote_from_the_environment_accepts_the_usual_spellings_of_true(value: str) -> None:
    assert load_config({"host": "0.0.0.0"}, environ={"LSTM_PREDICTOR_ALLOW_REMOTE": value}).allow_remote


def test_allow_remote_in_the_config_file_is_a_toml_boolean(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text('host = "0.0.0.0"\nallow_remote = true\n', encoding="utf-8")
    assert load_config({}, environ={}, config_file=file).allow_remote
    with pytest.raises(ConfigError, match="refusing to listen"):  # the flag --no-allow-remote wins
        load_config({"allow_remote": False}, environ={}, config_file=file)
    with pytest.raises(ConfigError, match="LSTM_PREDICTOR_ALLOW_REMOTE: expected true or false"):
        load_config({}, environ={"LSTM_PREDICTOR_ALLOW_REMOTE": "sure"})


def test_serve_on_a_public_address_unprotected_exits_2_with_one_line() -> None:
    result = run_to_exit(["--host", "0.0.0.0", "--port", str(free_port())])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--allow-remote" in lines[0] and "--token-file" in lines[0], result.stderr


def test_serve_on_a_public_address_with_allow_remote_serves(start_daemon, models_dir, prices_dir) -> None:
    daemon = start_daemon(models_dir, prices_dir, args=["--host", "0.0.0.0", "--allow-remote"])
    assert daemon.post("/predict", {"prices": WINDOW}).status == 200


# -- the token file ---------------------------------------------------------------------------------


def test_a_token_file_allows_a_public_address_and_is_read_stripped(tmp_path: Path) -> None:
    token_file = write_token(tmp_path / "token", f"  {TOKEN}\n\n")
    config = load_config({"host": "0.0.0.0", "token_file": str(token_file)}, environ={})
    assert config.token == TOKEN
    assert TOKEN not in repr(config)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("", "at least 16"),
        ("\n  \n", "at least 16"),
        ("short", "at least 16"),
        ("two words make a token with a space", "without spaces"),
        ("tökenwithanümlautinsideit", "not ASCII"),
    ],
)
def test_an_unusable_token_file_is_a_configuration_error(tmp_path: Path, content: str, says: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=says) as refused:
        load_config({"token_file": str(token_file)}, environ={})
    assert str(refused.value).startswith("flag --token-file:")


def test_a_missing_token_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config({}, environ={"LSTM_PREDICTOR_TOKEN_FILE": str(tmp_path / "absent")})


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_token_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Permission denied"):
        load_config({"token_file": str(write_token(tmp_path / "token", mode=0o000))}, environ={})


def test_metrics_auth_without_a_token_file_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="metrics_auth needs a token_file"):
        load_config({"metrics_auth": True}, environ={})


# -- the token on the wire --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """A daemon with a token file (left readable by others, which is warned about) and one CORS origin."""
    root = tmp_path_factory.mktemp("guarded")
    make_tiny_bundle(root / "models" / "TINY3.SA")
    write_prices(root / "prices")
    token_file = write_token(root / "token", mode=0o644)
    running = launch(root / "models", root / "prices",
                     ["--token-file", str(token_file), "--cors-origins", f"{ORIGIN}, http://localhost:3000"],
                     log_dir=root)
    running.wait_healthy()
    yield running
    assert running.stop() == 0, running.stderr


def test_every_route_but_liveness_and_metrics_needs_the_token(guarded: RunningDaemon) -> None:
    operations = documented_operations(guarded, bearer())
    assert len(operations) > 15
    for method, template in operations:
        path = fill(template)
        anonymous = call(guarded, method, path)
        if template in OPEN_ROUTES:
            assert anonymous.status == 200, (method, path, anonymous.body)
            continue
        assert anonymous.status == 401, (method, path, anonymous.status)
        assert anonymous.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer" in error_message(anonymous)
        assert call(guarded, method, path, bearer()).status == 200, (method, path)


def test_the_openapi_document_declares_the_token_on_exactly_the_protected_routes(guarded: RunningDaemon) -> None:
    document = guarded.request("GET", "/openapi.json", headers=bearer()).json()
    OpenAPIV31SpecValidator(document).validate()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        **document["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}
    for path, item in document["paths"].items():
        for method, op in item.items():
            protected = path not in OPEN_ROUTES
            assert (op.get("security") == [{"bearerAuth": []}]) == protected, (method, path)
            assert ("401" in op["responses"]) == protected, (method, path)


def test_without_a_token_the_openapi_document_declares_none(api_daemon: RunningDaemon) -> None:
    document = api_daemon.get("/openapi.json").json()
    assert "securitySchemes" not in document["components"]
    assert not [path for path, item in document["paths"].items() for op in item.values() if "security" in op]


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TOKEN[:-1]}x", f"Bearer {TOKEN}{TOKEN}", f"Basic {TOKEN}", TOKEN, "Bearer", "Bearer ", ""],
)
def test_a_wrong_or_malformed_token_is_401(guarded: RunningDaemon, authorization: str) -> None:
    reply = guarded.request("POST", "/predict", json.dumps({"prices": WINDOW}).encode(),
                            {"Authorization": authorization})
    assert reply.status == 401 and reply.headers["WWW-Authenticate"] == "Bearer"
    assert reply.json()["error"]["code"] == "unauthorized"


def test_the_scheme_is_case_insensitive(guarded: RunningDaemon) -> None:
    assert guarded.request("GET", "/", headers={"Authorization": f"bearer {TOKEN}"}).status == 200


def test_unknown_paths_need_the_token_too_so_they_cannot_be_probed(guarded: RunningDaemon) -> None:
    assert guarded.get("/no/such/path").status == 401
    assert guarded.request("GET", "/no/such/path", headers=bearer()).status == 404


def test_v2_routes_answer_401_in_the_protocols_error_shape(guarded: RunningDaemon) -> None:
    reply = guarded.get("/v2/models/TINY3.SA")
    assert reply.status == 401 and isinstance(reply.json()["error"], str)


def test_401s_are_counted_like_any_status_and_the_token_is_never_logged(guarded: RunningDaemon) -> None:
    assert guarded.get("/monitoring/stats").status == 401
    metrics = guarded.get("/metrics").body.decode()
    assert any('route="/monitoring/stats"' in line and 'status="401"' in line for line in metrics.splitlines())
    assert TOKEN not in guarded.stderr
    assert "readable by other users" in guarded.stderr


def test_metrics_auth_protects_metrics_but_not_liveness(start_daemon, models_dir, tmp_path: Path) -> None:
    token_file = write_token(tmp_path / "token")
    daemon = start_daemon(models_dir, args=["--token-file", str(token_file), "--metrics-auth"])
    assert daemon.get("/metrics").status == 401
    assert daemon.request("GET", "/metrics", headers=bearer()).status == 200
    assert daemon.get("/v2/health/live").status == 200
    assert "readable by other users" not in daemon.stderr


def test_sighup_rereads_the_token_file_and_keeps_the_token_when_the_new_file_is_unusable(
        start_daemon, models_dir, tmp_path: Path) -> None:
    token_file = write_token(tmp_path / "token")
    daemon = start_daemon(models_dir, args=["--token-file", str(token_file)])
    rotated = "0123456789abcdef" * 2
    write_token(token_file, rotated + "\n")
    daemon.signal(signal.SIGHUP)
    assert wait_for(lambda: daemon.request("GET", "/", headers=bearer(rotated)).status == 200)
    assert daemon.request("GET", "/", headers=bearer()).status == 401
    write_token(token_file, "")
    daemon.signal(signal.SIGHUP)
    assert wait_for(lambda: "keeping the current bearer token" in daemon.stderr)
    assert daemon.request("GET", "/", headers=bearer(rotated)).status == 200
    assert rotated not in daemon.stderr


def wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- CORS -------------------------------------------------------------------------------------------


def preflight(daemon: RunningDaemon, path: str, origin: str):
    return daemon.request("OPTIONS", path, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })


def test_without_cors_origins_there_are_no_cors_headers(api_daemon: RunningDaemon) -> None:
    reply = preflight(api_daemon, "/predict", ORIGIN)
    assert reply.status == 405 and reply.json()["error"]["code"] == "method_not_allowed"
    answered = api_daemon.request("GET", "/health", headers={"Origin": ORIGIN})
    assert not [name for name in (*reply.headers, *answered.headers) if name.lower().startswith("access-control-")]


def test_a_listed_origins_preflight_is_answered_allowing_the_authorization_header(guarded: RunningDaemon) -> None:
    reply = preflight(guarded, "/predict", ORIGIN)
    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert reply.headers["Access-Control-Allow-Methods"] == "POST"
    allowed = {name.strip().lower() for name in reply.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "Origin" in reply.headers["Vary"]


def test_an_unlisted_origin_gets_no_cors_headers(guarded: RunningDaemon) -> None:
    reply = preflight(guarded, "/predict", "https://evil.example.net")
    assert reply.status in (401, 405)
    assert "Access-Control-Allow-Origin" not in reply.headers


def test_answers_to_a_listed_origin_carry_its_name_errors_included(guarded: RunningDaemon) -> None:
    ok = guarded.request("GET", "/", headers={"Origin": "http://localhost:3000", **bearer()})
    assert ok.status == 200 and ok.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    refused = guarded.request("GET", "/", headers={"Origin": ORIGIN})
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "WWW-Authenticate" in refused.headers["Access-Control-Expose-Headers"]


# -- no path a client names is read -----------------------------------------------------------------

TRAVERSALS = [
    "..",
    "%2e%2e",
    "../../../../etc/passwd",
    "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "%2Fetc%2Fpasswd",
    "....%2F%2F....%2F%2Fetc%2Fpasswd",
    "..%5C..%5C..%5Cetc%5Cpasswd",
    "TINY3.SA%2F..%2F..%2Fprices%2FTINY3.SA.csv",
    "..%2FTINY3.SA%2Fmetadata.json",
    "..%2F..%2F__init__.py",
]
# What a file outside the served set would show: /etc/passwd, a price CSV, the models' metadata, source code.
LEAKS = ("root:", "Date,Close", '"look_back"', "import ")


def assert_not_found_without_leaks(reply, where: str) -> None:
    assert reply.status == 404, (where, reply.status, reply.body[:200])
    error_message(reply)
    text = reply.body.decode("utf-8", "replace")
    assert not [leak for leak in LEAKS if leak in text], (where, text[:300])


@pytest.mark.parametrize("traversal", TRAVERSALS)
def test_no_path_parameter_reaches_a_file_outside_the_served_set(api_daemon: RunningDaemon, traversal: str) -> None:
    templated = [(m, t) for m, t in documented_operations(api_daemon) if "{" in t]
    assert {t for _, t in templated} >= {"/v2/models/{name}", "/v2/models/{name}/versions/{version}",
                                         "/docs/static/{filename}"}
    for method, template in templated:
        for parameter in PATH_VALUES:
            if "{" + parameter + "}" in template:
                path = fill(template.replace("{" + parameter + "}", traversal))
                assert_not_found_without_leaks(call(api_daemon, method, path), f"{method} {path}")


@pytest.mark.parametrize("traversal", ["../../../../etc/passwd", "/etc/passwd", "../prices/TINY3.SA", "..\\..\\x"])
def test_no_symbol_in_a_query_or_body_reaches_a_file(api_daemon: RunningDaemon, traversal: str) -> None:
    from urllib.parse import quote

    path = f"/monitoring/model/info?symbol={quote(traversal, safe='')}"
    assert_not_found_without_leaks(api_daemon.get(path), path)
    for route in ("/predict/live", "/predict/forecast"):
        assert_not_found_without_leaks(api_daemon.post(route, {"symbol": traversal}), route)
    assert_not_found_without_leaks(api_daemon.post("/predict", {"symbol": traversal, "prices": WINDOW}), "/predict")

