"""Issue 12.2: partial results. When runs are missing, missing.csv says why (the job's recorded
error, a resumable stop, or a phase that never started) and every table and figure says it is
partial, with n per method."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

import analysis.plots
from analysis.cli import main
from analysis.partial import partial_note
from calql.config import validate_config
from calql.run_files import RunKey
from calql.training.guard import failure_record
from tests.synthetic_study import METHODS, SEEDS, TASKS, record_figure_texts, write_study
from tests.synthetic_study import study_config as synthetic_config


@pytest.fixture
def partial_study(tmp_path: Path) -> Path:
    """A synthetic study where three runs did not finish, each for another reason."""
    runs = tmp_path / "results" / "runs"
    config = study_config(tmp_path)
    write_study(runs, TASKS, METHODS, SEEDS, n_evals=4, config=validate_config(copy.deepcopy(config)))
    # iql seed 1: fine-tuning failed (Snakemake deleted its outputs; the job left error.json)
    failed = RunKey("taskA", "iql", 1).dir(runs) / "finetune"
    shutil.rmtree(failed)
    with pytest.raises(ValueError), failure_record(failed):
        raise ValueError("critic loss is NaN at gradient step 12")
    # calql seed 1: pre-training killed mid-phase (a checkpoint, no metrics.csv yet)
    killed = RunKey("taskA", "calql", 1).dir(runs)
    shutil.rmtree(killed)
    (killed / "pretrain" / "checkpoints").mkdir(parents=True)
    (killed / "pretrain" / "checkpoints" / "last.pt").write_bytes(b"x")
    # sac seed 0: never ran
    shutil.rmtree(RunKey("taskA", "sac", 0).dir(runs))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def study_config(tmp_path: Path) -> dict:
    """The experiment config of the synthetic studies below (as written, before validation)."""
    return synthetic_config(tmp_path, "partial")


def test_partial_note_counts_runs_per_method() -> None:
    scores = pd.DataFrame({"method": ["calql", "calql", "sac"], "status": ["complete", "missing", "complete"]})
    note = partial_note(scores)
    assert note is not None and note.startswith("Partial results: 2 of 3 runs complete")
    assert "Cal-QL n=1/2" in note and "n=1/1" in note
    assert partial_note(scores.assign(status="complete")) is None


def test_missing_runs_are_listed_with_their_reason_and_outputs_say_partial(
    partial_study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = record_figure_texts(monkeypatch)
    assert main(["-q", "all", "--config", str(partial_study / "config.yaml")]) == 0
    summary = partial_study / "results" / "summary"
    missing = pd.read_csv(summary / "missing.csv")
    reasons = {(r.method, r.seed, r.phase): (r.reason, r.detail) for r in missing.itertuples()}
    assert reasons[("iql", 1, "finetune")][0] == "failed"
    assert "ValueError: critic loss is NaN at gradient step 12" in reasons[("iql", 1, "finetune")][1]
    assert reasons[("calql", 1, "pretrain")][0] == "incomplete"
    assert "rerun to resume" in reasons[("calql", 1, "pretrain")][1]
    assert reasons[("calql", 1, "finetune")] == ("missing", "no metrics.csv (not started: pretrain did not finish)")
    assert reasons[("sac", 0, "finetune")] == ("missing", "no metrics.csv")

    note = "Partial results: 3 of 6 runs complete (Cal-QL n=1/2, IQL n=1/2, SAC (scratch) n=1/2)"
    for table in (summary / "tables").glob("*.md"):
        assert note in table.read_text(), table
    for table in (summary / "tables").glob("*.tex"):
        assert "Partial results: 3 of 6 runs complete" in table.read_text(), table
    assert set(drawn) == set(analysis.plots.FIGURES)
    for name, texts in drawn.items():
        assert any(note in t for t in texts), (name, texts)


def test_figures_are_drawn_when_no_run_was_fine_tuned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20.4: a failure that stops the workflow before any fine-tuning finished left the
    figures of the previous run ("curves.csv has no fine-tuning rows to plot") while the tables
    were rebuilt. Every figure is now drawn; the fine-tuning ones show the offline scores and say
    why there is nothing else."""
    drawn = record_figure_texts(monkeypatch)
    config = study_config(tmp_path)
    runs = tmp_path / "results" / "runs"
    write_study(runs, TASKS, ("calql", "iql"), SEEDS, n_evals=4, config=validate_config(copy.deepcopy(config)))
    for phase_dir in runs.rglob("finetune"):
        shutil.rmtree(phase_dir)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["-q", "all", "--config", str(tmp_path / "config.yaml")]) == 0
    assert set(drawn) == set(analysis.plots.FIGURES)
    for name in analysis.plots.FINETUNE_FIGURES:
        assert any(analysis.plots.NO_FINETUNE_NOTE in t for t in drawn[name]), (name, drawn[name])
    assert not any(analysis.plots.NO_FINETUNE_NOTE in t for t in drawn["calibration"])
    for name in analysis.plots.FIGURES:
        assert (tmp_path / "results" / "figures" / f"{name}.png").is_file(), name
