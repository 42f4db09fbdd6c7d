"""The Snakemake workflow: lint, dry runs of the shipped configs, config errors, and (slow) a real
run of the tiny .test config that must be complete, idempotent and rerun only what changed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from calql.agents import config_methods
from calql.config import validate_config
from calql.training.run_spec import RunSpec

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "workflow" / "Snakefile"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run Snakemake on the repository's workflow; output (stdout + stderr) in `.stdout`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(SNAKEFILE), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def job_counts(output: str) -> Counter:
    """The 'Job stats' table of a Snakemake run or dry run as {rule: count}."""
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\n\s*total\s+(\d+)", output, re.S)
    assert match, f"no job stats in the output:\n{output[-3000:]}"
    counts = Counter()
    for line in match.group(1).strip().splitlines():
        rule, n = line.split()
        counts[rule] = int(n)
    return counts


def dry_run(*args: str, cwd: Path = REPO) -> str:
    result = snakemake("--dry-run", "--cores", "1", *args, cwd=cwd)
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def place_local_sources(workdir: Path, *configs: Path) -> list[Path]:
    """Empty files at the local source paths (`file`, `awac_npy`) of the configs, under `workdir`.

    The workflow checks at parse time that the files a user places by hand exist
    (calql.data.sources.preflight), so dry-running config/paper.yaml needs its Adroit files; a dry
    run reads no data, so empty files stand in for them."""
    from calql.config import read_config_file

    placed = []
    for config in configs:
        for task in read_config_file(config)["tasks"].values():
            source = task["source"]
            for key in {"file": ("path",), "awac_npy": ("expert", "bc")}.get(source["kind"], ()):
                path = workdir / source[key]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
                placed.append(path)
    return placed


def expected_counts(config: dict) -> dict[str, int]:
    tasks, seeds = len(config["tasks"]), len(config["seeds"])
    methods = config_methods(config)  # algorithms by name and named variants
    return {
        "dataset": tasks,
        "label": tasks,
        "run_config": tasks * (len([m for m in methods.values() if m.pretrains]) + len(methods)),
        "pretrain": tasks * len([m for m in methods.values() if m.pretrains]) * seeds,
        "finetune": tasks * len(methods) * seeds,
        "track": 1,
        "aggregate": 1,
        "tables": 1,
        "figures": 1,
    }


# ----------------------------------------------------------------------------- fast
def test_lint_is_clean() -> None:
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout
    assert "Lints for" not in result.stdout, result.stdout


def test_default_config_dry_run_lists_every_job(tmp_path: Path) -> None:
    """config/config.yaml: data once per task, pre-training for every offline method and seed,
    fine-tuning for every method and seed (sac without --init), and the local summary jobs."""
    config = load(REPO / "config" / "config.yaml")
    assert set(config["methods"]) == {"calql", "cql", "iql", "sac"} and len(config["seeds"]) >= 3
    # Dry-run from a scratch folder so nothing of the repository's results/ is looked at.
    out = dry_run("--configfile", str(REPO / "config" / "config.yaml"), "--directory", str(tmp_path))
    assert job_counts(out) == Counter({**expected_counts(config), "all": 1})
    results = config["results_dir"]
    for task in config["tasks"]:
        for seed in config["seeds"]:
            for method, spec in config_methods(config).items():
                run = f"{results}/runs/{task}/{method}/seed{seed}"
                run_config = f"{results}/configs/runs/{task}/{method}"
                assert f"{run}/finetune/run.json" in out
                if not spec.pretrains:  # sac, hybrid
                    assert f"{run}/pretrain" not in out
                    assert re.search(
                        rf"finetune --run-config {run_config}/finetune.json --seed {seed} .*--run-dir {run} ", out
                    )
                else:
                    assert f"{run}/pretrain/run.json" in out
                    assert f"pretrain --run-config {run_config}/pretrain.json --seed {seed} " in out
                    assert f"finetune --run-config {run_config}/finetune.json --seed {seed} " in out
                    assert f"--init {run}/pretrain/final.pt" in out
    assert not (tmp_path / results).exists(), "a dry run must not write results"


@pytest.mark.parametrize(
    "name", ["umaze.yaml", "sweeps/default-task.yaml", "sweeps/default-budget.yaml", "sweeps/laptop-claim.yaml"]
)
def test_extra_configs_dry_run(tmp_path: Path, name: str) -> None:
    """The kept U-maze config and the sweep that chose the default run through the same workflow;
    the sweep uses only tuning seeds, disjoint from the default's reporting seeds."""
    config = load(REPO / "config" / name)
    out = dry_run("--configfile", str(REPO / "config" / name), "--directory", str(tmp_path))
    assert job_counts(out) == Counter({**expected_counts(config), "all": 1})
    if name.startswith("sweeps/"):
        assert not set(config["seeds"]) & set(load(REPO / "config" / "config.yaml")["seeds"])


