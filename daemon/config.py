"""The daemon's configuration: one table of options, four sources, one precedence.

Every option can be given as a command-line flag, an environment variable
``LSTM_PREDICTOR_<NAME>`` or a top-level key of a TOML file (``--config FILE``
or ``LSTM_PREDICTOR_CONFIG``); the first of flag > environment > file >
default that sets it wins. Values from all sources go through the same parser,
so ``port = "80"`` in the file and ``--port 80`` mean the same thing and a bad
value is reported with where it came from.

The service this daemon replaces was configured by ``MODEL_PATH``,
``METADATA_PATH`` and ``LOOK_BACK``; those keep working (see
:func:`_legacy`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_PREFIX = "LSTM_PREDICTOR_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
SYSTEM_MODELS_DIR = Path("/var/lib/lstm-predictor/models")
LOG_LEVELS = ("debug", "info", "warning", "error")
VARIANTS = ("fp32", "int8")
KERAS_SUFFIXES = (".keras", ".h5")
LOOPBACK_NAMES = ("localhost",)
MIN_TOKEN_LENGTH = 16


class ConfigError(Exception):
    """A setting that cannot be used; the message names the setting and where it came from."""


def default_models_dir() -> Path:
    """The repository's ``models/`` in a source checkout, else the system location."""
    from lstm_predictor import daemon

    repo_models = Path(daemon.__file__).resolve().parents[1] / "models"
    return repo_models if repo_models.is_dir() else SYSTEM_MODELS_DIR


# -- parsers: each takes a string (flag, environment) or a TOML value ----------------------------


def _int(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"expected an integer, got {value!r}")
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}, got {number}")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be at most {maximum}, got {number}")
        return number

    return parse


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not number > 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    if math.isinf(number):  # an endless timeout or drain would let one hung fetch or request hang the daemon
        raise ValueError(f"must be a finite number of seconds, got {value!r}")
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value.strip()


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(value).lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def _path(value: Any) -> Path:
    return Path(_text(value)).expanduser()


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"expected true or false (or 1/0, yes/no), got {value!r}")


