"""The note that tables and figures carry when some expected runs did not finish.

After a failed job the workflow still rebuilds the summary from the runs that finished; a reader
of a table or figure must see that it is partial and how many runs each method has (``n=…``),
and how many runs had phases made with an older config (``stale``, left out: issue 20.1).
"""

from __future__ import annotations

import pandas as pd

from analysis.palette import method_label, order_methods


def partial_note(scores: pd.DataFrame | None) -> str | None:
    """``"Partial results: 7 of 8 runs complete (Cal-QL n=2/2, ...); [k run(s) ... stale;] ..."``
    or None when all are complete (a run with a stale phase never is)."""
    if scores is None or scores.empty or "status" not in scores.columns:
        return None
    done = scores["status"] == "complete"
    if done.all():
        return None
    counts = done.groupby(scores["method"]).agg(["sum", "count"])
    per_method = ", ".join(
        f"{method_label(m)} n={int(counts.loc[m, 'sum'])}/{int(counts.loc[m, 'count'])}"
        for m in order_methods(counts.index)
    )
    n_stale = int((pd.to_numeric(scores["stale_phases"], errors="coerce") > 0).sum()) if "stale_phases" in scores else 0
    stale = f"{n_stale} run(s) with phases made with another config (stale, left out); " if n_stale else ""
    return (
        f"Partial results: {int(done.sum())} of {len(scores)} runs complete ({per_method}); "
        f"{stale}the others are listed in missing.csv."
    )
