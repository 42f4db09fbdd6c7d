"""End-to-end analysis CLI on synthetic runs: figures are real images, tables bold the best cell."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
import yaml

from analysis.cli import main
from analysis.palette import FALLBACK_COLORS, method_color, method_label, order_methods, use_config
from analysis.plots import FIGURES
from analysis.stats import METRICS
from analysis.tables import TABLES, TableSpec, latex_table, markdown_table, overview_markdown
from calql.agents import ALGORITHMS
from calql.config import validate_config
from tests.synthetic_study import write_study

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("analysis")
    config = {
        "experiment": "test",
        "results_dir": str(root / "results"),
        "seeds": [0, 1, 2],
        "methods": ["calql", "cql", "iql", "sac"],
        "tasks": {
            t: {"domain": "pointmaze", "env": {"id": "PointMaze_UMaze-v3"}, "source": {"kind": "generated"}}
            for t in ("taskA", "taskB")
        },
        "analysis": {"n_bootstrap": 200, "dpi": 100},
    }
    study = (("taskA", "taskB"), ("calql", "cql", "iql", "sac"), (0, 1, 2))
    write_study(root / "results" / "runs", *study, n_evals=6, config=validate_config(copy.deepcopy(config)))
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["-q", "all", "--config", str(root / "config.yaml")]) == 0
    return root / "results"


def test_summary_files(results: Path) -> None:
    for name in ("curves", "scores", "missing", "per_task", "aggregate"):
        assert (results / "summary" / f"{name}.csv").exists()
    agg = pd.read_csv(results / "summary" / "aggregate.csv")
    assert set(agg["estimator"]) == {"iqm", "mean"} and (agg["n_bootstrap"] == 200).all()


@pytest.mark.parametrize("name", list(FIGURES))
def test_figures_are_nonempty_images(results: Path, name: str) -> None:
    png = results / "figures" / f"{name}.png"
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas
    pdf = (results / "figures" / f"{name}.pdf").read_bytes()
    assert pdf[:5] == b"%PDF-" and len(pdf) > 5_000


def test_tables_written_with_bold_best(results: Path) -> None:
    for spec in TABLES:
        md = (results / "summary" / "tables" / f"{spec.name}.md").read_text()
        tex = (results / "summary" / "tables" / f"{spec.name}.tex").read_text()
        assert "3 seeds per cell" in md and "3 seeds per cell" in tex
        assert "IQM [95% CI]" in md and r"\toprule" in tex
        ranked = METRICS[spec.metric] is not None
        assert (r"\textbf{" in tex) == ranked and ("not ranked" in md) == (not ranked)


def test_stats_are_reproducible(results: Path, tmp_path: Path) -> None:
    before = (results / "summary" / "aggregate.csv").read_bytes()
    assert main(["-q", "stats", "--summary-dir", str(results / "summary")]) == 0
    # without a config: defaults (2000 resamples) -> different file; with it: identical
    assert (results / "summary" / "aggregate.csv").read_bytes() != before
    assert main(["-q", "stats", "--config", str(results.parent / "config.yaml")]) == 0
    assert (results / "summary" / "aggregate.csv").read_bytes() == before


def per_task(rows: list[tuple[str, str, float, float, int]], metric: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"task": t, "method": m, "metric": metric, "n_seeds": n, "mean": mean, "se": se}
            for t, m, mean, se, n in rows
        ],
        columns=["task", "method", "metric", "n_seeds", "mean", "se"],
    )


def test_bold_is_best_per_row_higher_or_lower() -> None:
    rows = [
        ("t_1", "calql", 90.0, 1.0, 4),
        ("t_1", "cql", 80.0, 2.0, 4),
        ("t_2", "calql", 10.0, 1.0, 4),
        ("t_2", "cql", 30.0, 1.0, 3),
    ]
    scores = markdown_table(per_task(rows, "final_score"), TableSpec("s", "final_score", "Final", 1))
    lines = {line.split("|")[1].strip(): line for line in scores.splitlines() if line.startswith("| t_")}
    assert "**90.0 ± 1.0**" in lines["t_1"] and "**80.0" not in lines["t_1"]
    assert "**30.0 ± 1.0** (n=3)" in lines["t_2"]  # fewer seeds than the others: stated
    assert "4 seeds per cell unless marked n=k" in scores
    regret = markdown_table(per_task(rows, "cumulative_regret"), TableSpec("r", "cumulative_regret", "Regret", 1))
    lines = {line.split("|")[1].strip(): line for line in regret.splitlines() if line.startswith("| t_")}
    assert "**80.0 ± 2.0**" in lines["t_1"] and "**10.0 ± 1.0**" in lines["t_2"]
    tex = latex_table(per_task(rows, "cumulative_regret"), TableSpec("r", "cumulative_regret", "Regret", 1))
    assert r"t\_1 & 90.0 $\pm$ 1.0 & \textbf{80.0} $\pm$ 2.0 \\" in tex


def test_unranked_metric_has_no_bold() -> None:
    rows = [("t", "calql", 120.0, 5.0, 3), ("t", "cql", -130.0, 4.0, 3)]
    spec = TableSpec("c", "offline_q_gap", "Gap", 1)
    md = markdown_table(per_task(rows, "offline_q_gap"), spec)
    assert "**" not in md.split("\n", 1)[1] and "not ranked" in md
    assert "| t | 120.0 ± 5.0 | -130.0 ± 4.0 |" in md
    assert r"\textbf" not in latex_table(per_task(rows, "offline_q_gap"), spec)


def test_overview_has_every_metric_with_its_interval() -> None:
    per = pd.DataFrame(
        [
            ("t", "cql", "offline_score", 3, 40.0, 5.0, 18.5, 61.5),
            ("t", "cql", "offline_q_gap", 3, -95.4, 10.0, -138.4, -52.4),
            ("t", "calql", "offline_score", 3, 50.0, 0.0, 50.0, 50.0),
            ("t", "calql", "cumulative_regret", 2, 0.25, 0.05, -0.385, 0.885),
        ],
        columns=["task", "method", "metric", "n_seeds", "mean", "se", "ci_low", "ci_high"],
    )
    md = overview_markdown(per)
    rows = [line for line in md.splitlines() if line.startswith("| t |")]
    # Cal-QL first (fixed method order); a missing metric is a dash; n = most seeds of the row
    assert rows[0] == "| t | Cal-QL | 3 | 50.0 [50.0, 50.0] | – | 0.250 [-0.385, 0.885] | – | – |"
    assert rows[1] == "| t | CQL | 3 | 40.0 [18.5, 61.5] | – | – | – | -95 [-138, -52] |"
    assert "95% Student-t interval" in md


def test_ties_are_all_bold() -> None:
    rows = [("t", "calql", 100.0, 0.0, 2), ("t", "cql", 100.0, 0.0, 2), ("t", "iql", 50.0, 1.0, 2)]
    md = markdown_table(per_task(rows, "final_score"), TableSpec("s", "final_score", "Final", 1))
    assert md.count("**100.0 ± 0.0**") == 2


def test_palette_from_registry_and_config_variants() -> None:
    use_config(None)
    assert method_color("calql") == ALGORITHMS["calql"].color and method_label("calql") == ALGORITHMS["calql"].label
    assert method_color("zeta") in FALLBACK_COLORS and method_color("zeta") == method_color("zeta")
    assert method_label("zeta") == "zeta"
    assert method_color("calql", {"calql": "red"}) == "red"
    assert order_methods(["sac", "zeta", "calql", "iql"]) == ["calql", "iql", "sac", "zeta"]
    variant = {"algo": "calql", "overrides": {"calibrate_online": False}, "label": "Cal-QL (no online bound)"}
    use_config({"methods": ["cql", {"calql-corl": {**variant, "color": "#123456"}}, "calql"]})
    try:
        assert method_label("calql-corl") == "Cal-QL (no online bound)" and method_color("calql-corl") == "#123456"
        # the config's order first, then the registry's, then the rest alphabetically
        assert order_methods(["zeta", "calql", "calql-corl", "sac", "cql"]) == [
            "cql",
            "calql-corl",
            "calql",
            "sac",
            "zeta",
        ]
        use_config({"methods": [{"calql-corl": variant}]})
        assert method_label("calql-corl") == "Cal-QL (no online bound)"
        assert method_color("calql-corl") in FALLBACK_COLORS  # a variant without a colour gets its own
    finally:
        use_config(None)


def test_cli_help_and_errors(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "analysis", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "aggregate" in out.stdout and "figures" in out.stdout
    assert main(["-q", "stats", "--summary-dir", str(tmp_path)]) == 2  # no scores.csv: clear error
    assert main(["-q", "aggregate"]) == 2  # neither --runs-dir nor --config


def test_output_names_for_the_workflow_match_the_code() -> None:
    from analysis.outputs import FIGURE_NAMES, TABLE_NAMES

    assert tuple(FIGURES) == FIGURE_NAMES
    assert tuple(spec.name for spec in TABLES) == TABLE_NAMES
    report = Path(__file__).resolve().parents[1] / "workflow" / "report"
    for name in FIGURE_NAMES:
        assert (report / f"{name}.rst").read_text().strip()
    for name in TABLE_NAMES:
        assert (report / f"{name}_table.rst").read_text().strip()


def test_iqm_row_notes_methods_missing_tasks() -> None:
    rows = [("a", "calql", 1.0, 0.1, 2), ("a", "cql", 2.0, 0.1, 2), ("b", "calql", 1.0, 0.1, 2)]
    aggregate = pd.DataFrame(
        [
            {
                "method": "calql",
                "metric": "final_score",
                "estimator": "iqm",
                "value": 1.0,
                "ci_low": 0.5,
                "ci_high": 1.5,
                "n_tasks": 2,
            },
            {
                "method": "cql",
                "metric": "final_score",
                "estimator": "iqm",
                "value": 2.0,
                "ci_low": 1.5,
                "ci_high": 2.5,
                "n_tasks": 1,
            },
        ]
    )
    md = markdown_table(per_task(rows, "final_score"), TableSpec("s", "final_score", "Final", 1), aggregate)
    assert "| IQM [95% CI] | 1.0 [0.5, 1.5] | **2.0 [1.5, 2.5]** (1 of 2 tasks) |" in md


def test_table_without_data_says_so() -> None:
    empty = per_task([], "offline_score")
    spec = TableSpec("offline", "offline_score", "Offline", 1)
    assert "No run has this number" in markdown_table(empty, spec)
    assert latex_table(empty, spec).startswith("%")
