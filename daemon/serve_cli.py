"""``lstm-predictor serve``: run the HTTP daemon.

The flags are generated from the one option table in
:mod:`lstm_predictor.daemon.config`, so a flag, its environment variable and
its config-file key can never drift apart.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .config import (
    CONFIG_ENV,
    OPTIONS,
    Config,
    ConfigError,
    load_config,
    token_file_exposure,
)
from .logs import configure_logging

log = logging.getLogger("lstm_predictor.daemon")

EXIT_STARTUP_FAILED = 1
EXIT_BAD_CONFIG = 2


def raise_open_file_limit() -> None:
    """Raise the soft limit on open files to the hard limit. Every connection, idle or not,
    holds a descriptor until idle_timeout closes it; at the usual soft limit of 1024 a burst
    of idle clients would make accept() fail and starve every other client, while the hard
    limit (LimitNOFILE= in the systemd unit) is what the administrator actually allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit the kernel caps lower
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)


def _option_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    defaults = Config()
    for option in reversed(OPTIONS):
        default = getattr(defaults, option.name)
        shown = "" if default in (None, ()) else f"default: {default}; "
        text = f"{option.help} [{shown}env: {option.env}]"
        # default=None: a flag not given must not hide the environment or the config file.
        if option.is_flag:
            negative = "--no-" + option.flag.removeprefix("--")
            command = click.option(f"{option.flag}/{negative}", option.name, default=None, help=text)(command)
        else:
            command = click.option(option.flag, option.name, default=None, metavar=option.metavar,
                                   help=text)(command)
    return command


@click.command()
# A plain path, unchecked by click: the config loader reports a file it cannot read (missing, a
# directory) in its one configuration-error line, instead of click's usage message.
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help=f"TOML file with any of the options below as top-level keys [env: {CONFIG_ENV}].")
@_option_flags
def serve(config_file: Path | None, **flags: str | None) -> None:
    """Serve the model bundles over HTTP (flag > environment > config file > default)."""
    try:
        config = load_config(flags, config_file=config_file)
    except ConfigError as exc:
        click.echo(f"lstm-predictor serve: configuration error: {exc}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    configure_logging(config.log_level)
    warning = config.token_file and token_file_exposure(config.token_file)
    if warning:
        log.warning("%s", warning)
    raise_open_file_limit()
    # Until the daemon handles SIGHUP itself, a reload request must not kill it (the default
    # action); ignoring it loses nothing, as no model has been read yet.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Imported here so that --help and configuration errors stay instant.
    from .server import StartupError
    from .server import serve as run

    try:
        asyncio.run(run(config))
    except StartupError as exc:
        click.echo(f"lstm-predictor serve: {exc}", err=True)
        sys.exit(EXIT_STARTUP_FAILED)
