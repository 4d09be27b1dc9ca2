"""Exploratory statistics of the TRAINING part only: what the model could learn from,
with nothing of the validation or test days leaking into the reading."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from lstm_predictor.daemon.market_data import PriceSeries  # noqa: E402

VOLATILITY_WINDOW = 21  # trading days in a month
TRADING_DAYS = 252
DPI = 90


@dataclass(frozen=True)
class Eda:
    summary: list[tuple[str, str]]
    months: list[tuple[str, int, float, float]]  # name, days, mean return %, share of up days
    figures: list[tuple[str, str]]  # (caption, file name)


def _returns(series: PriceSeries) -> np.ndarray:
    return np.diff(np.log(series.closes))


def explore(train: PriceSeries, out_dir: Path) -> Eda:
    r = _returns(train)
    c = train.closes
    std = float(r.std(ddof=1))
    z = (r - r.mean()) / std
    summary = [
        ("period", f"{train.start} .. {train.end}"),
        ("trading days", f"{len(train)}"),
        ("close: min / median / max", f"{c.min():.2f} / {np.median(c):.2f} / {c.max():.2f}"),
        ("daily log return: mean", f"{r.mean() * 100:.3f} %"),
        ("daily log return: std", f"{std * 100:.3f} % (annualised {std * np.sqrt(TRADING_DAYS) * 100:.1f} %)"),
        ("daily log return: skewness / excess kurtosis", f"{np.mean(z**3):.2f} / {np.mean(z**4) - 3:.2f}"),
        ("largest daily fall / rise", f"{r.min() * 100:.2f} % / {r.max() * 100:.2f} %"),
        ("share of up days", f"{np.mean(r > 0) * 100:.1f} %"),
        ("lag-1 autocorrelation of returns", f"{np.corrcoef(r[:-1], r[1:])[0, 1]:.3f}"),
    ]
    months = []
    month_of = np.array([d.month for d in train.dates[1:]])
    for m in range(1, 13):
        rm = r[month_of == m]
        if len(rm):
            months.append((calendar.month_abbr[m], len(rm), float(rm.mean() * 100), float(np.mean(rm > 0))))

    figures = [
        ("Daily log returns (training part) against a normal curve of the same mean and spread", _returns_plot(r, out_dir)),
        (f"Rolling {VOLATILITY_WINDOW}-day volatility, annualised (training part)", _volatility_plot(train, r, out_dir)),
        ("Mean daily return by month of year (training part)", _seasonality_plot(months, out_dir)),
        ("Autocorrelation and partial autocorrelation of daily returns (training part)", _acf_plot(r, out_dir)),
    ]
    return Eda(summary=summary, months=months, figures=figures)


def save_figure(fig: plt.Figure, out_dir: Path, name: str) -> str:
    """Write ``fig`` as ``out_dir/name`` and free it; the name, for the report's Markdown."""
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=DPI)
    plt.close(fig)
    return name


def _returns_plot(r: np.ndarray, out_dir: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(r * 100, bins=80, density=True, color="tab:blue", alpha=0.7, label="daily log return")
    grid = np.linspace(r.min(), r.max(), 400)
    mu, sd = r.mean(), r.std(ddof=1)
    ax.plot(grid * 100, np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)) / 100, "k--", label="normal")
    ax.set_xlabel("daily log return (%)")
    ax.set_ylabel("density")
    ax.legend()
    return save_figure(fig, out_dir, "eda_returns.png")


def _volatility_plot(train: PriceSeries, r: np.ndarray, out_dir: Path) -> str:
    kernel = np.ones(VOLATILITY_WINDOW) / VOLATILITY_WINDOW
    mean = np.convolve(r, kernel, mode="valid")
    mean_sq = np.convolve(r**2, kernel, mode="valid")
    vol = np.sqrt(np.maximum(mean_sq - mean**2, 0.0) * VOLATILITY_WINDOW / (VOLATILITY_WINDOW - 1))
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(train.dates[VOLATILITY_WINDOW:], vol * np.sqrt(TRADING_DAYS) * 100, color="tab:red")
    ax.set_ylabel("annualised volatility (%)")
    return save_figure(fig, out_dir, "eda_volatility.png")


def _seasonality_plot(months: list[tuple[str, int, float, float]], out_dir: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 3))
    values = [m[2] for m in months]
    ax.bar([m[0] for m in months], values, color=["tab:green" if v >= 0 else "tab:red" for v in values])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("mean daily log return (%)")
    return save_figure(fig, out_dir, "eda_seasonality.png")


def _acf_plot(r: np.ndarray, out_dir: Path) -> str:
    from statsmodels.graphics.tsaplots import plot_acf, plot_pacf

    lags = min(30, len(r) // 2 - 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    plot_acf(r, ax=axes[0], lags=lags, zero=False, auto_ylims=True, title="ACF of daily returns")
    plot_pacf(r, ax=axes[1], lags=lags, zero=False, method="ywm", auto_ylims=True, title="PACF of daily returns")
    return save_figure(fig, out_dir, "eda_acf_pacf.png")
