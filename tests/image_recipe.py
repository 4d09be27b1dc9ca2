"""The Dockerfile as BuildKit reads it, for tests that follow the image's recipe without a
Docker engine.

The instructions come from BuildKit's own parser (the ``dockerfile`` package). This module
answers what the image is made of and runs with:

* :func:`stages`: the build stages by name, build arguments substituted in ``FROM``;
* :func:`image_env`, :func:`healthcheck`, :func:`entrypoint`, :func:`stop_signal`: the final image's;
* :func:`lay_out`: a stage's files as its ``COPY`` instructions place them (from the build
  context less what ``.dockerignore`` leaves out, or from another stage), under a folder
  standing for the stage's ``/``;
* :func:`script_step`: a ``RUN`` step that runs a script, with its ``--mount`` paths resolved.

``RUN`` steps are not interpreted: a test runs the script a step names, with its arguments.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

import dockerfile

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ROOT = PurePosixPath("/")


@dataclass(frozen=True)
class Stage:
    name: str
    base: str  # FROM's image or stage name, build arguments substituted
    instructions: tuple[dockerfile.Command, ...]

    def commands(self, cmd: str) -> list[dockerfile.Command]:
        return [c for c in self.instructions if c.cmd == cmd]


def _arg(command: dockerfile.Command) -> tuple[str, str | None]:
    name, _, default = command.value[0].partition("=")
    return name, default if "=" in command.value[0] else None


@cache
def global_args() -> dict[str, str | None]:
    """The ``ARG``s before the first ``FROM``, with their defaults: what ``FROM`` lines may use."""
    args: dict[str, str | None] = {}
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            break
        if command.cmd == "ARG":
            args.update([_arg(command)])
    return args


def substitute(text: str, args: dict[str, str | None]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]] or "", text)


@cache
def stages() -> dict[str, Stage]:
    """Every stage by name (``AS`` name, else its index), in the Dockerfile's order."""
    result: dict[str, Stage] = {}
    name = base = None
    body: list[dockerfile.Command] = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            if name is not None:
                result[name] = Stage(name, base, tuple(body))
            image, *alias = command.value
            name = alias[1] if len(alias) == 2 and alias[0].upper() == "AS" else str(len(result))
            base, body = substitute(image, global_args()), []
        elif name is not None:
            body.append(command)
    result[name] = Stage(name, base, tuple(body))
    return result


def final_stage() -> Stage:
    return list(stages().values())[-1]


def _one(cmd: str) -> dockerfile.Command:
    [command] = final_stage().commands(cmd)
    return command


def image_env() -> dict[str, str]:
    """The final stage's ``ENV`` values, as a container of the image starts with them."""
    env: dict[str, str] = {}
    for command in final_stage().commands("ENV"):
        pairs = command.value
        env.update(zip(pairs[::2], pairs[1::2]))
    return env


def _argv(command: dockerfile.Command, words: tuple[str, ...]) -> list[str]:
    # Shell form runs under the default SHELL, as Docker runs it.
    return list(words) if command.json else ["/bin/sh", "-c", " ".join(words)]


def healthcheck() -> list[str]:
    command = _one("HEALTHCHECK")
    kind, *words = command.value
    assert kind == "CMD", command.original
    return _argv(command, tuple(words))


def entrypoint() -> list[str]:
    """ENTRYPOINT followed by CMD: what ``docker run IMAGE`` starts."""
    command = _one("ENTRYPOINT")
    default = final_stage().commands("CMD")
    return _argv(command, command.value) + (_argv(default[0], default[0].value) if default else [])


def stop_signal() -> str:
    return _one("STOPSIGNAL").value[0]


# -- files -------------------------------------------------------------------------------------