def _origins(value: Any) -> tuple[str, ...]:
    """Browser origins (``https://app.example.com``, ``http://localhost:3000``) or ``*``, as a
    comma-separated string or a TOML list; an empty string is none (CORS off)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
        raise ValueError(f"expected comma-separated origins, got {value!r}")
    origins = []
    for item in (item.strip() for item in items):
        if not item:
            continue
        if item != "*":
            # An Origin header is scheme://host[:port] and nothing else; a path here would
            # silently never match, so it is refused instead.
            scheme, sep, rest = item.partition("://")
            if scheme not in ("http", "https") or not sep or not rest.rstrip("/") or "/" in rest.rstrip("/"):
                raise ValueError(f"{item!r} is not an origin like https://app.example.com or http://localhost:3000")
            item = item.rstrip("/").lower()
        origins.append(item)
    return tuple(dict.fromkeys(origins))


def _market_data(value: Any) -> str:
    """``yfinance`` or a directory of ``<SYMBOL>.csv`` files (checked to exist)."""
    text = _text(value)
    if text.lower() == "yfinance":
        return "yfinance"
    path = Path(text).expanduser()
    if not path.is_dir():
        raise ValueError(f"{text!r} is neither 'yfinance' nor an existing directory of <SYMBOL>.csv files")
    return str(path.resolve())


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[Any], Any]
    help: str
    metavar: str = "TEXT"
    is_flag: bool = False  # a command-line switch (--x / --no-x); a value elsewhere

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("host", _text, "Address to listen on."),
    Option("port", _int(0, 65535), "TCP port to listen on (0: any free port).", "INTEGER"),
    Option("models", _path, "Models directory (one bundle per folder), or a single bundle folder.", "DIR"),
    Option("market_data", _market_data, "'yfinance', or a directory of <SYMBOL>.csv files.", "yfinance|DIR"),
    Option("cache_dir", _path, "Where the yfinance source keeps its on-disk cache (default: none).", "DIR"),
    Option("log_level", _choice(*LOG_LEVELS), "Log level.", "|".join(LOG_LEVELS)),
    Option("max_batch_size", _int(1), "Most windows the batcher puts in one inference run.", "INTEGER"),
    Option("max_queue_delay_us", _int(0), "Longest a queued request waits for its batch to fill, in microseconds.",
           "INTEGER"),
    Option("max_queue_size", _int(1), "Most requests queued per model before answering 503.", "INTEGER"),
    Option("variant", _choice(*VARIANTS), "Model variant; int8 only where a bundle's accuracy gate passed.",
           "|".join(VARIANTS)),
    Option("max_body_bytes", _int(1024), "Largest request body accepted; larger is a 413.", "INTEGER"),
    Option("default_model", _text, "Model answering requests that name no symbol (default: first by name).", "NAME"),
    Option("market_data_ttl", _seconds, "Seconds fetched closes are reused before asking the source again.",
           "SECONDS"),
    Option("market_data_timeout", _seconds, "Seconds a market-data fetch may take before it counts as failed.",
           "SECONDS"),
    Option("drain_timeout", _seconds, "Seconds a shutdown waits for in-flight requests.", "SECONDS"),
    Option("idle_timeout", _seconds, "Seconds a connection may take to send a complete request head, "
           "first or kept-alive, before it is closed.", "SECONDS"),
    Option("body_timeout", _seconds, "Seconds a request body may take to arrive; slower is a 408.", "SECONDS"),
    Option("allow_remote", _bool, "Allow listening on a non-loopback address without a token file.",
           is_flag=True),
    Option("token_file", _path, "File holding the bearer token every route but /health, /v2/health/live "
           "and /metrics requires.", "FILE"),
    Option("metrics_auth", _bool, "/metrics requires the bearer token too.", is_flag=True),
    Option("cors_origins", _origins, "Comma-separated browser origins allowed to call the API (default: "
           "none, CORS off).", "ORIGINS"),
)
OPTION_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8000
    models: Path = field(default_factory=default_models_dir)
    market_data: str = "yfinance"
    cache_dir: Path | None = None
    log_level: str = "info"
    max_batch_size: int = 32
    max_queue_delay_us: int = 200
    max_queue_size: int = 1024
    variant: str = "fp32"
    max_body_bytes: int = 1 << 20
    default_model: str | None = None
    market_data_ttl: float = 300.0
    market_data_timeout: float = 10.0
    drain_timeout: float = 30.0
    # Above a 15 s Prometheus scrape interval, so a scraper's kept-alive connection is reused
    # rather than closed just as the next scrape is sent on it.
    idle_timeout: float = 30.0
    body_timeout: float = 10.0
    allow_remote: bool = False
    token_file: Path | None = None
    metrics_auth: bool = False
    cors_origins: tuple[str, ...] = ()
    # The content of token_file, read once at start; kept out of repr() so it is never logged.
    token: str | None = field(default=None, repr=False, compare=False)
    # From the legacy METADATA_PATH / LOOK_BACK: what every served bundle must agree with.
    expect_look_back: int | None = None
    expect_symbol: str | None = None
    # Where each setting came from ("flag", "env LSTM_PREDICTOR_PORT", "file /etc/...", "default").
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)


def load_config(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                config_file: Path | None = None) -> Config:
    """Resolve every option by precedence: flag > environment > config file > default.

    ``flags`` holds the command-line values, ``None`` for a flag not given.
    ``config_file`` is ``--config``; without it ``LSTM_PREDICTOR_CONFIG`` names the file.
    """
    env = os.environ if environ is None else environ
    if config_file is None and env.get(CONFIG_ENV):
        config_file = Path(env[CONFIG_ENV]).expanduser()
    file_values = _read_config_file(config_file) if config_file is not None else {}

    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for option in OPTIONS:
        for origin, raw in (
            ("flag " + option.flag, flags.get(option.name)),
            ("environment " + option.env, env.get(option.env)),
            (f"config file {config_file} key {option.name!r}", file_values.get(option.name)),
        ):
            if raw is None:
                continue
            try:
                values[option.name] = option.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{origin}: {exc}") from None
            origins[option.name] = origin
            break
        else:
            origins[option.name] = "default"
    config = Config(**values, origins=origins)
    return _check_access(_legacy(config, env))


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # TOML is UTF-8 text
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(OPTION_BY_NAME))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(OPTION_BY_NAME)}"
        )
    return data


def is_loopback(host: str) -> bool:
    """Whether ``host`` serves this machine only: 127.0.0.0/8, ::1 or ``localhost``. Any other
    name may resolve to a public address, so it counts as remote."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_access(config: Config) -> Config:
    """Read the token file, and refuse to serve beyond this machine unprotected by mistake."""
    if config.token_file is not None:
        config = dataclasses.replace(config, token=read_token(config.token_file, config.origins["token_file"]))
    elif config.metrics_auth:
        raise ConfigError(f"{config.origins['metrics_auth']}: metrics_auth needs a token_file to check against")
    if not is_loopback(config.host) and not config.allow_remote and config.token is None:
        raise ConfigError(
            f"{config.origins['host']}: refusing to listen on non-loopback address {config.host!r} without "
            "protection; set a token file (--token-file FILE) or allow open remote access (--allow-remote)"
        )
    return config


