"""The evaluation report: Markdown with PNG figures, written beside (or into) a bundle.

It opens with EDA of the training part, then scores every split with the
persistence baseline beside the model, and says in plain words whether the
model beats persistence on the test days.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from lstm_predictor.daemon.bundle import Bundle  # noqa: E402
from lstm_predictor.daemon.market_data import PriceSeries  # noqa: E402

from .eda import explore, save_figure  # noqa: E402
from .evaluation import PartResult  # noqa: E402
from .metrics import METRIC_NAMES, beats_persistence  # noqa: E402
from .selection import RULE, Candidate, batch1_latency_ms, choose, qualifies  # noqa: E402

REPORT_FILE = "README.md"
# A forecast whose spread is under this share of the actual returns' spread is a drift, not a signal.
DRIFT_ONLY = 0.05
# Relative differences from persistence below this are a tie, whatever their sign.
TIE = 1e-3
LATENCY_RUNS = 2000
_LABELS = {"mae": "MAE", "rmse": "RMSE", "mape": "MAPE (%)", "r2": "R²", "directional_accuracy": "directional accuracy"}


def verdict(metrics: dict[str, Any], part: str = "test") -> str:
    """One plain sentence: does the model beat "tomorrow = today" on this part?"""
    split = metrics[part]
    wins = beats_persistence(split)
    m, p = split["model"], split["persistence"]
    change = {k: (m[k] - p[k]) / p[k] for k in ("mae", "rmse", "mape")}
    detail = (
        f"MAE {m['mae']:.4f} vs {p['mae']:.4f} ({change['mae'] * 100:+.2f} %), "
        f"MAPE {m['mape']:.3f} % vs {p['mape']:.3f} % ({change['mape'] * 100:+.2f} %)"
    )
    if all(abs(v) < TIE for v in change.values()):
        return (
            f"The model does NOT beat the persistence baseline (tomorrow = today) on the {part} days in any useful "
            f"sense: its MAE, RMSE and MAPE are within {TIE * 100:g} % of persistence's ({detail})."
        )
    if all(wins.values()):
        return f"The model beats the persistence baseline on the {part} days on MAE, RMSE, MAPE and R² ({detail})."
    if not any(wins.values()):
        return f"The model does NOT beat the persistence baseline (tomorrow = today) on the {part} days ({detail})."
    better = ", ".join(k.upper() for k, v in wins.items() if v)
    worse = ", ".join(k.upper() for k, v in wins.items() if not v)
    return (
        f"The model does NOT beat the persistence baseline on the {part} days on every metric: "
        f"better on {better}, not on {worse} ({detail})."
    )


def _fmt(name: str, value: float) -> str:
    if name == "directional_accuracy":
        return f"{value * 100:.1f} %"
    if name == "mape":
        return f"{value:.3f}"
    return f"{value:.4f}"


def metrics_table(metrics: dict[str, Any]) -> str:
    lines = ["| split | days | metric | model | persistence | model better? |", "|---|---:|---|---:|---:|:---:|"]
    for part, split in metrics.items():
        wins = beats_persistence(split)
        for name in METRIC_NAMES:
            better = {True: "yes", False: "no"}.get(wins.get(name), "—")
            lines.append(
                f"| {part} | {split['days']} | {_LABELS[name]} | {_fmt(name, split['model'][name])} | "
                f"{_fmt(name, split['persistence'][name])} | {better} |"
            )
    return "\n".join(lines)


def _figures_for_test(result: PartResult, series: PriceSeries, out_dir: Path) -> list[tuple[str, str]]:
    dates = [series.dates[i] for i in result.targets]
    model_err = result.predicted - result.actual
    base_err = result.previous - result.actual

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(dates, result.actual, color="k", lw=1.2, label="actual close")
    ax.plot(dates, result.predicted, color="tab:blue", lw=1, label="model")
    ax.plot(dates, result.previous, color="tab:orange", lw=0.8, ls="--", label="persistence")
    ax.legend()
    ax.set_ylabel("close")
    fig.autofmt_xdate()
    figures = [("Predicted vs actual closes on the test days", save_figure(fig, out_dir, "test_predictions.png"))]

    fig, ax = plt.subplots(figsize=(8, 3))
    ax.axhline(0, color="k", lw=0.8)
    ax.plot(dates, model_err, color="tab:blue", lw=0.9, label="model residual")
    ax.plot(dates, base_err, color="tab:orange", lw=0.7, alpha=0.7, label="persistence residual")
    ax.set_ylabel("predicted - actual")
    ax.legend()
    fig.autofmt_xdate()
    figures.append(("Residuals over time on the test days", save_figure(fig, out_dir, "test_residuals.png")))

    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = np.linspace(min(model_err.min(), base_err.min()), max(model_err.max(), base_err.max()), 50)
    ax.hist(base_err, bins=bins, alpha=0.5, color="tab:orange", label="persistence")
    ax.hist(model_err, bins=bins, alpha=0.5, color="tab:blue", label="model")
    ax.set_xlabel("error (predicted - actual)")
    ax.set_ylabel("days")
    ax.legend()
    figures.append(("Error distribution on the test days: model vs persistence", save_figure(fig, out_dir, "test_errors.png")))
    return figures


def _spread_sentence(results: dict[str, PartResult]) -> str:
    """How much the model's forecasts actually vary: a near-constant return is a drift, not a signal."""
    parts = []
    for name in ("validation", "test"):
        r = results[name]
        predicted = (r.predicted / r.previous - 1.0) * 100.0
        actual = (r.actual / r.previous - 1.0) * 100.0
        corr = np.corrcoef(predicted, actual)[0, 1] if predicted.std() > 0 else float("nan")
        parts.append(
            f"{name}: predicted mean {predicted.mean():+.3f} %, spread (std) {predicted.std():.3f} % against an actual "
            f"spread of {actual.std():.3f} %, correlation with the actual return {corr:+.3f}"
        )
    text = "The model's predicted next-day return over the last close: " + "; ".join(parts) + "."
    test = results["test"]
    if np.std(test.predicted / test.previous) < DRIFT_ONLY * np.std(test.actual / test.previous):
        text += (
            " Its forecasts barely move from day to day: in effect it is persistence times a constant drift, "
            "and it found no day-to-day signal in the closes beyond that."
        )
    return text


