"""The shipped unit and example configuration: valid for systemd, hardened, and
agreeing with each other and with the installer about paths."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from lstm_predictor.daemon import service_install as si
from lstm_predictor.daemon.config import load_config
from lstm_predictor.daemon.serve_cli import EXIT_BAD_CONFIG

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from systemd_sandbox import unit_settings

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "lstm-predictor.service"
EXAMPLE = REPO / "systemd" / "config.example.toml"
MAX_EXPOSURE = 2.0

needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_installed_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart= exists, so render the unit for this environment's executable,
    # exactly as `service install` does.
    executable = si.default_executable()
    assert executable is not None
    unit = tmp_path / si.UNIT_FILE
    unit.write_text(si.render_unit(PurePosixPath(executable)), encoding="utf-8")

    result = subprocess.run(["systemd-analyze", "verify", str(unit)], check=False, capture_output=True, text=True, timeout=60)

    # Parse errors are warnings on stderr with exit status 0: any line about our unit is a failure.
    complaints = [line for line in result.stderr.splitlines() if si.SERVICE in line]
    assert result.returncode == 0 and not complaints, result.stderr


@needs_systemd_analyze
def test_security_exposure_is_at_most_2() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        check=False, capture_output=True, text=True, timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_example_config_is_accepted_by_the_daemon_and_names_the_installer_paths() -> None:
    keys = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    config = load_config({}, environ={}, config_file=EXAMPLE)  # the daemon's own loader refuses unknown keys

    assert all(config.origins[key].startswith("config file") for key in keys)
    assert PurePosixPath(config.models) == si.MODELS_DIR
    assert PurePosixPath(config.cache_dir) == si.CACHE_DIR
    assert config.host == "127.0.0.1" and config.market_data == "yfinance"


def test_the_unit_runs_serve_with_the_installed_config_and_owns_the_installer_directories() -> None:
    unit = UNIT.read_text(encoding="utf-8")
    (exec_start,) = unit_settings(unit, "ExecStart")
    assert exec_start.split()[1:] == ["serve", "--config", str(si.CONFIG_PATH)]
    assert unit_settings(unit, "Type") == ["notify"]
    # A configuration error is not worth restarting for.
    assert unit_settings(unit, "RestartPreventExitStatus") == [str(EXIT_BAD_CONFIG)]
    assert unit_settings(unit, "StateDirectory") == [si.STATE_DIR.name]
    assert unit_settings(unit, "CacheDirectory") == [si.CACHE_DIR.name]
    assert unit_settings(unit, "ConfigurationDirectory") == [si.CONFIG_DIR.name]
    # yfinance's own caches follow XDG_CACHE_HOME; %C is systemd's /var/cache.
    assert "XDG_CACHE_HOME=%C/lstm-predictor" in " ".join(unit_settings(unit, "Environment"))


def test_the_shipped_files_are_the_ones_the_installer_reads() -> None:
    assert si.shipped_file(si.UNIT_FILE) == UNIT.read_text(encoding="utf-8")
    assert si.shipped_file(si.EXAMPLE_CONFIG) == EXAMPLE.read_text(encoding="utf-8")