def read_token(path: Path, origin: str) -> str:
    """The bearer token: the file's content without surrounding whitespace.

    Refused when unreadable, empty, too short to resist guessing, or not one line of
    printable ASCII (what an ``Authorization`` header can carry). A file others may read
    is allowed (container secrets are often mode 0444) but warned about at start.
    """
    try:
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not ASCII text"
        raise ConfigError(f"{origin}: the token file {path} cannot be read ({reason})") from None
    if len(token) < MIN_TOKEN_LENGTH or not all("!" <= char <= "~" for char in token):
        raise ConfigError(
            f"{origin}: the token file {path} must hold one token of at least {MIN_TOKEN_LENGTH} printable "
            "characters without spaces (e.g. the output of: openssl rand -hex 32)"
        )
    return token


def token_file_exposure(path: Path) -> str | None:
    """A warning when users other than the owner may read the token file, else None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return f"the token file {path} is readable by other users (mode {stat.filemode(mode)}); chmod 600 it"
    return None


def _legacy(config: Config, env: Mapping[str, str]) -> Config:
    """Apply the old service's ``MODEL_PATH``, ``METADATA_PATH`` and ``LOOK_BACK``.

    ``MODEL_PATH`` named a ``.keras`` file; the daemon serves ONNX bundles, so it
    may now name a bundle folder or the ``model.onnx`` inside one. A Keras file
    is refused with the command that converts it, rather than silently serving
    something else. ``LOOK_BACK`` and the old metadata file's ``look_back`` and
    ``symbol`` become checks the loaded bundles must pass.
    """
    changes: dict[str, Any] = {}
    origins = dict(config.origins)

    model_path = env.get("MODEL_PATH")
    if model_path:
        if origins["models"] != "default":
            raise ConfigError(
                f"MODEL_PATH={model_path} and {origins['models']} both name the models; set only one"
            )
        changes["models"] = _legacy_bundle_dir(Path(model_path).expanduser())
        origins["models"] = "environment MODEL_PATH"

    look_back = env.get("LOOK_BACK")
    if look_back:
        try:
            changes["expect_look_back"] = _int(2)(look_back)
        except ValueError as exc:
            raise ConfigError(f"environment LOOK_BACK: {exc}") from None

    metadata_path = env.get("METADATA_PATH")
    if metadata_path:
        meta = _read_legacy_metadata(Path(metadata_path).expanduser())
        meta_look_back = meta.get("look_back")
        if meta_look_back is not None:
            expected = changes.get("expect_look_back")
            if expected is not None and expected != meta_look_back:
                raise ConfigError(
                    f"LOOK_BACK={expected} disagrees with METADATA_PATH={metadata_path} (look_back {meta_look_back})"
                )
            changes["expect_look_back"] = meta_look_back
        if isinstance(meta.get("symbol"), str):
            changes["expect_symbol"] = meta["symbol"]

    if not changes:
        return config
    return dataclasses.replace(config, **changes, origins=origins)


def _legacy_bundle_dir(path: Path) -> Path:
    if path.suffix.lower() in KERAS_SUFFIXES:
        raise ConfigError(
            f"MODEL_PATH={path} is a Keras model; this daemon serves ONNX model bundles. Convert it once with\n"
            f"  lstm-predictor convert {path} --out models/<SYMBOL> --metadata model_metadata.json\n"
            "(needs the train extra: pip install 'lstm-predictor[train]'), then set MODEL_PATH to that folder "
            "or use --models"
        )
    if path.suffix.lower() == ".onnx":
        path = path.parent
    if not (path / "metadata.json").is_file():
        raise ConfigError(f"MODEL_PATH={path} is not a model bundle (a folder with model.onnx and metadata.json)")
    return path


def _read_legacy_metadata(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise ConfigError(f"METADATA_PATH={path}: cannot be read as JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"METADATA_PATH={path}: must hold a JSON object")
    look_back = meta.get("look_back")
    if look_back is not None and (isinstance(look_back, bool) or not isinstance(look_back, int)):
        raise ConfigError(f"METADATA_PATH={path}: look_back {look_back!r} is not an integer")
    return meta