def documented_configfile_commands() -> list[tuple[str, str]]:
    """Every `snakemake ... --configfile <shipped config> ...` command the docs and configs show."""
    found = []
    docs = [
        REPO / "README.md",
        SNAKEFILE,
        *sorted((REPO / "config").rglob("*.yaml")),
        *sorted((REPO / "config").rglob("*.md")),
    ]
    for doc in docs:
        for line in doc.read_text().splitlines():
            match = re.search(r"((?:\.venv/bin/)?snakemake [^`#|]*--configfile [^`#|]*)", line)
            # (the Slurm-profile command is checked by test_given_configfile_replaces_the_default,
            # with the overrides its placeholders need)
            if (
                match
                and "config/" in match.group(1)
                and "--workflow-profile" not in match.group(1)
                and "..." not in match.group(1)
            ):
                found.append((str(doc.relative_to(REPO)), match.group(1).strip()))
    return found


@pytest.mark.parametrize(("doc", "command"), documented_configfile_commands())
def test_documented_configfile_commands_parse(tmp_path: Path, doc: str, command: str) -> None:
    """Snakemake's --configfile takes several files, so `--configfile x.yaml all` reads `all` as a
    config file and fails; every documented command must work as written (here: dry-run, with the
    hand-placed data files of the configs it names)."""
    args = command.split()[1:]
    place_local_sources(tmp_path, *(REPO / a for a in args if a.startswith("config/") and a.endswith(".yaml")))
    out = dry_run(*args, "--directory", str(tmp_path))
    assert "Job stats" in out, (doc, command)


def test_paper_config_dry_runs_without_data(tmp_path: Path) -> None:
    config = load(REPO / "config" / "paper.yaml")
    domains = Counter(task["domain"] for task in config["tasks"].values())
    assert domains == Counter({"antmaze": 4, "kitchen": 3, "adroit": 3})
    # No dataset is built and no Minari dataset downloaded (notes, not errors); only the Adroit files
    # the user places by hand must be there (the workflow checks their paths at parse time).
    assert len(place_local_sources(tmp_path, REPO / "config" / "paper.yaml")) == 6
    # Through the Slurm profile, as the README runs it on a cluster (a dry run submits nothing).
    out = dry_run(
        "--configfile",
        str(REPO / "config" / "paper.yaml"),
        "--directory",
        str(tmp_path),
        "--workflow-profile",
        str(REPO / "workflow" / "profiles" / "slurm"),
    )
    assert job_counts(out) == Counter({**expected_counts(config), "all": 1})
    # the paper's baselines, RLPD and the CORL ablation of Cal-QL, as named in the config
    methods = config_methods(config)
    assert {"calql", "cql", "iql", "awac", "sac", "hybrid", "rlpd", "calql-corl"} == set(methods)
    assert methods["calql-corl"].overrides == {"calibrate_online": False}
    assert "runs/antmaze-large-diverse/calql-corl/seed3/pretrain/final.pt" in out
    assert "runs/antmaze-large-diverse/rlpd/seed3/pretrain" not in out


