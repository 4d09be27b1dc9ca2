"""``lstm-predictor predict``: one prediction from a bundle, offline, no daemon, no TensorFlow.

It prints the same JSON as ``POST /predict`` (the same code builds both), so a
result can be checked against a running daemon or scripted without one.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import click
import msgspec
import numpy as np

from .bundle import BundleError, read_bundle
from .config import VARIANTS
from .engine import Engine
from .market_data import CsvFileSource, MarketDataError
from .predictions import prediction_response
from .trading_calendar import LAST_DATABLE_DAY
from .windows import WindowError, validate_prices


def _parse_prices(text: str) -> list[object]:
    """Comma-separated closes; a token that is not a number stays a string so that
    validate_prices names it."""
    values: list[object] = []
    for token in (t.strip() for t in text.split(",")):
        try:
            values.append(float(token))
        except ValueError:
            values.append(token)
    return values


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Bundle folder (model.onnx + metadata.json), e.g. models/PETR4.SA.")
@click.option("--prices", help="The last look_back closes, oldest first, comma-separated.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A price CSV (Yahoo-style or Date,Close): its last look_back closes are used.")
@click.option("--last-date", type=click.DateTime(["%Y-%m-%d"]),
              help="Date of the last price; dates the prediction to the next B3 trading day (default with --csv: its last date).")
@click.option("--variant", type=click.Choice(VARIANTS), default="fp32", show_default=True,
              help="Model variant (int8 only where the bundle's accuracy gate passed).")
def predict(model_dir: Path, prices: str | None, csv_file: Path | None, last_date: dt.datetime | None,
            variant: str) -> None:
    """Predict the next close with the bundle in --model and print it as JSON."""
    if (prices is None) == (csv_file is None):
        raise click.UsageError("give exactly one of --prices and --csv")
    try:
        bundle = read_bundle(model_dir)
        engine = Engine(bundle, variant)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None
    date = None if last_date is None else last_date.date()
    if date is not None and date > LAST_DATABLE_DAY:
        raise click.BadParameter(f"{date} is too late to date a prediction; the latest accepted is {LAST_DATABLE_DAY}",
                                 param_hint="--last-date")
    try:
        if prices is not None:
            window = validate_prices(_parse_prices(prices), bundle.look_back)
        else:
            series = CsvFileSource(csv_file, symbol=bundle.symbol).fetch(bundle.symbol)
            if len(series) < bundle.look_back:
                raise click.ClickException(
                    f"{csv_file} has {len(series)} usable closes; the model needs {bundle.look_back}")
            window = np.asarray(series.closes[-bundle.look_back:])
            date = date or series.end
    except (WindowError, MarketDataError) as exc:
        raise click.ClickException(str(exc)) from None
    started = time.perf_counter()
    prediction = engine.predict(window[None, :])
    seconds = time.perf_counter() - started
    response = prediction_response(model_name=bundle.path.name, bundle=bundle, window=window,
                                   prediction=prediction, last_date=date, seconds=seconds)
    click.echo(msgspec.json.format(msgspec.json.encode(response), indent=2))
