"""``lstm-predictor service install|uninstall``: put the daemon under systemd.

What goes where (below ``--root``, ``/`` by default):

- ``etc/systemd/system/lstm-predictor.service``: the shipped unit, its ``ExecStart=``
  pointed at the ``lstm-predictor`` of the environment doing the install, so the
  unit always runs the code that was installed (a venv such as
  ``/opt/lstm-predictor/venv`` is the intended home);
- ``etc/lstm-predictor/config.toml``: the example configuration, never overwritten;
- ``var/lib/lstm-predictor/models/<bundle>``: the model bundles (the unit's
  ``StateDirectory=``, the config's ``models``).

Uninstall removes the unit and keeps configuration, models and caches; ``--purge``
removes those as well. Every step is planned before anything changes, so
``--dry-run`` prints exactly the plan, and a bad bundle stops the install before it starts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

import click

from .bundle import METADATA_FILE, BundleError, read_bundle

SERVICE = "lstm-predictor"
UNIT_FILE = f"{SERVICE}.service"
EXAMPLE_CONFIG = "config.example.toml"

# Locations on the target system; the unit (StateDirectory=, CacheDirectory=,
# ConfigurationDirectory=) and the example config name the same ones.
UNIT_PATH = PurePosixPath("/etc/systemd/system") / UNIT_FILE
CONFIG_DIR = PurePosixPath("/etc") / SERVICE
CONFIG_PATH = CONFIG_DIR / "config.toml"
STATE_DIR = PurePosixPath("/var/lib") / SERVICE
MODELS_DIR = STATE_DIR / "models"
CACHE_DIR = PurePosixPath("/var/cache") / SERVICE
# With DynamicUser=, systemd moves state and cache under private/ and leaves a symlink behind.
PRIVATE_DIRS = (PurePosixPath("/var/lib/private") / SERVICE, PurePosixPath("/var/cache/private") / SERVICE)

# The sandbox hides these from the service (ProtectHome=yes, PrivateTmp=yes): an
# executable or interpreter there would not be found when the unit starts.
HIDDEN_PREFIXES = ("/home", "/root", "/run/user", "/tmp", "/var/tmp")
# Characters that need no quoting or escaping in a systemd command line.
SAFE_EXEC = re.compile(r"[A-Za-z0-9_./+@-]+")


@dataclass(frozen=True)
class Step:
    """One line of the plan; ``run`` is None for a step that only informs."""

    verb: str
    target: str
    run: Callable[[], None] | None = None


def shipped_file(name: str) -> str:
    """The text of a file in ``systemd/``, installed as package data in every install mode."""
    return resources.files("lstm_predictor.systemd").joinpath(name).read_text(encoding="utf-8")


def default_models_dir() -> Path:
    """The ``models/`` folder of the source checkout this module runs from."""
    return Path(__file__).resolve().parents[1] / "models"


def default_executable() -> Path | None:
    """The ``lstm-predictor`` console script beside the running interpreter, else on PATH."""
    beside = Path(sys.executable).parent / SERVICE
    if beside.is_file():
        return beside
    found = shutil.which(SERVICE)
    return Path(found) if found else None


def render_unit(executable: PurePosixPath) -> str:
    """The shipped unit with ``ExecStart=`` running ``executable``."""
    unit = shipped_file(UNIT_FILE)
    rendered, count = re.subn(r"^ExecStart=\S+", f"ExecStart={executable}", unit, count=1, flags=re.MULTILINE)
    if count != 1:
        raise click.ClickException(f"the shipped {UNIT_FILE} has no ExecStart= line")
    return rendered


def check_executable(executable: Path, *, on_this_system: bool) -> None:
    """Refuse an executable the service could not run: not absolute, needing quoting in
    the unit, inside a directory the sandbox hides, or (when installing onto this
    system) missing, or with its interpreter inside a hidden directory."""
    if not executable.is_absolute() or not SAFE_EXEC.fullmatch(str(executable)):
        raise click.ClickException(f"--executable must be an absolute path of plain characters, got {str(executable)!r}")
    paths = [executable]
    if on_this_system:
        if not os.access(executable, os.X_OK):
            raise click.ClickException(f"{executable} is not an executable file; pass --executable PATH")
        paths += [executable.resolve(), *_interpreter(executable)]
    for path in paths:
        hidden = next((p for p in HIDDEN_PREFIXES if str(path) == p or str(path).startswith(p + "/")), None)
        if hidden:
            raise click.ClickException(
                f"{path} is under {hidden}, which the service's sandbox hides (ProtectHome=, PrivateTmp=): "
                f"install into a virtual environment made by a system Python, e.g. "
                f"/usr/bin/python3 -m venv /opt/{SERVICE}/venv, and run its bin/{SERVICE}"
            )


def _interpreter(script: Path) -> list[Path]:
    """The ``#!`` interpreter of a console script and where its symlinks lead."""
    with script.open("rb") as f:
        first = f.readline(4096)
    if not first.startswith(b"#!"):
        return []
    interpreter = Path(first[2:].decode(errors="replace").split()[0])
    return [interpreter, interpreter.resolve()]


def find_bundles(source: Path) -> list[Path]:
    """The bundle folders of ``source`` (or ``source`` itself if it is one), each validated
    with the daemon's own reader so that a broken bundle stops the install."""
    if not source.is_dir():
        raise click.ClickException(f"models directory {source} does not exist; pass --models DIR")
    folders = [source] if (source / METADATA_FILE).is_file() else sorted(
        p for p in source.iterdir() if (p / METADATA_FILE).is_file()
    )
    if not folders:
        raise click.ClickException(f"no model bundles in {source} (a bundle is a folder holding {METADATA_FILE}); pass --models DIR")
    for folder in folders:
        try:
            read_bundle(folder)
        except BundleError as exc:
            raise click.ClickException(str(exc)) from exc
    return folders


