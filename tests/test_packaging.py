"""The distribution installs every package the source tree has (the Docker image: test_docker.py)."""

from __future__ import annotations

import configparser

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
