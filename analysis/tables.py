"""Result tables in Markdown and LaTeX: one row per task, one column per method.

Cells are ``mean ± standard error`` over seeds; the best mean of each row is bold (highest for
scores, lowest for regret and dip; ties at the printed precision are all bold). A last row gives
the IQM across tasks and seeds with its stratified-bootstrap CI. The caption line states the
number of seeds; a cell with fewer seeds than the others says so (``n=k``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.io import write_text
from analysis.outputs import OVERVIEW_TABLE
from analysis.palette import method_label, order_methods
from analysis.stats import METRICS


@dataclass(frozen=True)
class TableSpec:
    name: str  # file stem under summary/tables/
    metric: str  # column of scores.csv / metric of per_task.csv
    title: str
    decimals: int


TABLES = (
    TableSpec("scores", "final_score", "Normalized score after online fine-tuning", 1),
    TableSpec("offline", "offline_score", "Normalized score after offline pre-training", 1),
    TableSpec("regret", "cumulative_regret", "Cumulative regret during fine-tuning (evaluation-based)", 3),
    TableSpec("dip", "unlearning_dip", "Unlearning dip at the start of fine-tuning (score points)", 1),
    TableSpec(
        "calibration",
        "offline_q_gap",
        "Calibration after pre-training: Q(s, pi(s)) minus the Monte-Carlo return of the data on fixed "
        "dataset states (training-reward units; below 0 = under-estimation)",
        1,
    ),
)


def _ranking(metric: str) -> str:
    """The caption's ranking clause: which direction is better, or that the metric is not ranked."""
    higher = METRICS[metric]
    if higher is None:
        return "not ranked"
    return f"best per row in bold ({'higher' if higher else 'lower'} is better)"


@dataclass
class Cell:
    mean: float
    se: float
    n: int
    bold: bool = False


def _cells(per_task: pd.DataFrame, spec: TableSpec) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    rows = per_task[per_task["metric"] == spec.metric]
    tasks = sorted(rows["task"].unique())
    methods = order_methods(rows["method"].unique())
    cells = {(r.task, r.method): Cell(float(r.mean), float(r.se), int(r.n_seeds)) for r in rows.itertuples()}
    higher = METRICS[spec.metric]
    if higher is None:
        return tasks, methods, cells
    for task in tasks:
        present = [cells[(task, m)] for m in methods if (task, m) in cells and math.isfinite(cells[(task, m)].mean)]
        if len(present) < 2:
            continue
        rounded = [round(c.mean, spec.decimals) for c in present]
        best = max(rounded) if higher else min(rounded)
        for c, r in zip(present, rounded):
            c.bold = r == best
    return tasks, methods, cells


@dataclass
class IqmCell:
    value: float
    low: float
    high: float
    note: str  # e.g. " (4 of 5 tasks)" when a method lacks some tasks
    bold: bool = False


def _iqm_row(aggregate: pd.DataFrame | None, spec: TableSpec, methods: list[str]) -> dict[str, IqmCell]:
    """IQM cells of the last row; a method covering fewer tasks than the others says so."""
    if aggregate is None or aggregate.empty:
        return {}
    rows = aggregate[(aggregate["metric"] == spec.metric) & (aggregate["estimator"] == "iqm")]
    rows = rows[rows["method"].isin(methods)]
    if rows.empty:
        return {}
    most = int(rows["n_tasks"].max()) if "n_tasks" in rows else 0
    out = {}
    for r in rows.itertuples():
        n_tasks = int(getattr(r, "n_tasks", most))
        note = f" ({n_tasks} of {most} tasks)" if n_tasks != most else ""
        out[r.method] = IqmCell(float(r.value), float(r.ci_low), float(r.ci_high), note)
    if len(out) >= 2 and METRICS[spec.metric] is not None:
        rounded = {m: round(c.value, spec.decimals) for m, c in out.items()}
        best = max(rounded.values()) if METRICS[spec.metric] else min(rounded.values())
        for m, c in out.items():
            c.bold = rounded[m] == best
    return out


