"""``lstm-predictor train`` and ``lstm-predictor evaluate``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shlex
import sys
from pathlib import Path
from typing import Any

import click
from lstm_predictor.daemon.bundle import (
    REPORT_DIR,
    Bundle,
    BundleError,
    read_bundle,
    write_metadata,
)
from lstm_predictor.daemon.market_data import (
    MarketDataError,
    PriceSeries,
    require_length,
)
from lstm_predictor.daemon.windows import RULES

from .config import ModelConfig
from .data import DEFAULT_CACHE, DataSpec, load, spec_from_metadata
from .report import metrics_table, verdict, write_report
from .splits import Splits, split_by_dates, split_by_fraction

DATE = click.DateTime(formats=["%Y-%m-%d"])
# --quick: a tiny model for a smoke run (tests, trying the pipeline); never for a shipped bundle.
QUICK = {"lstm_units": (16, 8), "dense_units": 8, "epochs": 2, "patience": 1}


def _date(value: dt.datetime | None) -> dt.date | None:
    return None if value is None else value.date()


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers") from None


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise click.BadParameter(f"{text!r}: expected three fractions such as 0.7,0.15,0.15")
    return values  # type: ignore[return-value]


def _split_adjust(text: str) -> str | tuple[dt.date, ...]:
    if text in ("auto", "none"):
        return text
    try:
        return tuple(dt.date.fromisoformat(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected auto, none or dates YYYY-MM-DD[,YYYY-MM-DD...]") from None


def _command(name: str) -> str:
    """The command line as a person would retype it (``sys.argv`` holds the subcommand's arguments)."""
    return shlex.join(["lstm-predictor", name, *sys.argv[2:]])


def _echo(line: str) -> None:
    click.echo(line, err=True)


def _print_scores(metrics: dict[str, Any]) -> None:
    click.echo(metrics_table(metrics))
    click.echo("")
    click.echo(verdict(metrics))


@click.command()
@click.option("--symbol", required=True, help="Ticker, e.g. PETR4.SA.")
@click.option("--csv", "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Price CSV (default: download with yfinance).")
@click.option("--start", type=DATE, help="First date to use (inclusive).")
@click.option("--end", type=DATE, help="Last date to use (inclusive).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Bundle folder to write.")
@click.option("--adjusted/--unadjusted", default=True, show_default=True, help="Adj Close (CSV) / auto_adjust=True (yfinance), or raw closes.")
@click.option("--scale", type=float, default=1.0, show_default=True, help="Multiply every close by this constant (R$ metrics only; ratios are unchanged).")
@click.option("--split-adjust", "split_adjust", default="auto", show_default=True, help="Back-adjust split-like jumps of unadjusted closes: auto, none, or DATE[,DATE...].")
@click.option("--split", "fractions", default="0.7,0.15,0.15", show_default=True, help="Train,validation,test fractions of the rows.")
@click.option("--validation-start", type=DATE, help="Split by dates instead: first validation target date (with --test-start).")
@click.option("--test-start", type=DATE, help="First test target date (with --validation-start).")
@click.option("--look-back", type=int, default=60, show_default=True)
@click.option("--normalisation", type=click.Choice(RULES), default="window_first", show_default=True)
@click.option("--head", type=click.Choice(["free", "persistence"]), default="free", show_default=True, help="persistence: start from 'tomorrow = today' (window_last only).")
@click.option("--lstm-units", default="128,64", show_default=True, help="Units of each stacked LSTM layer.")
@click.option("--dense-units", type=int, default=32, show_default=True, help="0 = no hidden Dense layer.")
@click.option("--dropout", type=float, default=0.25, show_default=True)
@click.option("--recurrent-dropout", type=float, default=0.1, show_default=True)
@click.option("--l2", type=float, default=5e-4, show_default=True)
@click.option("--batch-norm/--no-batch-norm", default=True, show_default=True)
@click.option("--learning-rate", type=float, default=1e-3, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--epochs", type=int, default=150, show_default=True)
@click.option("--patience", type=int, default=15, show_default=True, help="Early-stopping patience (learning-rate reduction: a third of it).")
@click.option("--monitor", type=click.Choice(["val_huber", "val_loss"]), default="val_huber", show_default=True, help="Validation quantity for early stopping (val_loss includes the L2 penalty).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="TensorFlow CPU threads.")
@click.option("--int8/--no-int8", default=True, show_default=True, help="Also write model.int8.onnx (served only if it passes its accuracy gate on validation data).")
@click.option("--report/--no-report", default=True, show_default=True, help="Write the report into --out/report/.")
@click.option("--quick", is_flag=True, help="A tiny model and 2 epochs: a smoke run of the whole pipeline.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def train(
    symbol: str, csv_file: Path | None, start: dt.datetime | None, end: dt.datetime | None, out_dir: Path,
    adjusted: bool, scale: float, split_adjust: str, fractions: str, validation_start: dt.datetime | None,
    test_start: dt.datetime | None, look_back: int, normalisation: str, head: str, lstm_units: str, dense_units: int,
    dropout: float, recurrent_dropout: float, l2: float, batch_norm: bool, learning_rate: float, batch_size: int,
    epochs: int, patience: int, monitor: str, seed: int, threads: int, int8: bool, report: bool, quick: bool, force: bool,
) -> None:
    """Train an LSTM on daily closes, convert it to ONNX, score it and write a bundle to --out."""
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise click.ClickException(f"{out_dir} exists and is not empty; pass --force to replace it")
    if (validation_start is None) != (test_start is None):
        raise click.UsageError("--validation-start and --test-start go together")
    try:
        config = ModelConfig(
            look_back=look_back, normalisation=normalisation, lstm_units=_ints(lstm_units), dense_units=dense_units,  # type: ignore[arg-type]
            dropout=dropout, recurrent_dropout=recurrent_dropout, l2=l2, batch_norm=batch_norm, head=head,  # type: ignore[arg-type]
            learning_rate=learning_rate, batch_size=batch_size, epochs=epochs, patience=patience,
            monitor=monitor, seed=seed,  # type: ignore[arg-type]
        )
        if quick:
            config = dataclasses.replace(config, **QUICK)
        spec = DataSpec(
            symbol=symbol, csv=csv_file, start=_date(start), end=_date(end), adjusted=adjusted, scale=scale,
            split_adjust=_split_adjust(split_adjust),  # type: ignore[arg-type]
        )
        loaded = load(spec)
        series = require_length(loaded.series, look_back + 3, f"training with a look-back of {look_back}")
        if validation_start is not None:
            splits = split_by_dates(series, look_back, _date(validation_start), _date(test_start))  # type: ignore[arg-type]
        else:
            splits = split_by_fraction(series, look_back, _fractions(fractions))
    except (MarketDataError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for name, info in splits.describe(series.dates).items():
        _echo(f"{name:>10}: {info['targets']:>5} targets {info['start']} .. {info['end']} (inputs from {info['inputs_from']})")
    for row in series.dropped:
        _echo(f"dropped {row.date}: {row.reason}")
    for adj in loaded.adjustments:
        _echo(f"back-adjusted {adj.date}: closes before it x {adj.factor:.6f} ({adj.reason})")

    # TensorFlow is imported only now: argument and data errors above come back at once.
    from lstm_predictor.convert.keras_model import ConversionError
    from lstm_predictor.convert.keras_to_onnx import convert_model

    from .evaluation import metrics_of, predict_parts
    from .fit import fit

    train_w = splits.windows(series.closes, splits.train, config.normalisation)
    val_w = splits.windows(series.closes, splits.validation, config.normalisation)
    _echo(f"training on {len(train_w)} windows, validating on {len(val_w)} ({config.normalisation}, head {config.head})")
    result = fit(config, train_w, val_w, threads=threads, echo=_echo)
    _echo(f"kept the weights of epoch {result.best_epoch} ({config.monitor} {result.best_score:.4e}); converting ...")

    data_meta = {**loaded.metadata(), "splits": splits.describe(series.dates)}
    training_meta = {
        "config": config.to_dict(),
        "quick": quick,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_score": result.best_score,
        "history": result.history,
        "command": _command("train"),
    }
    # Parity and the int8 gate run on the real validation windows (never on test days).
    raw_val_windows = val_w.x[:, :, 0].astype("float64") * val_w.refs[:, None]
    try:
        bundle = convert_model(
            result.model, out_dir, symbol=symbol, normalisation=config.normalisation,
            extra_metadata={"data": data_meta, "training": training_meta},
            parity_windows=raw_val_windows, gate_targets=series.closes[val_w.targets], int8=int8, overwrite=force,
        )
    except ConversionError as exc:
        raise click.ClickException(str(exc)) from exc

    results = predict_parts(bundle, series, splits)
    metrics = metrics_of(results)
    bundle = _record_metrics(bundle, metrics)
    if report:
        write_report(bundle.path / REPORT_DIR, bundle, series, results, metrics, command=_command("train"))
    _print_scores(metrics)
    click.echo(f"\nbundle: {bundle.path}")


def _record_metrics(bundle: Bundle, metrics: dict[str, Any]) -> Bundle:
    write_metadata(bundle.path, {**bundle.metadata, "metrics": metrics})
    return read_bundle(bundle.path)


def _splits_of(bundle: Bundle, series: PriceSeries) -> Splits:
    recorded = (bundle.metadata.get("data") or {}).get("splits") or {}
    try:
        validation = dt.date.fromisoformat(recorded["validation"]["start"])
        test = dt.date.fromisoformat(recorded["test"]["start"])
    except (KeyError, TypeError, ValueError):
        raise click.ClickException(f"{bundle.path}: metadata.json records no validation/test split dates") from None
    return split_by_dates(series, bundle.look_back, validation, test)


@click.command()
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--csv", "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The price CSV the bundle was trained from.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), help="Write the Markdown report and its figures here.")
@click.option(
    "--candidate", "candidate_dirs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Other bundles trained on the same data: listed with their validation scores in the report's model selection section.",
)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_CACHE, show_default=True, help="yfinance cache.")
def evaluate(bundle_dir: Path, csv_file: Path | None, report_dir: Path | None, candidate_dirs: tuple[Path, ...], cache_dir: Path) -> None:
    """Score BUNDLE_DIR's ONNX model on its train/validation/test splits beside the persistence baseline."""
    from .evaluation import metrics_of, predict_parts

    try:
        bundle = read_bundle(bundle_dir)
        candidates = [read_bundle(d) for d in candidate_dirs]
        loaded = load(spec_from_metadata(dict(bundle.metadata), bundle.symbol, csv_file, cache_dir))
        splits = _splits_of(bundle, loaded.series)
        results = predict_parts(bundle, loaded.series, splits)
    except (BundleError, MarketDataError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    metrics = metrics_of(results)
    _print_scores(metrics)
    if report_dir is not None:
        path = write_report(report_dir, bundle, loaded.series, results, metrics, candidates, command=_command("evaluate"))
        click.echo(f"\nreport: {path}")
