"""A real Prometheus scraping a real daemon: the shipped rules and dashboard work on live data.

Debian's ``prometheus`` binary runs on a free loopback port with
monitoring/prometheus.yml (intervals shortened to 1 s, targets pointed at the
daemon under test) and the shipped rules. After a little traffic, some of it
rejected with 4xx, every recording rule and every dashboard query must return
data through Prometheus' HTTP API: an empty panel is a bug in the dashboard,
the rules or the daemon's metrics.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml

from lstm_predictor.daemon.metrics import KINDS

from daemon_harness import TINY_SYMBOL, RunningDaemon, free_port, launch, write_prices
from tiny_bundle import make_tiny_bundle

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
RULES = MONITORING / "rules"
DASHBOARD = MONITORING / "grafana" / "provisioning" / "dashboards" / "lstm-predictor.json"
LOOK_BACK = 60
DEADLINE = 90.0  # seconds to wait for Prometheus to start, or for data to show; never a performance bound

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (apt-get install prometheus)")


class Prometheus:
    """``prometheus`` on a free loopback port, scraping every second with the shipped rules.

    The configuration is monitoring/prometheus.yml itself, with the intervals
    shortened and the targets pointed at the daemon under test and at itself.
    """

    def __init__(self, binary: str, daemon_address: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        targets = workdir / "lstm-predictor.yml"
        targets.write_text(yaml.safe_dump([{"targets": [daemon_address]}]))
        config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config["rule_files"] = [str(RULES / "*.yml")]
        for job in config["scrape_configs"]:
            if job["job_name"] == "lstm-predictor":
                job["file_sd_configs"] = [{"files": [str(targets)]}]
            else:
                job["static_configs"] = [{"targets": [f"127.0.0.1:{self.port}"]}]
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config_file}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        self.wait_for(lambda: requests.get(f"{self.url}/-/ready", timeout=5).status_code == 200, "to be ready")

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                if condition():
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"waited {DEADLINE:g} s for prometheus {what}:\n{self.log_path.read_text()}")

    def api(self, path: str, **params: str) -> dict:
        body = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def window(i: int) -> list[float]:
    return [30.0 + ((i + k) % 7) / 10 for k in range(LOOK_BACK)]


def drive_traffic(daemon: RunningDaemon, rounds: int) -> None:
    """Every kind of prediction, plus requests the daemon must refuse with 400, 404 and 422."""
    v2 = {"inputs": [{"name": "prices", "shape": [2, LOOK_BACK, 1], "datatype": "FP32", "data": window(0) + window(1)}]}
    expected = [
        ("POST", "/predict", {"prices": None}, 200),
        ("POST", "/predict/live", {"symbol": TINY_SYMBOL}, 200),
        ("POST", "/predict/forecast", {"symbol": TINY_SYMBOL, "days": 3}, 200),
        ("POST", f"/v2/models/{TINY_SYMBOL}/infer", v2, 200),
        ("POST", "/predict", {"prices": [1.0, 2.0]}, 422),
        ("POST", "/predict", {"prices": None, "symbol": "NOPE3.SA"}, 404),
        ("GET", "/no/such/page", None, 404),
        ("GET", "/health", None, 200),
    ]
    for i in range(rounds):
        for method, path, payload, status in expected:
            if payload is not None and payload.get("prices", 0) is None:
                payload = {**payload, "prices": window(i)}
            reply = daemon.post(path, payload) if method == "POST" else daemon.get(path)
            assert reply.status == status, (method, path, reply.status, reply.body[:300])
        reply = daemon.request("POST", "/predict", b"{not json", {"Content-Type": "application/json"})
        assert reply.status == 400, reply.body[:300]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningDaemon, Prometheus]]:
    """The tiny TINY3.SA bundle served from its CSV prices, scraped by Prometheus after traffic."""
    root = tmp_path_factory.mktemp("prometheus-stack")
    make_tiny_bundle(root / "models" / TINY_SYMBOL)
    write_prices(root / "prices")
    daemon = launch(root / "models", root / "prices", log_dir=root)
    prometheus = None
    try:
        daemon.wait_healthy()
        drive_traffic(daemon, rounds=3)
        (root / "prometheus").mkdir()
        prometheus = Prometheus(PROMETHEUS, f"127.0.0.1:{daemon.port}", root / "prometheus")
        prometheus.wait_for(lambda: prometheus.query('up{job="lstm-predictor"} == 1') != [], "to scrape the daemon")
        # More traffic after the first scrape, so rates have something to measure.
        drive_traffic(daemon, rounds=3)
        prometheus.wait_for(
            lambda: len(prometheus.query("job_kind_model:lstm_predictor_predictions:rate5m > 0")) == len(KINDS),
            "to record a scrape taken after the second round of traffic",
        )
        yield daemon, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        assert daemon.stop() == 0, daemon.stderr


def shipped_rules() -> list[dict]:
    return [r for f in sorted(RULES.glob("*.yml")) for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]]


def recording_rules() -> list[str]:
    """Each recorded name once (the quantile rules share a name)."""
    return list(dict.fromkeys(r["record"] for r in shipped_rules() if "record" in r))


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]


def wait_for_data(prometheus: Prometheus, exprs: list[str]) -> list[str]:
    """The expressions still empty once every one has data, or the deadline passed."""
    empty = list(exprs)

    def all_have_data() -> bool:
        empty[:] = [e for e in empty if not prometheus.query(e)]
        return not empty

    try:
        prometheus.wait_for(all_have_data, "to return data for every expression")
    except AssertionError:
        pass
    return empty


def test_every_recording_rule_has_data(stack: tuple[RunningDaemon, Prometheus]) -> None:
    _, prometheus = stack
    assert wait_for_data(prometheus, recording_rules()) == []


def test_every_dashboard_query_has_data(stack: tuple[RunningDaemon, Prometheus]) -> None:
    _, prometheus = stack
    queries = dashboard_queries()
    empty = wait_for_data(prometheus, [expr for _, expr in queries])
    assert [(title, expr) for title, expr in queries if expr in empty] == []


def test_every_rule_evaluates_without_error(stack: tuple[RunningDaemon, Prometheus]) -> None:
    _, prometheus = stack
    prometheus.wait_for(
        lambda: all(r["health"] != "unknown" for g in prometheus.api("rules")["groups"] for r in g["rules"]),
        "to evaluate every rule",
    )
    rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
    assert len(rules) == len(shipped_rules())
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


def test_the_rates_reflect_the_traffic(stack: tuple[RunningDaemon, Prometheus]) -> None:
    _, prometheus = stack
    client_errors = prometheus.query("job:lstm_predictor_http_client_errors:ratio_rate5m")
    assert client_errors and 0 < float(client_errors[0]["value"][1]) < 1
    [server_errors] = prometheus.query("job:lstm_predictor_http_server_errors:ratio_rate5m")
    assert float(server_errors["value"][1]) == 0
    kinds = {r["metric"]["kind"] for r in prometheus.query("job_kind_model:lstm_predictor_predictions:rate5m > 0")}
    assert kinds == {"manual", "live", "forecast", "v2"}
    routes = {r["metric"]["route"] for r in prometheus.query("job_route:lstm_predictor_http_requests:rate5m")}
    assert "unmatched" in routes and "/v2/models/{name}/infer" in routes
    assert not any("NOPE" in route or "no/such" in route for route in routes)


def test_a_healthy_daemon_fires_no_alert(stack: tuple[RunningDaemon, Prometheus]) -> None:
    _, prometheus = stack
    assert [a for a in prometheus.api("alerts")["alerts"] if a["state"] == "firing"] == []


def test_promtool_accepts_the_real_metrics_endpoint(stack: tuple[RunningDaemon, Prometheus], promtool: str) -> None:
    daemon, _ = stack
    reply = daemon.get("/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    result = subprocess.run([promtool, "check", "metrics"], input=reply.body, capture_output=True, check=False)
    assert result.returncode == 0 and not result.stdout and not result.stderr, result.stdout + result.stderr