def _seed_note(cells: dict[tuple[str, str], Cell]) -> tuple[int, str]:
    counts = sorted({c.n for c in cells.values()})
    most = max(counts) if counts else 0
    if len(counts) <= 1:
        return most, f"{most} seed{'s' if most != 1 else ''} per cell"
    return most, f"{most} seeds per cell unless marked n=k"


def _fmt(value: float, decimals: int) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{decimals}f}"


def _partial_md(partial: str | None) -> str:
    """The partial-results note (analysis.partial) as a paragraph under a Markdown caption."""
    return f"\n\n*{partial}*" if partial else ""


def markdown_table(
    per_task: pd.DataFrame,
    spec: TableSpec,
    aggregate: pd.DataFrame | None = None,
    ci: float = 0.95,
    partial: str | None = None,
) -> str:
    """``partial``: the note of :func:`analysis.partial.partial_note`, printed under the caption."""
    tasks, methods, cells = _cells(per_task, spec)
    if not cells:  # e.g. the offline table of a study with only SAC from scratch
        return f"**{spec.title}.** No run has this number.{_partial_md(partial)}\n"
    most, note = _seed_note(cells)
    lines = [
        f"**{spec.title}.** Mean ± standard error over seeds ({note}); {_ranking(spec.metric)}.{_partial_md(partial)}",
        "",
        "| task | " + " | ".join(method_label(m) for m in methods) + " |",
        "|---|" + "---:|" * len(methods),
    ]
    for task in tasks:
        parts = []
        for m in methods:
            c = cells.get((task, m))
            if c is None or not math.isfinite(c.mean):
                parts.append("–")
                continue
            text = _fmt(c.mean, spec.decimals) + (f" ± {_fmt(c.se, spec.decimals)}" if math.isfinite(c.se) else "")
            text = f"**{text}**" if c.bold else text
            parts.append(text + (f" (n={c.n})" if c.n != most else ""))
        lines.append(f"| {task} | " + " | ".join(parts) + " |")
    iqm = _iqm_row(aggregate, spec, methods)
    if iqm:
        parts = []
        for m in methods:
            if m not in iqm:
                parts.append("–")
                continue
            c = iqm[m]
            text = f"{_fmt(c.value, spec.decimals)} [{_fmt(c.low, spec.decimals)}, {_fmt(c.high, spec.decimals)}]"
            parts.append((f"**{text}**" if c.bold else text) + c.note)
        lines.append(f"| IQM [{int(round(100 * ci))}% CI] | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def latex_table(
    per_task: pd.DataFrame,
    spec: TableSpec,
    aggregate: pd.DataFrame | None = None,
    ci: float = 0.95,
    partial: str | None = None,
) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``); ``partial`` goes
    into the caption."""
    tasks, methods, cells = _cells(per_task, spec)
    flag = f" {_tex_escape(partial)}" if partial else ""
    if not cells:
        return f"% {spec.title}: no run has this number.{flag}\n"
    most, note = _seed_note(cells)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_tex_escape(spec.title)}. Mean $\pm$ standard error over seeds ({note}); "
        rf"{_ranking(spec.metric)}.{flag}}}",
        rf"\label{{tab:{spec.name}}}",
        r"\begin{tabular}{l" + "r" * len(methods) + "}",
        r"\toprule",
        "Task & " + " & ".join(_tex_escape(method_label(m)) for m in methods) + r" \\",
        r"\midrule",
    ]
    for task in tasks:
        parts = []
        for m in methods:
            c = cells.get((task, m))
            if c is None or not math.isfinite(c.mean):
                parts.append("--")
                continue
            mean = _fmt(c.mean, spec.decimals)
            mean = rf"\textbf{{{mean}}}" if c.bold else mean
            text = mean
            if math.isfinite(c.se):
                text += rf" $\pm$ {_fmt(c.se, spec.decimals)}"
            parts.append(text + (f" (n={c.n})" if c.n != most else ""))
        lines.append(_tex_escape(task) + " & " + " & ".join(parts) + r" \\")
    iqm = _iqm_row(aggregate, spec, methods)
    if iqm:
        lines.append(r"\midrule")
        parts = []
        for m in methods:
            if m not in iqm:
                parts.append("--")
                continue
            c = iqm[m]
            v = _fmt(c.value, spec.decimals)
            parts.append(
                (rf"\textbf{{{v}}}" if c.bold else v)
                + f" [{_fmt(c.low, spec.decimals)}, {_fmt(c.high, spec.decimals)}]"
                + c.note
            )
        lines.append(rf"IQM [{int(round(100 * ci))}\% CI] & " + " & ".join(parts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


#: The overview's columns: (metric, header, decimals), in reading order of a fine-tuning study.
OVERVIEW_COLUMNS = (
    ("offline_score", "offline score", 1),
    ("final_score", "final score", 1),
    ("cumulative_regret", "cumulative regret", 3),
    ("unlearning_dip", "dip", 1),
    ("offline_q_gap", "Q(s,pi(s)) - G after pre-training", 0),
)


def _interval(row: dict | None, decimals: int) -> str:
    if row is None or not math.isfinite(float(row["mean"])):
        return "–"
    text = _fmt(float(row["mean"]), decimals)
    if math.isfinite(float(row["ci_low"])):
        text += f" [{_fmt(float(row['ci_low']), decimals)}, {_fmt(float(row['ci_high']), decimals)}]"
    return text


def overview_markdown(per_task: pd.DataFrame, ci: float = 0.95, partial: str | None = None) -> str:
    """Every metric of every task x method as ``mean [t-interval]``: the table a claim is read from."""
    if per_task.empty:
        return f"**Overview.** No run has a number.{_partial_md(partial)}\n"
    level = int(round(100 * ci))
    index = {(r["task"], r["method"], r["metric"]): r for r in per_task.to_dict("records")}
    lines = [
        f"**Overview.** Mean [{level}% Student-t interval] over seeds (n = seeds with the number); "
        "scores 0-100, regret 0-1 (evaluation-based), dip in score points, calibration gap in "
        "training-reward units (below 0 = the critic under-estimates its policy relative to the data's return)."
        + _partial_md(partial),
        "",
        "| task | method | n | " + " | ".join(h for _, h, _ in OVERVIEW_COLUMNS) + " |",
        "|---|---|---:|" + "---:|" * len(OVERVIEW_COLUMNS),
    ]
    for task in sorted(per_task["task"].unique()):
        for method in order_methods(per_task.loc[per_task["task"] == task, "method"].unique()):
            rows = [index.get((task, method, metric)) for metric, _, _ in OVERVIEW_COLUMNS]
            n = max((int(r["n_seeds"]) for r in rows if r is not None), default=0)
            cells = [_interval(r, decimals) for r, (_, _, decimals) in zip(rows, OVERVIEW_COLUMNS)]
            lines.append(f"| {task} | {method_label(method)} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(
    per_task: pd.DataFrame,
    aggregate: pd.DataFrame | None,
    out_dir: Path,
    ci: float = 0.95,
    partial: str | None = None,
) -> list[Path]:
    """Write ``<name>.md`` and ``<name>.tex`` for every table in :data:`TABLES`, and the overview
    (``overview.md``, every metric with its interval); return the paths."""
    written = []
    for spec in TABLES:
        md = Path(out_dir) / f"{spec.name}.md"
        tex = Path(out_dir) / f"{spec.name}.tex"
        write_text(md, markdown_table(per_task, spec, aggregate, ci, partial))
        write_text(tex, latex_table(per_task, spec, aggregate, ci, partial))
        written += [md, tex]
    overview = Path(out_dir) / f"{OVERVIEW_TABLE}.md"
    write_text(overview, overview_markdown(per_task, ci, partial))
    return [*written, overview]
