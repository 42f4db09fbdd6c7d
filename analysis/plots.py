"""Figures of the study, drawn from the summary tables (never from raw run files).

Each ``plot_*`` function takes tables and returns a matplotlib Figure; :func:`make_figures`
saves the requested ones as ``<out_dir>/<name>.<fmt>``. Sizes target a paper page (7 in
wide, 8 pt fonts) so they stay readable when included at full width.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

from analysis.config import AnalysisConfig  # noqa: E402
from analysis.io import save_figure  # noqa: E402
from analysis.palette import method_color, method_label, order_methods  # noqa: E402
from analysis.partial import partial_note  # noqa: E402
from analysis.stats import curve_band  # noqa: E402
from calql.errors import CalqlError  # noqa: E402

log = logging.getLogger(__name__)
# PDF font subsetting logs every glyph at INFO; keep the job logs readable.
logging.getLogger("fontTools").setLevel(logging.WARNING)

PAGE_WIDTH = 7.0  # inches: full text width of a two-column paper
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.4,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable/selectable in the PDF
    "svg.hashsalt": "calql-repro",
}
METRIC_LABELS = {
    "offline_score": "offline score",
    "final_score": "final score",
    "improvement": "improvement (final - offline)",
    "cumulative_regret": "cumulative regret",
    "unlearning_dip": "unlearning dip",
}
STEPS = EngFormatter(sep="")
#: What a fine-tuning figure says when no run has a fine-tuning evaluation yet.
NO_FINETUNE_NOTE = (
    "No run has a fine-tuning evaluation yet (every fine-tuning job failed or has still to run; "
    "summary/missing.csv says which and why): only the offline scores are shown."
)


@dataclass
class Tables:
    """The summary tables the figures read (see ``python -m analysis figures --help``)."""

    curves: pd.DataFrame
    scores: pd.DataFrame
    per_task: pd.DataFrame
    aggregate: pd.DataFrame


def _grid(n: int, ncols: int, panel_w: float, panel_h: float, **kwargs) -> tuple[Figure, np.ndarray]:
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    width = min(PAGE_WIDTH, panel_w * ncols) if ncols > 1 else panel_w
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, panel_h * nrows), squeeze=False, **kwargs)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def _bottom_axes(axes: np.ndarray, n: int) -> list:
    """The lowest visible panel of each column (the last row may be partly empty)."""
    nrows, ncols = axes.shape
    return [axes[max(r for r in range(nrows) if r * ncols + j < n), j] for j in range(min(ncols, n))]


def _method_legend(fig: Figure, methods: list[str], settings: AnalysisConfig, extra: list | None = None) -> None:
    handles = [Line2D([], [], color=method_color(m, settings.colors), label=method_label(m)) for m in methods]
    handles += extra or []
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(len(handles), 5),
        frameon=False,
        bbox_to_anchor=(0.5, 1.0),
    )


def plot_finetune_curves(tables: Tables, settings: AnalysisConfig) -> Figure:
    """Score vs online env steps per task: mean over seeds with a CI band; offline score at x=0.

    A task with no fine-tuning evaluation yet (a partial run: every fine-tuning job failed or is
    still to run) still gets its panel, with the offline scores at x = 0 and a note saying why
    the curves are missing, so the figure is rebuilt whenever the tables are.
    """
    finetune = tables.curves[tables.curves["phase"] == "finetune"]
    tasks = sorted(tables.curves["task"].unique())
    methods = order_methods(tables.curves["method"].unique())
    if not tasks:
        raise CalqlError("curves.csv has no evaluations to plot")
    fig, axes = _grid(len(tasks), 3, 2.4, 1.9)
    for ax, task in zip(axes.flat, tasks):
        for method in methods:
            color = method_color(method, settings.colors)
            rows = finetune[(finetune["task"] == task) & (finetune["method"] == method)]
            offline = tables.scores.loc[
                (tables.scores["task"] == task) & (tables.scores["method"] == method), "offline_score"
            ].dropna()
            if len(offline):  # the pre-trained policy's last offline evaluation, at x = 0
                ax.plot(
                    [0],
                    [offline.mean()],
                    marker="D",
                    ms=4,
                    color=color,
                    mec="white",
                    mew=0.5,
                    zorder=5,
                    clip_on=False,
                )
            band = curve_band(rows, "env_steps", "score", settings.ci)
            if band.empty:
                continue
            ax.plot(band["env_steps"], band["mean"], color=color)
            # A t-interval over 3 seeds can reach past any score a run can have (e.g. 190 for a
            # success rate): draw it within the range of scores observed on this task.
            observed = finetune.loc[finetune["task"] == task, "score"]
            low = band["low"].clip(lower=observed.min())
            high = band["high"].clip(upper=observed.max())
            ax.fill_between(band["env_steps"], low, high, color=color, alpha=0.2, lw=0)
        ax.axvline(0, color="black", lw=0.8, ls="--")
        ax.set_title(task)
        ax.xaxis.set_major_formatter(STEPS)
        online_steps = finetune.loc[finetune["task"] == task, "env_steps"]
        if online_steps.empty:
            ax.text(0.5, 0.5, "no fine-tuning\nevaluation yet", transform=ax.transAxes, ha="center", va="center")
            ax.set_xticks([0])
        ax.set_xlim(left=-0.03 * max(float(online_steps.max()) if len(online_steps) else 1.0, 1.0))
    for ax in axes[:, 0]:
        ax.set_ylabel("normalized score")
    for ax in _bottom_axes(axes, len(tasks)):
        ax.set_xlabel("online env steps")
    extra = [
        Line2D(
            [],
            [],
            color="black",
            marker="D",
            ls="--",
            lw=0.8,
            ms=4,
            label="end of pre-training / offline score",
        )
    ]
    _method_legend(fig, methods, settings, extra)
    fig.tight_layout()
    return fig


def plot_regret_and_final(tables: Tables, settings: AnalysisConfig) -> Figure:
    """Grouped bars per task: final score (top) and cumulative regret (bottom), with t intervals."""
    per_task = tables.per_task
    tasks = sorted(per_task["task"].unique())
    methods = order_methods(per_task["method"].unique())
    metrics = [("final_score", "final score"), ("cumulative_regret", "cumulative regret")]
    if not (per_task["metric"] == "final_score").any():  # nothing fine-tuned yet: what there is
        metrics[0] = ("offline_score", "offline score")
    width = min(PAGE_WIDTH, max(3.5, 0.45 * len(tasks) * max(len(methods), 2)))
    fig, axes = plt.subplots(2, 1, figsize=(width, 4.2), sharex=True, squeeze=False)
    bar_w = 0.8 / max(len(methods), 1)
    x = np.arange(len(tasks))
    for ax, (metric, label) in zip(axes[:, 0], metrics):
        rows = per_task[per_task["metric"] == metric].set_index(["task", "method"])
        for j, method in enumerate(methods):
            mean = np.array([rows["mean"].get((t, method), np.nan) for t in tasks], dtype=float)
            low = np.array([rows["ci_low"].get((t, method), np.nan) for t in tasks], dtype=float)
            high = np.array([rows["ci_high"].get((t, method), np.nan) for t in tasks], dtype=float)
            err = np.vstack([mean - low, high - mean])
            err = np.where(np.isnan(err), 0.0, err)
            # a NaN mean (no run of this method on this task) draws no bar rather than a fake 0
            ax.bar(
                x + (j - (len(methods) - 1) / 2) * bar_w,
                mean,
                bar_w,
                yerr=err,
                color=method_color(method, settings.colors),
                capsize=2,
                error_kw={"lw": 0.8},
                label=method_label(method),
            )
        ax.set_ylabel(label)
        ax.grid(axis="x", visible=False)
        if rows.empty:
            ax.text(0.5, 0.5, "no fine-tuning evaluation yet", transform=ax.transAxes, ha="center", va="center")
    axes[0, 0].set_ylim(bottom=min(0.0, axes[0, 0].get_ylim()[0]))
    axes[-1, 0].set_xticks(x, tasks, rotation=20 if len(tasks) > 3 else 0, ha="right" if len(tasks) > 3 else "center")
    _method_legend(fig, methods, settings)
    fig.tight_layout()
    return fig


def _phase_x(curves: pd.DataFrame) -> pd.DataFrame:
    """Plot position: pre-training at negative gradient steps ending at 0, fine-tuning at env steps."""
    curves = curves.copy()
    pre = curves["phase"] == "pretrain"
    end = curves[pre].groupby(["task", "method"])["step"].transform("max")
    curves["x"] = curves["env_steps"].astype(float)
    curves.loc[pre, "x"] = curves.loc[pre, "step"] - end
    return curves


def plot_calibration(tables: Tables, settings: AnalysisConfig) -> Figure:
    """Learned Q of the policy vs Monte-Carlo return over pre-training and fine-tuning.

    One panel per task (rows) x method (columns). The MC return of dataset states is the value
    of the behaviour policy, the reference Cal-QL calibrates against: Q(s, pi(s)) below it (blue)
    under-estimates a policy at least as good as the data's; far above it (red) suggests
    over-estimation.
    """
    curves = _phase_x(tables.curves.dropna(subset=["q_policy"]))
    tasks = sorted(curves["task"].unique())
    methods = order_methods(curves["method"].unique())
    if not tasks:
        raise CalqlError("curves.csv has no q_policy values to plot")
    fig, axes = plt.subplots(
        len(tasks),
        len(methods),
        squeeze=False,
        sharey="row",
        figsize=(min(PAGE_WIDTH, 1.9 * len(methods) + 0.6), 1.7 * len(tasks) + 0.4),
    )
    for i, task in enumerate(tasks):
        for j, method in enumerate(methods):
            ax = axes[i, j]
            color = method_color(method, settings.colors)
            rows = curves[(curves["task"] == task) & (curves["method"] == method)]
            if rows.empty:
                ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center", va="center")
                ax.set_xticks([])
            for phase in ("pretrain", "finetune"):
                part = rows[rows["phase"] == phase]
                q = curve_band(part, "x", "q_policy", settings.ci)
                mc = curve_band(part, "x", "mc_return", settings.ci)
                qd = curve_band(part, "x", "q_data", settings.ci)
                if q.empty:
                    continue
                ax.plot(q["x"], q["mean"], color=color)
                ax.fill_between(q["x"], q["low"], q["high"], color=color, alpha=0.15, lw=0)
                if not qd.empty:
                    ax.plot(qd["x"], qd["mean"], color=color, ls=":", lw=1.0)
                if not mc.empty:
                    ax.plot(mc["x"], mc["mean"], color="black", ls="--", lw=1.0)
                    both = q.merge(mc, on="x", suffixes=("_q", "_mc"))
                    ax.fill_between(
                        both["x"],
                        both["mean_q"],
                        both["mean_mc"],
                        where=both["mean_q"] >= both["mean_mc"],
                        color="tab:red",
                        alpha=0.12,
                        lw=0,
                        interpolate=True,
                    )
                    ax.fill_between(
                        both["x"],
                        both["mean_q"],
                        both["mean_mc"],
                        where=both["mean_q"] < both["mean_mc"],
                        color="tab:blue",
                        alpha=0.12,
                        lw=0,
                        interpolate=True,
                    )
            ax.axvline(0, color="black", lw=0.6, ls="-", alpha=0.5)
            ax.xaxis.set_major_formatter(STEPS)
            if i == 0:
                ax.set_title(method_label(method))
            if j == 0:
                ax.set_ylabel(f"{task}\nvalue")
            if i == len(tasks) - 1:
                ax.set_xlabel("grad steps (<0) | env steps")
    extra = [
        Line2D([], [], color="grey", label="Q(s, pi(s))"),
        Line2D([], [], color="grey", ls=":", lw=1.0, label="Q(s, a_data)"),
        Line2D([], [], color="black", ls="--", lw=1.0, label="MC return"),
        Patch(color="tab:red", alpha=0.3, label="Q above MC return"),
        Patch(color="tab:blue", alpha=0.3, label="Q below MC return (under-calibrated)"),
    ]
    fig.legend(handles=extra, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return fig


def plot_iqm_aggregate(tables: Tables, settings: AnalysisConfig) -> Figure:
    """rliable-style interval plot: IQM across tasks and seeds with bootstrap CIs, per metric."""
    agg = tables.aggregate[tables.aggregate["estimator"] == "iqm"]
    metrics = [m for m in METRIC_LABELS if m in set(agg["metric"]) and m != "improvement"]
    methods = order_methods(agg["method"].unique())
    if not metrics:
        raise CalqlError("aggregate.csv has no IQM rows")
    fig, axes = plt.subplots(
        1,
        len(metrics),
        figsize=(min(PAGE_WIDTH, 1.75 * len(metrics) + 0.8), 0.35 * len(methods) + 0.9),
        sharey=True,
        squeeze=False,
    )
    y = {m: k for k, m in enumerate(reversed(methods))}
    for ax, metric in zip(axes[0], metrics):
        rows = agg[agg["metric"] == metric]
        for _, row in rows.iterrows():
            color = method_color(row["method"], settings.colors)
            yy = y[row["method"]]
            ax.barh(yy, row["ci_high"] - row["ci_low"], left=row["ci_low"], height=0.6, color=color, alpha=0.6)
            ax.plot([row["value"]] * 2, [yy - 0.3, yy + 0.3], color="black", lw=1.5)
        ax.set_title(f"IQM {METRIC_LABELS[metric]}")
        ax.margins(x=0.15)
        ax.grid(axis="y", visible=False)
    axes[0, 0].set_yticks(list(y.values()), [method_label(m) for m in y])
    n_runs = int(agg["n_runs"].max()) if len(agg) else 0
    fig.supxlabel(
        f"{int(round(100 * settings.ci))}% stratified-bootstrap CI "
        f"({int(agg['n_bootstrap'].iloc[0])} resamples), up to {n_runs} runs per method",
        fontsize=7,
    )
    fig.tight_layout()
    return fig


#: Figure name (file stem) -> drawing function.
FIGURES: dict[str, Callable[[Tables, AnalysisConfig], Figure]] = {
    "finetune_curves": plot_finetune_curves,
    "regret_and_final": plot_regret_and_final,
    "calibration": plot_calibration,
    "iqm_aggregate": plot_iqm_aggregate,
}


#: Figures about fine-tuning: they say so when no run has a fine-tuning evaluation yet.
FINETUNE_FIGURES = ("finetune_curves", "regret_and_final")


def make_figures(tables: Tables, out_dir: Path, settings: AnalysisConfig, names: list[str] | None = None) -> list[Path]:
    """Draw and save the named figures (all by default); return every file written."""
    written: list[Path] = []
    partial = partial_note(tables.scores)
    no_finetune = tables.curves[tables.curves["phase"] == "finetune"].empty
    for name in names or list(FIGURES):
        notes = [partial] if partial else []
        if no_finetune and name in FINETUNE_FIGURES:
            notes.append(NO_FINETUNE_NOTE)
        with plt.rc_context(STYLE):
            fig = FIGURES[name](tables, settings)
            if notes:  # under the panels; bbox_inches="tight" keeps it in the file
                fig.text(0.5, 0.0, "\n".join(notes), ha="center", va="top", fontsize=7, color="firebrick", wrap=True)
            try:
                written += save_figure(fig, Path(out_dir) / name, settings.formats, settings.dpi)
            finally:
                plt.close(fig)
        log.info("wrote figure %s", name)
    return written
