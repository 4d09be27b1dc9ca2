"""The monitoring folder: Prometheus config and rules, alert unit tests, Grafana provisioning, compose stack.

Checked with Prometheus' own ``promtool`` where it can judge, and against what
Grafana and Docker Compose need where no engine runs here.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from lstm_predictor.daemon.metrics import PREFIX

from test_metrics import busy_metrics

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
RULES = MONITORING / "rules"
PROVISIONING = MONITORING / "grafana" / "provisioning"
DASHBOARD = PROVISIONING / "dashboards" / "lstm-predictor.json"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules(kind: str) -> list[dict]:
    """Every rule of ``kind`` ("alert" or "record") in monitoring/rules/*.yml."""
    return [r for f in sorted(RULES.glob("*.yml")) for g in load(f)["groups"] for r in g["rules"] if kind in r]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_targets() -> list[dict]:
    return [t for p in dashboard()["panels"] for t in p.get("targets", [])]


def promtool_ok(promtool: str, *args: str | Path) -> None:
    result = subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Prometheus ---------------------------------------------------------------


def test_prometheus_config_is_valid_and_loads_the_rules(promtool: str) -> None:
    promtool_ok(promtool, "check", "config", MONITORING / "prometheus.yml")
    config = load(MONITORING / "prometheus.yml")
    assert config["rule_files"] == ["rules/*.yml"]
    assert {job["job_name"] for job in config["scrape_configs"]} == {"lstm-predictor", "prometheus"}


def test_the_default_target_is_the_daemons_default_address() -> None:
    [group] = load(MONITORING / "targets" / "lstm-predictor.yml")
    assert group["targets"] == ["127.0.0.1:8000"]


def test_rule_files_are_valid(promtool: str) -> None:
    promtool_ok(promtool, "check", "rules", *sorted(RULES.glob("*.yml")))


def test_alert_unit_tests_pass(promtool: str) -> None:
    promtool_ok(promtool, "test", "rules", *sorted((RULES / "tests").glob("*.yml")))


def test_every_alert_has_a_unit_test_in_which_it_fires() -> None:
    fired = {
        case["alertname"]
        for f in (RULES / "tests").glob("*.yml")
        for test in load(f)["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == {r["alert"] for r in rules("alert")}


def test_every_alert_says_how_urgent_it_is_and_what_to_look_at() -> None:
    for rule in rules("alert"):
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_recording_rule_names_follow_level_metric_operation() -> None:
    for rule in rules("record"):
        level, metric, operation = rule["record"].split(":")
        assert level and metric.startswith(PREFIX) and operation, rule["record"]


def test_every_metric_the_rules_and_dashboard_read_is_exposed_by_the_daemon() -> None:
    """A typo in a metric name would otherwise show up only as an empty panel."""
    body = busy_metrics().render()[0].decode()
    exposed = {s.name for f in text_string_to_metric_families(body) for s in f.samples}
    exprs = [r["expr"] for r in rules("record") + rules("alert")] + [t["expr"] for t in dashboard_targets()]
    read = {m for e in exprs for m in re.findall(r"(?<![:\w])((?:lstm_predictor|process)_\w+)", e)}
    assert read and read <= exposed, sorted(read - exposed)


# --- Grafana ----------------------------------------------------------------------


def test_the_datasource_is_provisioned_with_a_fixed_uid() -> None:
    [source] = load(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "prometheus"


def test_dashboard_has_what_grafana_needs_to_provision_it() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]


def test_every_dashboard_panel_queries_a_provisioned_datasource() -> None:
    uids = {s["uid"] for f in (PROVISIONING / "datasources").glob("*.yml") for s in load(f)["datasources"]}
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] in uids, panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] in uids, panel["title"]


@pytest.mark.parametrize(
    "metric",
    [
        "lstm_predictor_models_loaded",
        "lstm_predictor_model_info",
        "job_route:lstm_predictor_http_requests:rate5m",
        "job_route:lstm_predictor_http_request_duration_seconds:histogram_quantile_5m",
        "job_model:lstm_predictor_inference_duration_seconds:histogram_quantile_5m",
        "job_model:lstm_predictor_inference_batch_size:mean5m",
        "job_status:lstm_predictor_http_requests:rate5m",
        "job_kind_model:lstm_predictor_predictions:rate5m",
        "lstm_predictor_market_data_age_seconds",
        "lstm_predictor_market_data_fetch_failures_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ],
)
def test_the_dashboard_shows(metric: str) -> None:
    assert any(metric in t["expr"] for t in dashboard_targets())


# --- docker compose -------------------------------------------------------------------


def compose() -> dict:
    return load(MONITORING / "docker-compose.yml")


def bind_mounts(service: dict) -> dict[PurePosixPath, Path]:
    """container path -> host path of the service's bind mounts (named volumes left out)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[PurePosixPath(target)] = (MONITORING / source).resolve()
    return mounts


def host_path(mounts: dict[PurePosixPath, Path], container_path: PurePosixPath) -> Path | None:
    """Where a container path lands on the host, through the longest enclosing mount."""
    for target in sorted(mounts, key=lambda p: len(p.parts), reverse=True):
        if container_path == target or target in container_path.parents:
            return mounts[target].joinpath(*container_path.relative_to(target).parts)
    return None


def test_compose_runs_the_daemon_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert set(services) == {"daemon", "prometheus", "grafana"}
    build = services["daemon"]["build"]
    assert (MONITORING / build["context"] / build["dockerfile"]).is_file()
    for service in services.values():
        for host in bind_mounts(service).values():
            assert host.exists(), host


def test_compose_prometheus_finds_its_config_rules_and_the_daemon() -> None:
    services = compose()["services"]
    prometheus = services["prometheus"]
    mounts = bind_mounts(prometheus)
    flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = PurePosixPath(flag.split("=", 1)[1])
    assert host_path(mounts, config_path) == (MONITORING / "prometheus.yml").resolve()
    config = load(MONITORING / "prometheus.yml")
    assert host_path(mounts, config_path.parent / "rules") == RULES.resolve()
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "lstm-predictor"]
    [targets_file] = job["file_sd_configs"][0]["files"]
    [group] = load(host_path(mounts, config_path.parent / targets_file))
    [target] = group["targets"]
    host, port = target.split(":")
    assert host in services and f"{port}:{port}" in services[host]["ports"]


def test_compose_grafana_is_provisioned_with_the_datasource_and_the_dashboard() -> None:
    services = compose()["services"]
    mounts = bind_mounts(services["grafana"])
    assert host_path(mounts, PurePosixPath("/etc/grafana/provisioning")) == PROVISIONING.resolve()
    [provider] = load(PROVISIONING / "dashboards" / "lstm-predictor.yml")["providers"]
    assert host_path(mounts, PurePosixPath(provider["options"]["path"])) == DASHBOARD.parent.resolve()
    [source] = load(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    url = re.fullmatch(r"http://([\w-]+):(\d+)", source["url"])
    assert url and url[1] in services and f"{url[2]}:{url[2]}" in services[url[1]]["ports"]