def test_given_configfile_replaces_the_default(tmp_path: Path) -> None:
    """Issue 12.1: the README's paper command in a folder that also has the default config plans
    exactly the paper's tasks with the paper's budgets (Snakemake used to merge the given file
    into config/config.yaml: an 11th task and a 6,000-step AntMaze pre-training)."""
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    place_local_sources(tmp_path, REPO / "config" / "paper.yaml")
    out = dry_run("--configfile", str(REPO / "config" / "paper.yaml"), "--directory", str(tmp_path), "all")
    readme = re.search(
        r"(\d+) tasks,\s+(\d+) pre-training and\s+(\d+)\s+fine-tuning jobs", (REPO / "README.md").read_text()
    )
    assert readme, "README no longer states the paper's job counts"
    n_tasks, n_pretrain, n_finetune = map(int, readme.groups())
    counts = job_counts(out)
    assert (counts["dataset"], counts["pretrain"], counts["finetune"]) == (n_tasks, n_pretrain, n_finetune), counts
    assert "pointmaze" not in out
    budgets = dict(re.findall(r"budget of (\S+): calql, cql, iql[^:]*: pretrain ([\d,]+) gradient steps", out))
    assert budgets["antmaze-large-diverse"] == "1,000,000", budgets
    assert len(budgets) == n_tasks


def test_config_overrides_apply_to_the_default(tmp_path: Path) -> None:
    """Without --configfile the default config is used, and --config still changes it."""
    (tmp_path / "config").mkdir()
    shutil.copy(TEST_CONFIG, tmp_path / "config" / "config.yaml")
    out = dry_run("all", "--directory", str(tmp_path), "--config", "results_dir=elsewhere")
    assert job_counts(out) == Counter({**expected_counts(load(TEST_CONFIG)), "all": 1})
    assert "--run-dir elsewhere/runs/" in out and " results/" not in out


def test_yaml_error_names_file_line_and_column(tmp_path: Path) -> None:
    """Issue 12.7: a syntax error in the config says where it is (Snakemake's loader did not)."""
    (tmp_path / "config").mkdir()
    lines = TEST_CONFIG.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("seeds:"))
    lines[row] = "seeds: [0, 1"  # unclosed flow sequence: the parser fails on the next line
    (tmp_path / "config" / "config.yaml").write_text("\n".join(lines) + "\n")
    result = snakemake("--dry-run", "--cores", "1", "--directory", str(tmp_path))
    assert result.returncode != 0
    assert re.search(rf"config/config.yaml, line {row + 2}, column \d+: not valid YAML", result.stdout), result.stdout[
        -2000:
    ]


def test_test_config_dry_run(tmp_path: Path) -> None:
    """The .test config plans the full job table (in an empty folder: no job is up to date)."""
    (tmp_path / "config").mkdir()
    shutil.copy(TEST_CONFIG, tmp_path / "config" / "config.yaml")
    out = dry_run("--directory", str(tmp_path))
    assert job_counts(out) == Counter({**expected_counts(load(TEST_CONFIG)), "all": 1})


def test_rule_conda_env_pins_match_the_lock() -> None:
    """workflow/envs/calql.yaml (for --sdm conda) pins the same versions as requirements.lock."""
    lock = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            lock[name.lower().replace("_", "-")] = version.split()[0]
    env = load(REPO / "workflow" / "envs" / "calql.yaml")
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    for spec in pip:
        name, version = spec.split("==")
        assert lock.get(name.lower()) == version, (spec, lock.get(name.lower()))