@cache
def _ignore_patterns() -> tuple[re.Pattern[str], ...]:
    patterns = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not modelled here"
        regex = re.escape(line.strip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append(re.compile(regex))
    return tuple(patterns)


def ignored(path: str | PurePosixPath) -> bool:
    """Whether ``.dockerignore`` keeps this context path (or a folder holding it) from the builder."""
    path = PurePosixPath(path)
    candidates = [path, *list(path.parents)[:-1]]
    return any(p.fullmatch(str(c)) for p in _ignore_patterns() for c in candidates)


def context_files(source: str) -> list[PurePosixPath]:
    """The context paths a ``COPY`` or mount of ``source`` sends: what exists and is not ignored."""
    path = REPO / source
    found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [rel for rel in (PurePosixPath(p.relative_to(REPO).as_posix()) for p in found) if not ignored(rel)]


def _flag(command: dockerfile.Command, name: str) -> str | None:
    for flag in command.flags:
        key, _, value = flag.partition("=")
        if key == f"--{name}":
            return value
    return None


def host_path(root: Path, path: PurePosixPath | str) -> Path:
    """Where a path of the stage whose ``/`` is ``root`` lies on this machine."""
    return root.joinpath(*PurePosixPath(path).relative_to(ROOT).parts)


def stage_root(root: Path, stage: str) -> Path:
    """The folder standing for another stage's ``/``, beside ``root``."""
    return root.with_name(f"{root.name}.{stage}")


def lay_out(name: str, root: Path) -> Path:
    """Place the files of stage ``name`` (its base stage's first) under ``root``, as its COPYs do."""
    stage = stages()[name]
    if stage.base in stages():
        lay_out(stage.base, root)
    root.mkdir(parents=True, exist_ok=True)
    workdir = ROOT
    for command in stage.instructions:
        if command.cmd == "WORKDIR":
            workdir = workdir / command.value[0]
        elif command.cmd == "COPY":
            *sources, dest = command.value
            into_folder = dest.endswith("/") or len(sources) > 1
            target = host_path(root, workdir / dest)
            other = _flag(command, "from")
            for source in sources:
                if other is not None:
                    source_root = lay_out(other, stage_root(root, other))
                    _copy(host_path(source_root, source), target / PurePosixPath(source).name if into_folder else target)
                    continue
                files = context_files(source)
                assert files, f"COPY {source}: nothing in the build context"
                for rel in files:
                    inside = rel.relative_to(source) if (REPO / source).is_dir() else PurePosixPath(rel.name)
                    destination = target / inside if (REPO / source).is_dir() or into_folder else target
                    _copy(REPO / rel, destination)
    return root


def _copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, destination, dirs_exist_ok=True)
    else:
        shutil.copy2(source, destination)


@dataclass(frozen=True)
class ScriptStep:
    """One ``sh SCRIPT ARGS`` command of a ``RUN`` step."""

    assignments: dict[str, str]  # VAR=value words before the command
    argv: list[str]  # ["sh", script, *args], paths as the stage sees them, variables unexpanded
    words: list[str]  # the same words as written, quotes kept (see expand)
    workdir: PurePosixPath
    mounts: dict[PurePosixPath, tuple[str | None, str]]  # target -> (from stage or None: context, source)


def script_step(stage: str, script: str) -> ScriptStep:
    """The command of ``stage`` that runs ``script`` (a file name such as ``install-runtime.sh``)."""
    workdir = ROOT
    for command in stages()[stage].instructions:
        if command.cmd == "WORKDIR":
            workdir = workdir / command.value[0]
        if command.cmd != "RUN":
            continue
        for part in re.split(r"&&|;", command.value[0]):
            words = shlex.split(part)
            cut = next((i for i, w in enumerate(words) if "=" not in w), len(words))
            argv = words[cut:]
            if len(argv) >= 2 and argv[0] == "sh" and PurePosixPath(argv[1]).name == script:
                written = shlex.split(part, posix=False)[cut:]
                assignments = dict(w.split("=", 1) for w in words[:cut])
                mounts = {}
                for flag in command.flags:
                    if flag.startswith("--mount="):
                        options = dict(o.split("=", 1) for o in flag.removeprefix("--mount=").split(","))
                        assert options.get("type", "bind") == "bind", flag
                        mounts[PurePosixPath(options["target"])] = (options.get("from"), options.get("source", "."))
                return ScriptStep(assignments, argv, written, workdir, mounts)
    raise AssertionError(f"no RUN step of stage {stage} runs {script}")


def expand(step: ScriptStep, args: dict[str, str | None]) -> list[str]:
    """The step's words with build arguments expanded as the shell does: a quoted word stays
    one word, an unquoted variable splits into words (none when empty)."""
    expanded: list[str] = []
    for word in step.words:
        if word[0] == word[-1] == '"':
            expanded.append(substitute(word[1:-1], args))
        elif "$" in word:
            expanded.extend(substitute(word, args).split())
        else:
            expanded.append(word)
    return expanded


def resolve(step: ScriptStep, path: str, stage_dir: Path, roots: dict[str, Path]) -> Path:
    """Where ``path``, as the step's stage sees it, lies here: in a mount (the context or
    another stage's laid-out root) or else in the stage's own ``stage_dir``."""
    pure = step.workdir / path
    for target, (other, source) in step.mounts.items():
        if pure == target or target in pure.parents:
            inside = pure.relative_to(target)
            base = REPO / source if other is None else host_path(roots[other], ROOT / source)
            return base.joinpath(*inside.parts)
    return host_path(stage_dir, pure)
