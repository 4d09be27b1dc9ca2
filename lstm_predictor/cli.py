"""The ``lstm-predictor`` command.

Subcommands are imported only when invoked: ``serve`` and ``predict`` must not
pay for (or even find) TensorFlow, which ``convert``, ``train`` and
``evaluate`` need from the ``train`` extra.
"""

from __future__ import annotations

import importlib

import click

from lstm_predictor import __version__

# name -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "predict": "lstm_predictor.daemon.predict_cli:predict",
    "serve": "lstm_predictor.daemon.serve_cli:serve",
    "bench": "lstm_predictor.daemon.bench.cli:bench",
    "service": "lstm_predictor.daemon.service_install:service",
    "convert": "lstm_predictor.convert.cli:convert",
    "train": "lstm_predictor.training.cli:train",
    "evaluate": "lstm_predictor.training.cli:evaluate",
}

HELP = {
    "predict": "Predict the next close from given prices, offline.",
    "serve": "Run the HTTP daemon.",
    "bench": "Benchmark a running daemon against a baseline.",
    "service": "Install or uninstall the systemd service.",
    "convert": "Convert a Keras model into an ONNX bundle (needs the train extra).",
    "train": "Train a model and write a bundle (needs the train extra).",
    "evaluate": "Evaluate a bundle and write its report (needs the train extra).",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {"tensorflow", "tf2onnx", "keras", "onnx", "matplotlib", "statsmodels"}:
                raise click.UsageError(
                    f"'{name}' needs the train extra ({exc.name} is not installed): pip install 'lstm-predictor[train]'"
                ) from exc
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing help must not import every subcommand (and TensorFlow with them).
        with formatter.section("Commands"):
            formatter.write_dl([(name, HELP[name]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lstm-predictor")
def main() -> None:
    """Train, convert and serve a stock-forecasting LSTM on a plain CPU."""