@pytest.mark.parametrize(
    ("path", "bad_key"),
    [
        (("tasks", "pointmaze-tiny", "envv"), "envv"),
        (("train", "pretrain", "step"), "step"),
        (("train", "overrides", "calql", "cql_alpah"), "cql_alpah"),
        (("resources", "pretrain", "thread"), "thread"),
        (("analysis", "n_boot"), "n_boot"),
    ],
)
def test_bad_config_key_fails_before_any_job(tmp_path: Path, path: tuple[str, ...], bad_key: str) -> None:
    config = load(TEST_CONFIG)
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("--dry-run", "--cores", "1", "--configfile", str(bad), "--directory", str(tmp_path))
    assert result.returncode != 0
    assert bad_key in result.stdout, result.stdout[-3000:]
    assert "Job stats" not in result.stdout


def test_rerun_keys_ignore_unrelated_settings() -> None:
    """The workflow's rerun keys (calql.rerun_keys, the rules' `key` params): settings a step does
    not read leave its key alone, and the settings it does read change it."""
    from calql import rerun_keys
    from calql.training.resolve import resolve_all

    def keys(config: dict) -> dict[str, str]:
        config = validate_config(config)
        runs = resolve_all(config)
        out = {"analysis": rerun_keys.analysis_key(config)}
        for task in config["tasks"]:
            out[f"data/{task}"] = rerun_keys.data_key(config, task)
            out[f"label/{task}"] = rerun_keys.label_key(config, task)
        for (task, method), run in runs.items():
            for phase in ("pretrain", "finetune"):
                if phase == "finetune" or run.get("pretrain") is not None:
                    out[f"{phase}/{task}/{method}"] = rerun_keys.train_key(config, run, phase)
        return out

    base = keys(load(TEST_CONFIG))

    def changed_by(edit) -> set[str]:
        config = load(TEST_CONFIG)
        edit(config)
        new = keys(config)
        return {name for name in base if new[name] != base[name]}

    task = next(iter(load(TEST_CONFIG)["tasks"]))
    # settings no step reads
    assert changed_by(lambda c: c.update(experiment="renamed", results_dir="elsewhere")) == set()
    assert changed_by(lambda c: c.update(tracking={"uri": "http://127.0.0.1:5000"})) == set()
    assert changed_by(lambda c: c["resources"]["default"].update(mem_mb=4000)) == set()
    # a setting only the analysis reads
    assert changed_by(lambda c: c["analysis"].update(n_bootstrap=10)) == {"analysis"}
    # the fine-tuning budget: every fine-tuning job, no pre-training, no data
    assert changed_by(lambda c: c["train"]["finetune"].update(env_steps=400)) == {
        name for name in base if name.startswith("finetune/")
    }
    # the pre-training budget: pre-training, and fine-tuning that starts from it (not sac's)
    assert changed_by(lambda c: c["train"]["pretrain"].update(steps=200)) == {
        name
        for name in base
        if name.startswith("pretrain/") or (name.startswith("finetune/") and not name.endswith("/sac"))
    }
    # the reward transform: labels and training, not the raw dataset
    changed = changed_by(lambda c: c["tasks"][task]["reward"].update(scale=1.0))
    assert f"label/{task}" in changed and f"data/{task}" not in changed and "analysis" not in changed
    # the data source: everything of the task
    assert changed_by(lambda c: c["tasks"][task]["source"].update(seed=1)) >= {f"data/{task}"}


