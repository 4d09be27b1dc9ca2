"""``lstm-predictor convert``: a Keras model file -> an ONNX model bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lstm_predictor.daemon.windows import RULES

from .keras_model import ConversionError, load_keras_model, look_back_of
from .keras_to_onnx import convert_model
from .parity import real_windows
from .seed_metadata import metadata_from_seed

REAL_PARITY_WINDOWS = 512


@click.command()
@click.argument("keras_file", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Bundle folder to write.")
@click.option("--symbol", help="Ticker the model predicts (default: from --metadata, else the bundle folder name).")
@click.option(
    "--metadata", "metadata_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The original service's model_metadata.json: carries over symbol, normalisation, period and metrics.",
)
@click.option("--normalisation", type=click.Choice(RULES), help="Window normalisation rule (default: from --metadata, else window_first).")
@click.option(
    "--csv", "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Price CSV: parity (and the int8 gate) run on real windows from it instead of generated ones.",
)
@click.option("--int8", is_flag=True, help="Also write a dynamically quantised model.int8.onnx.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def convert(
    keras_file: Path, out_dir: Path, symbol: str | None, metadata_file: Path | None,
    normalisation: str | None, csv_file: Path | None, int8: bool, force: bool,
) -> None:
    """Convert KERAS_FILE into an ONNX bundle in --out, proving parity with Keras."""
    try:
        extra: dict[str, Any] = {}
        if metadata_file is not None:
            extra = metadata_from_seed(json.loads(metadata_file.read_text(encoding="utf-8")))
        # Popped whatever the flags say: extra metadata must not override the bundle's own fields.
        seed_symbol, seed_rule = extra.pop("symbol", None), extra.pop("normalisation", None)
        symbol = symbol or seed_symbol or out_dir.name
        rule = normalisation or seed_rule or "window_first"
        model = load_keras_model(keras_file)
        look_back = look_back_of(model)
        if "look_back" in extra and extra.pop("look_back") != look_back:
            raise ConversionError(f"{metadata_file} says look_back differs from the model's input ({look_back})")
        windows = targets = None
        if csv_file is not None:
            from lstm_predictor.daemon.market_data import CsvFileSource

            series = CsvFileSource(csv_file, symbol=symbol).fetch(symbol)
            windows, targets = real_windows(series.closes, look_back, REAL_PARITY_WINDOWS)
        click.echo(f"converting {keras_file} ({symbol}, look_back {look_back}, {rule}) ...", err=True)
        bundle = convert_model(
            model, out_dir, symbol=symbol, normalisation=rule, extra_metadata=extra,
            parity_windows=windows, gate_targets=targets, int8=int8, overwrite=force,
        )
    except (ConversionError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    meta = bundle.metadata
    summary = {
        "bundle": str(bundle.path),
        "symbol": bundle.symbol,
        "normalisation": bundle.normalisation,
        "op_counts": meta["conversion"]["op_counts"],
        "parity": meta["parity"],
        "int8": meta["files"].get("model.int8.onnx"),
    }
    click.echo(json.dumps(summary, indent=2))
