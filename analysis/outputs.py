"""Names of every analysis output, importable without matplotlib (for the Snakemake rules)."""

from __future__ import annotations

#: Files ``python -m analysis aggregate`` writes into the summary folder.
SUMMARY_FILES = ("curves.csv", "scores.csv", "missing.csv", "per_task.csv", "aggregate.csv")
#: Figures of ``python -m analysis figures`` (file stems; one file per configured format).
FIGURE_NAMES = ("finetune_curves", "regret_and_final", "calibration", "iqm_aggregate")
#: Tables of ``python -m analysis tables`` (file stems; each as .md and .tex).
TABLE_NAMES = ("scores", "offline", "regret", "dip", "calibration")
#: The overview table of ``python -m analysis tables`` (Markdown only): every metric with its interval.
OVERVIEW_TABLE = "overview"