def _history_figure(history: dict[str, list[float]], monitor: str, out_dir: Path) -> str | None:
    train_key = monitor.removeprefix("val_")
    if not history.get(monitor) or not history.get(train_key):
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    epochs = np.arange(1, len(history[monitor]) + 1)
    ax.plot(epochs, history[train_key], label=f"train {train_key}")
    ax.plot(epochs, history[monitor], label=monitor)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.legend()
    return save_figure(fig, out_dir, "training_history.png")


def _figure_md(caption: str, name: str) -> str:
    return f"![{caption}]({name})\n\n*{caption}.*\n"


def selection_table(chosen: Bundle, candidates: Sequence[Bundle], latencies_ms: Sequence[float]) -> str:
    """Candidates side by side on the VALIDATION split only (test scores are not used to choose), with
    their serving cost (``latencies_ms``: batch-1 latency of ``chosen`` then each candidate) and the rule's pick."""
    lines = [
        "| candidate | LSTM units | dense | normalisation | head | L2 | learning rate | epochs (best) | val MAE | val RMSE "
        "| val MAPE (%) | val R² | beats persistence on all four? | batch-1 latency (ms) |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    persistence = None
    ranked = []
    for b, latency in zip([chosen, *candidates], latencies_ms, strict=True):
        t = b.metadata.get("training", {})
        cfg = t.get("config", {})
        val = b.metadata.get("metrics", {}).get("validation")
        if not val:
            lines.append(f"| {b.path.name} | no validation metrics recorded ||||||||||||")
            continue
        persistence = val["persistence"]
        m = val["model"]
        ranked.append(Candidate(b.path.name, val, latency))
        name = f"**{b.path.name}** (shipped)" if b is chosen else b.path.name
        units = ",".join(str(u) for u in cfg.get("lstm_units", ())) or "?"
        lines.append(
            f"| {name} | {units} | {cfg.get('dense_units', '?')} | {b.normalisation} | {cfg.get('head', '?')} | {cfg.get('l2', '?')} | "
            f"{cfg.get('learning_rate', '?')} | {t.get('epochs_run', '?')} ({t.get('best_epoch', '?')}) | {m['mae']:.4f} | "
            f"{m['rmse']:.4f} | {m['mape']:.3f} | {m['r2']:.4f} | {'yes' if qualifies(ranked[-1]) else 'no'} | {latency:.3f} |"
        )
    if persistence:
        p = persistence
        lines.append(
            f"| persistence (same days) | | | | | | | | {p['mae']:.4f} | {p['rmse']:.4f} | {p['mape']:.3f} | {p['r2']:.4f} | | |"
        )
    pick = choose(ranked)
    lines += ["", f"The rule picks: **{pick.name}**." if pick else "The rule picks none: no candidate beats persistence on validation."]
    lines.append("")
    for b in [chosen, *candidates]:
        command = b.metadata.get("training", {}).get("command")
        if command:
            lines.append(f"- {b.path.name}: `{command}`")
    return "\n".join(lines)


def write_report(
    out_dir: Path,
    bundle: Bundle,
    series: PriceSeries,
    results: dict[str, PartResult],
    metrics: dict[str, Any],
    candidates: Sequence[Bundle] = (),
    command: str | None = None,
) -> Path:
    """Write ``out_dir/README.md`` and its figures; with ``candidates``, a selection section that times them all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = bundle.metadata
    data = meta.get("data", {})
    training = meta.get("training", {})
    train_rows = series.between(None, series.dates[results["train"].part.stop - 1])
    eda = explore(train_rows, out_dir)

    md = [f"# {bundle.name}: evaluation report", ""]
    md += [f"**{verdict(metrics)}**", ""]
    md += [
        f"Bundle version `{bundle.version}`, symbol `{bundle.symbol}`, look-back {bundle.look_back}, "
        f"normalisation `{bundle.normalisation}`. Data: `{data.get('source', '?')}`, column `{data.get('column', '?')}`, "
        f"{series.start} .. {series.end} ({len(series)} trading days)"
        + (f", every close × {data['scale']}" if data.get("scale", 1.0) != 1.0 else "")
        + ". Predictions come from `model.onnx` run by the daemon's engine (what ships), not from Keras.",
        "",
    ]
    md += ["## The training data (training part only)", "", "| statistic | value |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in eda.summary]
    md += ["", "| month | days | mean daily return | up days |", "|---|---:|---:|---:|"]
    md += [f"| {name} | {n} | {mean:+.3f} % | {up * 100:.0f} % |" for name, n, mean, up in eda.months]
    md += [""]
    for caption, name in eda.figures:
        md.append(_figure_md(caption, name))
    if data.get("dropped"):
        md += ["Rows dropped by cleaning (whole series):", ""]
        md += [f"- {r['date']}: {r['reason']}" for r in data["dropped"]]
        md += [""]
    if data.get("adjustments"):
        md += ["Split-like jumps back-adjusted (closes before the date multiplied by the factor):", ""]
        md += [f"- {a['date']}: × {a['factor']} ({a['reason']})" for a in data["adjustments"]]
        md += [""]

    md += ["## Splits", "", "| part | targets from | to | targets | inputs from |", "|---|---|---|---:|---|"]
    for name, result in results.items():
        p = result.part
        md.append(
            f"| {name} | {series.dates[p.start]} | {series.dates[p.stop - 1]} | {len(p)} | {series.dates[p.start - bundle.look_back]} |"
        )
    md += ["", "Validation and test windows reach back look-back rows into the part before them; no target is shared.", ""]

    md += ["## Scores", "", metrics_table(metrics), ""]
    md += [
        f"Persistence predicts every day's close to be the previous close. Its directional accuracy is the share "
        f"of flat days; the fair reference for the model's direction calls is the share of up days "
        f"(test: {metrics['test'].get('up_days_share', float('nan')) * 100:.1f} %).",
        "",
        _spread_sentence(results),
        "",
    ]
    for caption, name in _figures_for_test(results["test"], series, out_dir):
        md.append(_figure_md(caption, name))

    if candidates:
        latencies_ms = batch1_latency_ms([bundle, *candidates], runs=LATENCY_RUNS)
        md += ["## Model selection (validation split only)", ""]
        md += [
            f"Each candidate was trained with the same data and split. The rule, fixed before looking: {RULE}. "
            "Test scores played no part in the choice. Latency is the median of "
            f"{LATENCY_RUNS} batch-1 runs of each `model.onnx` through the daemon's engine (one thread), the candidates "
            "timed interleaved in one process on the machine that wrote this report.",
            "",
            selection_table(bundle, candidates, latencies_ms),
            "",
        ]

    if training:
        md += ["## Training", ""]
        if training.get("command"):
            md += ["```", training["command"], "```", ""]
        cfg = training.get("config", {})
        md += ["| setting | value |", "|---|---|"]
        md += [f"| {k} | {v} |" for k, v in cfg.items()]
        md += [
            f"| epochs run | {training.get('epochs_run', '?')} |",
            f"| best epoch (0 = starting weights) | {training.get('best_epoch', '?')} |",
            "",
        ]
        figure = _history_figure(training.get("history", {}), cfg.get("monitor", "val_loss"), out_dir)
        if figure:
            md.append(_figure_md(f"Training curves ({cfg.get('monitor', 'val_loss')} drives early stopping)", figure))
    if meta.get("tools"):
        md += ["Tools: " + ", ".join(f"{k} {v}" for k, v in meta["tools"].items()), ""]
    if command:
        md += ["This report was written by:", "", "```", command, "```", ""]

    path = out_dir / REPORT_FILE
    path.write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    return path