# ----------------------------------------------------------------------------- slow
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The .test config run to the end in a scratch folder; returns (folder, wall seconds)."""
    workdir = tmp_path_factory.mktemp("wf")
    (workdir / "config").mkdir()
    shutil.copy(TEST_CONFIG, workdir / "config" / "config.yaml")
    start = time.perf_counter()
    result = snakemake("--directory", str(workdir), "--cores", "2", "all", timeout=1200)
    wall = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-6000:]
    print(f"\n.test workflow: {wall:.0f} s wall on 2 cores")
    return workdir, wall


def _outputs(workdir: Path) -> list[Path]:
    config = load(TEST_CONFIG)
    results = workdir / config["results_dir"]
    files = [results / "mlflow" / "imported.json", results / "summary" / "scores.csv"]
    for task in config["tasks"]:
        files += [results / "datasets" / f"{task}.hdf5", results / "labeled" / f"{task}.hdf5"]
        for method in config["methods"]:
            for seed in config["seeds"]:
                run = results / "runs" / task / method / f"seed{seed}"
                phases = ["finetune"] if method == "sac" else ["pretrain", "finetune"]
                files += [run / phase / name for phase in phases for name in ("metrics.csv", "final.pt", "run.json")]
    return files


@pytest.mark.slow
def test_test_config_runs_end_to_end(finished_run: tuple[Path, float]) -> None:
    workdir, _ = finished_run
    missing = [str(p) for p in _outputs(workdir) if not p.is_file()]
    assert not missing, missing
    figures = list((workdir / "results" / "figures").glob("*.png"))
    assert len(figures) >= 4, figures
    # Each phase's job read the run config file the workflow resolved (issue 11.1), and its
    # run.json records exactly that run.
    config = validate_config(load(TEST_CONFIG))
    for method, spec in config_methods(config).items():
        expected = RunSpec.from_config(config, "pointmaze-tiny", method)
        for phase in ("pretrain", "finetune") if spec.pretrains else ("finetune",):
            path = workdir / "results" / "configs" / "runs" / "pointmaze-tiny" / method / f"{phase}.json"
            assert RunSpec.read(path, phase) == expected
            record = json.loads(
                (workdir / "results" / "runs" / "pointmaze-tiny" / method / "seed0" / phase / "run.json").read_text()
            )
            assert record["config"] == expected.run


@pytest.mark.slow
def test_second_run_does_nothing(finished_run: tuple[Path, float]) -> None:
    workdir, _ = finished_run
    result = snakemake("--directory", str(workdir), "--cores", "2", "all")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Nothing to be done" in result.stdout, result.stdout[-3000:]


@pytest.mark.slow
def test_editing_unrelated_keys_reruns_only_dependent_jobs(finished_run: tuple[Path, float]) -> None:
    workdir, _ = finished_run
    config = load(workdir / "config" / "config.yaml")
    config["analysis"]["n_bootstrap"] = 100
    config["tracking"] = {"log_checkpoints": False}
    edited = workdir / "edited.yaml"
    edited.write_text(yaml.safe_dump(config))
    out = dry_run("--directory", str(workdir), "--configfile", str(edited))
    assert set(job_counts(out)) == {"aggregate", "tables", "figures", "track", "all"}, out[-3000:]
    # live logging: where runs are logged, not what they compute; passed to jobs, rerunning none
    config["tracking"] = {"live": True, "uri": "http://127.0.0.1:9"}
    edited.write_text(yaml.safe_dump(config))
    out = dry_run("--directory", str(workdir), "--configfile", str(edited))
    assert set(job_counts(out)) == {"aggregate", "tables", "figures", "track", "all"}, out[-3000:]

    config["train"]["finetune"]["env_steps"] = 400
    edited.write_text(yaml.safe_dump(config))
    counts = job_counts(dry_run("--directory", str(workdir), "--configfile", str(edited)))
    assert "pretrain" not in counts and "dataset" not in counts and "label" not in counts
    assert counts["finetune"] == len(config["methods"]) * len(config["seeds"])
    # only the fine-tuning phase's run config files are rewritten, one per method
    assert counts["run_config"] == len(config["methods"]), counts


@pytest.mark.slow
def test_renaming_the_experiment_reruns_no_training(finished_run: tuple[Path, float]) -> None:
    """Issue 12.6: the job config's path (named after `experiment`) is no rerun key; only the
    MLflow import, which files the runs under the experiment's name, runs again."""
    workdir, _ = finished_run
    out = dry_run("--directory", str(workdir), "--config", "experiment=try2")
    assert set(job_counts(out)) == {"track", "all"}, out[-3000:]


