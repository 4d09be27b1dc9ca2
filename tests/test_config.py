"""Configuration: flag > environment > config file > default, one parser for all four,
and the old service's MODEL_PATH / METADATA_PATH / LOOK_BACK."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lstm_predictor.daemon.config import (
    OPTIONS,
    Config,
    ConfigError,
    default_models_dir,
    load_config,
)


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_loopback_8000_yfinance_and_the_shipped_models() -> None:
    config = load_config({}, environ={})
    assert (config.host, config.port, config.market_data, config.variant) == ("127.0.0.1", 8000, "yfinance", "fp32")
    assert config.models == default_models_dir()
    assert set(config.origins.values()) == {"default"}


def test_the_shipped_models_are_the_repository_folder_in_a_checkout(repo_dir: Path) -> None:
    expected = repo_dir / "models" if (repo_dir / "models").is_dir() else Path("/var/lib/lstm-predictor/models")
    assert default_models_dir() == expected


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    file = write_toml(tmp_path / "c.toml", 'port = 9001\nhost = "0.0.0.0"\nmax_batch_size = 8\nlog_level = "debug"\n')
    env = {"LSTM_PREDICTOR_PORT": "9002", "LSTM_PREDICTOR_HOST": "::1"}
    config = load_config({"port": "9003"}, environ=env, config_file=file)
    assert config.port == 9003  # flag
    assert config.host == "::1"  # environment over file
    assert config.max_batch_size == 8 and config.log_level == "debug"  # file over default
    assert config.max_queue_size == Config().max_queue_size  # default
    assert config.origins["port"] == "flag --port"
    assert config.origins["host"] == "environment LSTM_PREDICTOR_HOST"
    assert config.origins["max_batch_size"].startswith("config file")


def test_the_config_file_may_come_from_the_environment(tmp_path: Path) -> None:
    file = write_toml(tmp_path / "c.toml", "max_queue_delay_us = 0\n")
    assert load_config({}, environ={"LSTM_PREDICTOR_CONFIG": str(file)}).max_queue_delay_us == 0


def test_every_option_has_a_flag_an_environment_variable_and_a_file_key(tmp_path: Path) -> None:
    keys = {option.name for option in OPTIONS}
    assert {"host", "port", "models", "market_data", "cache_dir", "log_level", "max_batch_size",
            "max_queue_delay_us", "max_queue_size", "variant", "max_body_bytes"} <= keys
    for option in OPTIONS:
        assert option.env == "LSTM_PREDICTOR_" + option.name.upper()
        assert option.flag == "--" + option.name.replace("_", "-")
        assert option.name in Config.__dataclass_fields__


def test_a_directory_market_data_is_checked_and_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "prices").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_config({"market_data": "prices"}, environ={}).market_data == str(tmp_path / "prices")
    assert load_config({"market_data": "YFinance"}, environ={}).market_data == "yfinance"
    with pytest.raises(ConfigError, match="neither 'yfinance' nor an existing directory"):
        load_config({"market_data": "nowhere"}, environ={})


@pytest.mark.parametrize(
    ("flags", "env", "says"),
    [
        ({"port": "http"}, {}, "flag --port: expected an integer, got 'http'"),
        ({}, {"LSTM_PREDICTOR_MAX_BATCH_SIZE": "0"}, "environment LSTM_PREDICTOR_MAX_BATCH_SIZE: must be at least 1"),
        ({"variant": "fp16"}, {}, "expected one of fp32, int8"),
        ({"log_level": "loud"}, {}, "expected one of debug, info, warning, error"),
        ({"market_data_ttl": "-1"}, {}, "must be greater than 0"),
        ({"market_data_timeout": "inf"}, {}, "flag --market-data-timeout: must be a finite number of seconds"),
        ({}, {"LSTM_PREDICTOR_DRAIN_TIMEOUT": "1e400"}, "must be a finite number of seconds"),
    ],
)
def test_a_bad_value_names_where_it_came_from(flags: dict, env: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        load_config(flags, environ=env)


def test_config_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key\\(s\\) prot"):
        load_config({}, environ={}, config_file=write_toml(tmp_path / "a.toml", "prot = 1\n"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({}, environ={}, config_file=write_toml(tmp_path / "b.toml", "port = \n"))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config({}, environ={}, config_file=tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="key 'port': expected an integer, got True"):
        load_config({}, environ={}, config_file=write_toml(tmp_path / "c.toml", "port = true\n"))


def test_the_example_config_file_loads(repo_dir: Path) -> None:
    example = repo_dir / "systemd" / "config.example.toml"
    if not example.is_file():
        pytest.skip("systemd/config.example.toml is not in this checkout")
    config = load_config({}, environ={}, config_file=example)
    assert config.origins["port"].startswith(f"config file {example}")


# -- the old service's variables --------------------------------------------------------------------


def test_model_path_may_name_a_bundle_folder_or_its_onnx_file(tiny_bundle: Path) -> None:
    assert load_config({}, environ={"MODEL_PATH": str(tiny_bundle)}).models == tiny_bundle
    config = load_config({}, environ={"MODEL_PATH": str(tiny_bundle / "model.onnx")})
    assert config.models == tiny_bundle and config.origins["models"] == "environment MODEL_PATH"


def test_model_path_naming_a_keras_file_says_how_to_convert_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({}, environ={"MODEL_PATH": str(tmp_path / "lstm_petr4_final.keras")})
    assert "lstm-predictor convert" in str(caught.value) and "ONNX" in str(caught.value)


def test_model_path_and_models_together_are_refused(tiny_bundle: Path) -> None:
    with pytest.raises(ConfigError, match="set only one"):
        load_config({"models": str(tiny_bundle.parent)}, environ={"MODEL_PATH": str(tiny_bundle)})


def test_model_path_that_is_not_a_bundle_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a model bundle"):
        load_config({}, environ={"MODEL_PATH": str(tmp_path)})


def test_look_back_and_metadata_path_become_expectations(tmp_path: Path) -> None:
    meta = tmp_path / "model_metadata.json"
    meta.write_text(json.dumps({"symbol": "PETR4.SA", "look_back": 60}), encoding="utf-8")
    config = load_config({}, environ={"LOOK_BACK": "60", "METADATA_PATH": str(meta)})
    assert (config.expect_look_back, config.expect_symbol) == (60, "PETR4.SA")
    with pytest.raises(ConfigError, match="LOOK_BACK=30 disagrees with METADATA_PATH"):
        load_config({}, environ={"LOOK_BACK": "30", "METADATA_PATH": str(meta)})
    with pytest.raises(ConfigError, match="LOOK_BACK: expected an integer"):
        load_config({}, environ={"LOOK_BACK": "sixty"})


@pytest.mark.parametrize("text", ["{not json", "[" * 100_000 + "]" * 100_000])
def test_a_metadata_path_that_is_not_json_is_refused(tmp_path: Path, text: str) -> None:
    meta = tmp_path / "model_metadata.json"
    meta.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="METADATA_PATH=.*cannot be read as JSON"):
        load_config({}, environ={"METADATA_PATH": str(meta)})