class Target:
    """Maps the target system's absolute paths below ``--root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, path: PurePosixPath) -> Path:
        return self.root / path.relative_to("/")


def systemctl_steps(args: list[str], root: Path | None) -> list[Step]:
    """``systemctl ARGS`` as a step, or a note saying why it is skipped."""
    shown = "systemctl " + " ".join(args)
    if root is not None:
        return [Step("skip", f"{shown} (--root given: not the running system)")]
    if shutil.which("systemctl") is None:
        return [Step("skip", f"{shown} (systemctl not found)")]
    if not Path("/run/systemd/system").is_dir():
        return [Step("skip", f"{shown} (systemd is not running on this system)")]
    return [Step("run", shown, lambda: _systemctl(args))]


def _systemctl(args: list[str]) -> None:
    result = subprocess.run(["systemctl", *args], check=False)
    if result.returncode != 0:
        raise click.ClickException(f"systemctl {' '.join(args)} failed with exit status {result.returncode}")


def install_plan(root: Path | None, models: Path, executable: PurePosixPath) -> list[Step]:
    at = Target(root or Path("/"))
    unit_text = render_unit(executable)
    steps = [Step("write", f"{at(UNIT_PATH)} (ExecStart={executable})", lambda: _write(at(UNIT_PATH), unit_text))]

    config = at(CONFIG_PATH)
    if config.exists():
        steps.append(Step("keep", f"{config} (exists; the example is not installed over it)"))
    else:
        example = shipped_file(EXAMPLE_CONFIG)
        steps.append(Step("write", f"{config} (from {EXAMPLE_CONFIG})", lambda: _write(config, example)))

    for bundle in find_bundles(models):
        dest = at(MODELS_DIR) / bundle.name
        steps.append(Step("copy", f"{bundle} -> {dest}", lambda src=bundle, dst=dest: _copy_bundle(src, dst)))
    return steps + systemctl_steps(["daemon-reload"], root)


def uninstall_plan(root: Path | None, purge: bool) -> list[Step]:
    at = Target(root or Path("/"))
    unit = at(UNIT_PATH)
    steps: list[Step] = []
    if unit.exists():
        steps += systemctl_steps(["disable", "--now", UNIT_FILE], root)
        steps.append(Step("remove", str(unit), unit.unlink))
        steps += systemctl_steps(["daemon-reload"], root)
    else:
        steps.append(Step("skip", f"{unit} (not installed)"))

    data = [at(CONFIG_DIR), at(STATE_DIR), at(CACHE_DIR), *(at(p) for p in PRIVATE_DIRS)]
    for path in data:
        if not (path.exists() or path.is_symlink()):
            continue
        if purge:
            steps.append(Step("remove", str(path), lambda p=path: _remove(p)))
        else:
            steps.append(Step("keep", f"{path} (--purge removes it)"))
    return steps


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    # Readable by the service's dynamic user whatever the installing shell's umask.
    path.chmod(0o644)


def _copy_bundle(source: Path, dest: Path) -> None:
    """Copy beside the old bundle, then swap, so a reload never sees half a bundle
    for longer than a rename."""
    dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.installing")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def execute(steps: list[Step], dry_run: bool) -> None:
    if dry_run:
        click.echo("dry run: nothing is changed")
    for step in steps:
        prefix = "would " if dry_run and step.run is not None else ""
        click.echo(f"  {prefix}{step.verb:<7} {step.target}")
        if step.run is not None and not dry_run:
            step.run()


def _require_privileges(root: Path | None, dry_run: bool) -> None:
    if root is None and not dry_run and os.geteuid() != 0:
        raise click.ClickException("installing onto this system needs root: run it with sudo, or pass --root DIR")


root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Treat DIR as the target system's / (a staging tree, an image); systemctl is not run.",
)
dry_run_option = click.option("--dry-run", is_flag=True, help="Print what would be done and change nothing.")


@click.group()
def service() -> None:
    """Install or uninstall the systemd service."""


@service.command()
@root_option
@dry_run_option
@click.option(
    "--models",
    type=click.Path(path_type=Path),
    default=default_models_dir,
    show_default="the source checkout's models/",
    help="A directory of model bundles (or one bundle) to copy into the service's state directory.",
)
@click.option(
    "--executable",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The lstm-predictor the unit runs. Default: the one of this environment.",
)
def install(root: Path | None, dry_run: bool, models: Path, executable: Path | None) -> None:
    """Install the unit, the example config (never over an existing one) and the models."""
    root = root.resolve() if root is not None else None
    _require_privileges(root, dry_run)
    if executable is None:
        executable = default_executable()
        if executable is None:
            raise click.ClickException(f"cannot find the {SERVICE} executable; pass --executable PATH")
    check_executable(executable, on_this_system=root is None)
    execute(install_plan(root, models.resolve(), PurePosixPath(executable)), dry_run)
    if dry_run:
        return
    if root is None:
        click.echo(f"next: systemctl enable --now {SERVICE}   (then: systemctl status {SERVICE}; journalctl -u {SERVICE} -f)")
    else:
        click.echo(f"next, on the system booted from {root}: systemctl daemon-reload && systemctl enable --now {SERVICE}")


@service.command()
@root_option
@dry_run_option
@click.option("--purge", is_flag=True, help="Also remove the configuration, the models and the caches.")
def uninstall(root: Path | None, dry_run: bool, purge: bool) -> None:
    """Stop and remove the unit; keep configuration and data unless --purge."""
    root = root.resolve() if root is not None else None
    _require_privileges(root, dry_run)
    execute(uninstall_plan(root, purge), dry_run)