@pytest.mark.slow
def test_deleting_one_run_output_recomputes_only_it(finished_run: tuple[Path, float]) -> None:
    workdir, _ = finished_run
    run = workdir / "results" / "runs" / "pointmaze-tiny" / "iql" / "seed1"
    (run / "finetune" / "metrics.csv").unlink()
    untouched = run / "pretrain" / "final.pt"
    before = untouched.stat().st_mtime_ns
    result = snakemake("--directory", str(workdir), "--cores", "2", "all", timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]
    counts = job_counts(result.stdout)
    assert counts["finetune"] == 1 and "pretrain" not in counts and "dataset" not in counts, counts
    assert set(counts) == {"finetune", "track", "aggregate", "tables", "figures", "all"}, counts
    assert (run / "finetune" / "metrics.csv").is_file()
    assert untouched.stat().st_mtime_ns == before


@pytest.mark.slow
def test_failed_job_leaves_partial_results_and_a_relabel(finished_run: tuple[Path, float], tmp_path: Path) -> None:
    """Issues 12.2 and 12.3: a training job fails (its labeled dataset was corrupted after
    labeling). The summary, tables and figures are rebuilt from the runs that finished and say so
    (they used to stay from the previous run, looking current); missing.csv names the failed run
    and its error; the corrupt file is set aside, so the next run relabels it."""
    import h5py
    import pandas as pd

    workdir = tmp_path / "wf"
    shutil.copytree(finished_run[0], workdir, symlinks=True)
    results = workdir / "results"
    labeled = results / "labeled" / "pointmaze-tiny.hdf5"
    stamp = labeled.stat()
    with h5py.File(labeled, "r+") as f:
        f["rewards"][0] = f["rewards"][0] + 1.0
    # Silent corruption (bit rot, a partial copy) keeps the time stamp: Snakemake then plans only
    # the deleted run below, and that job is the one that finds the damage.
    os.utime(labeled, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    (results / "runs/pointmaze-tiny/iql/seed1/finetune/metrics.csv").unlink()
    # The summary, tables, figures and the import record; not the MLflow store's run artifacts,
    # which the idempotent import keeps by design.
    summary_files = [
        p
        for d in ("summary", "figures")
        for p in (results / d).rglob("*")
        if p.is_file() and p.suffix in (".csv", ".md", ".tex", ".png", ".json")
    ]
    summary_files.append(results / "mlflow" / "imported.json")
    assert len(summary_files) > 10
    started = time.time()
    result = snakemake("--directory", str(workdir), "--cores", "2", "all", timeout=900)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "rebuilding the summary" in result.stdout, result.stdout[-3000:]
    # Each old output is either rebuilt or gone (the conventions table of the corrupt, moved-aside
    # labeled dataset has nothing to describe until it is relabeled); none is left as it was.
    stale = [str(p) for p in summary_files if p.exists() and p.stat().st_mtime < started]
    assert not stale, f"outputs of the previous run left as they were: {stale}"
    for name in ("summary/scores.csv", "summary/missing.csv", "summary/tables/scores.md", "mlflow/imported.json"):
        assert (results / name).exists(), f"{name} was not rebuilt"
    missing = pd.read_csv(results / "summary" / "missing.csv")
    failed = missing[(missing["method"] == "iql") & (missing["seed"] == 1) & (missing["phase"] == "finetune")]
    assert list(failed["reason"]) == ["failed"] and "is corrupted" in failed["detail"].iloc[0], missing
    scores_md = (results / "summary" / "tables" / "scores.md").read_text()
    assert "Partial results: 7 of 8 runs complete" in scores_md and "IQL n=1/2" in scores_md, scores_md
    assert not labeled.exists() and list(labeled.parent.glob("pointmaze-tiny.hdf5.corrupt-*"))
    counts = job_counts(dry_run("--directory", str(workdir)))
    assert counts["label"] == 1 and counts["finetune"] == 8, counts


@pytest.mark.slow
@pytest.mark.parametrize("keep_going", [False, True], ids=["stop", "keep-going"])
def test_config_change_with_a_failed_job_reports_no_stale_run(
    finished_run: tuple[Path, float], tmp_path: Path, keep_going: bool
) -> None:
    """Issue 20.1, as measured: train.pretrain.steps 100 -> 150 and one job fails, so some runs
    keep the metrics of the old config (at least iql seed 1's fine-tuning, which never reruns).
    No row of scores.csv or curves.csv may come from the old config: those phases are listed in
    missing.csv as stale, with both hashes and the changed key, and the tables say so."""
    import pandas as pd

    from calql.run_files import phase_hash

    workdir = tmp_path / "wf"
    shutil.copytree(finished_run[0], workdir, symlinks=True)
    results, task = workdir / "results", "pointmaze-tiny"
    config = load(workdir / "config" / "config.yaml")
    assert config["train"]["pretrain"]["steps"] == 100
    config["train"]["pretrain"]["steps"] = 150
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    # iql seed 1's pre-training fails: a checkpoint of another run in its folder is refused.
    failing = results / "runs" / task / "iql" / "seed1" / "pretrain"
    (failing / "checkpoints").mkdir(exist_ok=True)
    shutil.copy(
        results / "runs" / task / "calql" / "seed1" / "pretrain" / "final.pt", failing / "checkpoints" / "last.pt"
    )
    result = snakemake(
        "--directory", str(workdir), "--cores", "2", *(["--keep-going"] if keep_going else []), "all", timeout=900
    )
    assert result.returncode != 0 and "rebuilding the summary" in result.stdout, result.stdout[-3000:]

    current = {m: RunSpec.from_config(validate_config(config), task, m).run for m in config_methods(config)}

    def recorded_hash(method: str, seed: int, phase: str) -> str:
        record = json.loads((results / "runs" / task / method / f"seed{seed}" / phase / "run.json").read_text())
        return record["config_hash"]

    missing = pd.read_csv(results / "summary" / "missing.csv")
    left_out = {(r.method, r.seed, r.phase): r for r in missing.itertuples()}
    assert left_out[("iql", 1, "pretrain")].reason == "failed", missing
    stale = left_out[("iql", 1, "finetune")]
    assert stale.reason == "stale" and "pretrain.steps: 100 -> 150" in stale.detail, missing
    assert (
        phase_hash(current["iql"], "finetune") in stale.detail and recorded_hash("iql", 1, "finetune") in stale.detail
    )
    for row in missing[missing["reason"] == "stale"].itertuples():
        assert recorded_hash(row.method, row.seed, row.phase) != phase_hash(current[row.method], row.phase)
    # Every phase whose numbers are in the tables was made with the current config.
    curves = pd.read_csv(results / "summary" / "curves.csv")
    used = curves[["method", "seed", "phase"]].drop_duplicates().itertuples(index=False)
    for method, seed, phase in used:
        assert recorded_hash(method, seed, phase) == phase_hash(current[method], phase), (method, seed, phase)
    scores = pd.read_csv(results / "summary" / "scores.csv").set_index(["method", "seed"])
    assert scores.loc[("iql", 1), "status"] == "missing" and pd.isna(scores.loc[("iql", 1), "final_score"])
    n_stale = int((scores["stale_phases"] > 0).sum())
    assert n_stale >= 1
    scores_md = (results / "summary" / "tables" / "scores.md").read_text()
    assert f"{n_stale} run(s) with phases made with another config (stale, left out)" in scores_md, scores_md


@pytest.mark.slow
def test_report_holds_figures_and_tables(finished_run: tuple[Path, float]) -> None:
    workdir, _ = finished_run
    report = workdir / "results" / "report.html"
    result = snakemake("--directory", str(workdir), "--report", str(report), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    text = report.read_text(errors="replace")
    for name in ("finetune_curves.png", "calibration.png", "scores.md", "scores.csv"):
        assert name in text, name
