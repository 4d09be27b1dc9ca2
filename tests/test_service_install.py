"""`lstm-predictor service install|uninstall` into a temporary root: what it writes,
what it keeps, what it refuses, and that it works from a built wheel too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
from click.testing import CliRunner, Result

from lstm_predictor.cli import main
from lstm_predictor.daemon import service_install as si
from lstm_predictor.daemon.bundle import read_bundle
from tiny_bundle import make_tiny_bundle

REPO = Path(__file__).resolve().parents[1]
OPT_EXECUTABLE = "/opt/lstm-predictor/venv/bin/lstm-predictor"


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, ["service", *args], catch_exceptions=False)


def install(*args: str) -> Result:
    """Install into a staging root for a target whose venv is at OPT_EXECUTABLE: the
    executable running the tests may live anywhere (a checkout under /tmp, say)."""
    return cli("install", "--executable", OPT_EXECUTABLE, *args)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path below root: file contents, None for directories and symlinks."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def installed(root: Path, models_dir: Path) -> Path:
    result = install("--root", str(root), "--models", str(models_dir))
    assert result.exit_code == 0, result.output
    return root


def test_dry_run_lists_every_file_and_writes_nothing(root: Path, models_dir: Path) -> None:
    result = install("--root", str(root), "--models", str(models_dir), "--dry-run")

    assert result.exit_code == 0, result.output
    assert "nothing is changed" in result.output
    assert f"would write   {root}/etc/systemd/system/lstm-predictor.service" in result.output
    assert f"would write   {root}/etc/lstm-predictor/config.toml" in result.output
    assert f"would copy    {models_dir / 'TINY3.SA'} -> {root}/var/lib/lstm-predictor/models/TINY3.SA" in result.output
    assert "skip    systemctl daemon-reload (--root given" in result.output
    assert not root.exists()


def test_install_writes_the_unit_the_config_and_the_models(installed: Path) -> None:
    unit = installed / "etc/systemd/system/lstm-predictor.service"
    config = installed / "etc/lstm-predictor/config.toml"
    bundle = installed / "var/lib/lstm-predictor/models/TINY3.SA"

    assert unit.read_text() == si.render_unit(PurePosixPath(OPT_EXECUTABLE))
    assert config.read_text() == si.shipped_file(si.EXAMPLE_CONFIG)
    assert read_bundle(bundle).symbol == "TINY3.SA"
    # The service runs as a dynamic user: what it reads must be world-readable.
    assert unit.stat().st_mode & 0o777 == 0o644
    assert config.stat().st_mode & 0o777 == 0o644


def test_install_never_overwrites_an_existing_config(installed: Path, models_dir: Path) -> None:
    config = installed / "etc/lstm-predictor/config.toml"
    config.write_text('port = 9999\n')

    result = install("--root", str(installed), "--models", str(models_dir))

    assert result.exit_code == 0, result.output
    assert f"keep    {config} (exists" in result.output
    assert config.read_text() == 'port = 9999\n'


def test_reinstall_replaces_a_bundle_with_the_new_version(installed: Path, tmp_path: Path) -> None:
    newer = make_tiny_bundle(tmp_path / "newer" / "TINY3.SA", version="2")

    # --models may also name one bundle folder.
    result = install("--root", str(installed), "--models", str(newer))

    assert result.exit_code == 0, result.output
    models_dir = installed / "var/lib/lstm-predictor/models"
    assert read_bundle(models_dir / "TINY3.SA").version == "2"
    assert sorted(p.name for p in models_dir.iterdir()) == ["TINY3.SA"]  # no staging leftovers


def test_a_broken_bundle_stops_the_install_before_anything_changes(root: Path, models_dir: Path) -> None:
    (models_dir / "TINY3.SA" / "model.onnx").write_bytes(b"not the recorded model")

    result = install("--root", str(root), "--models", str(models_dir))

    assert result.exit_code != 0
    assert "model.onnx does not match its recorded sha256" in result.output
    assert not root.exists()


def test_an_empty_models_directory_is_refused(root: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = install("--root", str(root), "--models", str(tmp_path / "empty"))
    assert result.exit_code != 0
    assert "no model bundles" in result.output


@pytest.mark.parametrize("executable", ["/home/me/venv/bin/lstm-predictor", "/tmp/venv/bin/lstm-predictor", "venv/bin/lstm-predictor"])
def test_an_executable_the_sandbox_cannot_reach_is_refused(root: Path, models_dir: Path, executable: str) -> None:
    result = CliRunner().invoke(
        main, ["service", "install", "--root", str(root), "--models", str(models_dir), "--executable", executable]
    )
    assert result.exit_code != 0
    assert not root.exists()


def test_uninstall_removes_the_unit_and_keeps_config_and_models(installed: Path) -> None:
    before = tree(installed)

    result = cli("uninstall", "--root", str(installed))

    assert result.exit_code == 0, result.output
    after = tree(installed)
    assert "etc/systemd/system/lstm-predictor.service" not in after
    assert {k: v for k, v in before.items() if "lstm-predictor.service" not in k} == after
    assert "(--purge removes it)" in result.output


def test_uninstall_dry_run_changes_nothing(installed: Path) -> None:
    before = tree(installed)
    result = cli("uninstall", "--root", str(installed), "--purge", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would remove" in result.output
    assert tree(installed) == before


def test_purge_removes_config_models_and_caches_where_dynamic_user_moved_them(installed: Path) -> None:
    # After the first start, DynamicUser= has moved the state and cache directories
    # under private/ and left symlinks in their place.
    for parent in ("var/lib", "var/cache"):
        public, private = installed / parent / "lstm-predictor", installed / parent / "private" / "lstm-predictor"
        private.parent.mkdir(parents=True, exist_ok=True)
        if public.exists():
            public.rename(private)
        else:
            private.mkdir()
        public.symlink_to(Path("private") / "lstm-predictor")
    (installed / "var/cache/private/lstm-predictor/py-yfinance").mkdir()

    result = cli("uninstall", "--root", str(installed), "--purge")

    assert result.exit_code == 0, result.output
    leftovers = [k for k in tree(installed) if "lstm-predictor" in k]
    assert leftovers == []
    assert (installed / "var/lib/private").is_dir()  # systemd's, not ours


def test_install_works_from_a_built_wheel(tmp_path: Path, models_dir: Path) -> None:
    """A non-editable install finds the unit and example config as package data."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv*", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "models", "tests"))
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(source)], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    # A fresh environment holding only the wheel; its dependencies come from this
    # environment's site-packages through a .pth (which does not run our editable finder).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python*/site-packages"))
    site.joinpath("deps.pth").write_text(str(next(p for p in map(Path, sys.path) if p.name == "site-packages")) + "\n")
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)

    root = tmp_path / "root"
    result = subprocess.run(
        [str(venv / "bin" / "lstm-predictor"), "service", "install", "--root", str(root),
         "--models", str(models_dir), "--executable", OPT_EXECUTABLE],
        check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""},
    )
    located = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import lstm_predictor.systemd as s; print(s.__file__)"],
        check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""},
    )

    assert result.returncode == 0, result.stderr
    assert located.stdout.startswith(str(venv))  # the wheel's copy, not this checkout
    unit = (root / "etc/systemd/system/lstm-predictor.service").read_text()
    assert f"ExecStart={OPT_EXECUTABLE} serve --config /etc/lstm-predictor/config.toml" in unit
    assert (root / "etc/lstm-predictor/config.toml").read_text() == (REPO / "systemd/config.example.toml").read_text()
