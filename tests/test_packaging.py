"""The distribution installs every package the source tree has, and the image builds from files that exist."""

from __future__ import annotations

import configparser
import re

from conftest import REPO


def declared() -> tuple[set[str], dict[str, str]]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    packages = set(cfg["options"]["packages"].split())
    dirs = dict(
        (k.strip(), v.strip()) for k, v in (line.split("=") for line in cfg["options"]["package_dir"].strip().splitlines())
    )
    return packages, dirs


def test_every_source_package_is_declared_in_setup_cfg() -> None:
    packages, dirs = declared()
    found = set()
    for name, folder in dirs.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == packages


def test_dockerfile_copies_only_paths_that_exist_and_installs_no_training_extra() -> None:
    text = (REPO / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+(?: \S+)*) \S+$", text, flags=re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which does not exist"
    runtime_stage = text.split("\nFROM ")[-1]
    assert "[train]" not in runtime_stage and "tensorflow" not in runtime_stage.lower()
