# Shared helpers: config checks, paths, per-rule resources, rerun keys and the targets of `all`.

import json
import os
import re
import shlex
import sys
from pathlib import Path

import yaml

from analysis.config import AnalysisConfig
from analysis.outputs import FIGURE_NAMES, OVERVIEW_TABLE, SUMMARY_FILES, TABLE_NAMES
from calql.atomic import write_text
from calql.config import builtin_rule_resources, validate_config
from calql.data.sources.preflight import check_sources
from calql.errors import CalqlError
from calql import rerun_keys
from calql.run_files import FINAL_PT, METRICS_CSV, RUN_JSON, RunKey, phase_file, raw_dataset_of, runs_dir_of
from calql.agents import config_methods
from calql.training.run_spec import RunSpec, live_tracking_settings

# ----------------------------------------------------------------------------- config
try:
    # The one validation of the schema (schemas/config.schema.yaml, filling its defaults): calql's
    # validator, whose error is one line naming the bad key, with suggestions. Each job validates
    # the written config again when it loads it, in its own process.
    validate_config(config)
    # What can be checked of the data without a job (calql.data.sources.preflight: local files,
    # relative to this working directory; Minari ids; env ids), so `snakemake -n` fails on it. Only
    # in the main process: a cluster job re-parses this file where e.g. the Minari root may differ.
    if workflow.is_main_process:
        _sources = check_sources(config)
        for _note in _sources.notes:
            logger.info(_note)
        _sources.raise_for_problems()
except CalqlError as exc:
    raise WorkflowError(str(exc)) from None

RESULTS = config["results_dir"].rstrip("/")
EXPERIMENT = config["experiment"]
TASKS = list(config["tasks"])
try:
    # Algorithms by name and named variants (calql.agents.registry); a bad entry fails here.
    METHOD_SPECS = config_methods(config)
except CalqlError as exc:
    raise WorkflowError(str(exc)) from None
METHODS = list(METHOD_SPECS)
SEEDS = list(config["seeds"])
LOGS = f"logs/{EXPERIMENT}"
#: The runs folder and one run's folder RUN (calql.run_files.RunKey: the layout every stage shares).
RUNS = runs_dir_of(RESULTS)
RUN = f"{RUNS}/{RunKey.PATTERN}"
#: The resolved run config of one phase of a task x method (rule run_config, calql.training.run_spec).
RUN_CONFIG = f"{RESULTS}/configs/runs/{{task}}/{{method}}/{{phase}}.json"


def run_config_of(phase: str) -> str:
    """RUN_CONFIG of one phase, a pattern in {task} and {method}: that phase's rule input."""
    return RUN_CONFIG.replace("{phase}", phase)


#: Methods that pre-train offline (the others, e.g. SAC from scratch, only fine-tune).
PRETRAINED = [m for m in METHODS if METHOD_SPECS[m].pretrains]


wildcard_constraints:
    task="|".join(re.escape(t) for t in TASKS),
    method="|".join(re.escape(m) for m in METHODS),
    seed=r"\d+",
    phase="pretrain|finetune",


#: The validated config (with --config overrides and defaults) that the data, MLflow-import and
#: analysis jobs read as `--config` (training jobs read their phase's RUN_CONFIG file instead).
#: Its path is fixed per experiment and is not a rule input, so editing a key reruns only the jobs
#: whose own rerun key (below) changes; it is (re)written when the workflow starts executing.
CONFIG_FILE = f"{RESULTS}/configs/{EXPERIMENT}.yaml"


def job_config(wildcards, output) -> str:
    """Param function: the path of the job config (CONFIG_FILE).

    Its name follows `experiment`, which no run's numbers depend on. Taking `output` makes it a
    param "derived from the rule's files", which Snakemake leaves out of its rerun check, so
    renaming the experiment reruns no job; what a job's output depends on is in its `key` param.
    """
    return CONFIG_FILE


def write_effective_config() -> None:
    text = "# Written by the workflow at start: the validated config the data, tracking and analysis jobs read.\n"
    text += yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False)
    path = Path(CONFIG_FILE)
    if not path.exists() or path.read_text() != text:
        write_text(path, text)


onstart:
    write_effective_config()


# Jobs run `python -m calql` with the Python that runs Snakemake (e.g. .venv/bin/python, even when
# the venv is not activated) or, with --sdm conda, with the rule's conda environment; the
# repository root is on PYTHONPATH so that the conda environment finds the package too.
_REPO = Path(workflow.main_snakefile).resolve().parent.parent
_CONDA = "conda" in str(getattr(workflow.deployment_settings, "deployment_method", "")).lower()
_PATH = "" if _CONDA else f'export PATH={shlex.quote(os.path.dirname(sys.executable))}:"$PATH"; '
shell.prefix(
    f"set -euo pipefail; {_PATH}"
    # (braces doubled twice: once for this f-string, once for Snakemake's own formatting)
    f'export PYTHONPATH={shlex.quote(str(_REPO))}"${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; '
)


# ----------------------------------------------------------------------------- run configs
# Resolve every (task, method) run now, the one time it is resolved: a bad `train` or `analysis`
# key fails here, before any job starts (the schema leaves those sections to their stages). Rule
# `run_config` (train.smk) writes one file per phase, which that phase's jobs read as it is.
try:
    RUN_SPECS = {(t, m): RunSpec.from_config(config, t, m) for t in TASKS for m in METHODS}
    AnalysisConfig.from_config(config)
except CalqlError as exc:
    raise WorkflowError(str(exc)) from None


def log_budgets() -> None:
    """One line per task with the resolved training budgets, so `snakemake -n` shows what the
    effective config (presets, overrides and all) will run."""
    for task in TASKS:
        groups: dict[str, list[str]] = {}
        for method in METHODS:
            run = RUN_SPECS[task, method].run
            text = f"finetune {run['finetune']['env_steps']:,} env steps"
            if method in PRETRAINED:
                text = f"pretrain {run['pretrain']['steps']:,} gradient steps, {text}"
            groups.setdefault(text, []).append(method)
        logger.info(f"budget of {task}: " + "; ".join(f"{', '.join(m)}: {t}" for t, m in groups.items()))


log_budgets()


# ----------------------------------------------------------------------------- rerun keys
# Each rule's `params: key=` hashes exactly the settings its output depends on. Snakemake reruns
# a job when that key changes (rerun trigger "params"), and not when an unrelated key changes
# (e.g. the fine-tuning budget does not touch pre-training; `tracking` and `analysis` touch no run).


def data_key(wildcards) -> str:
    return rerun_keys.data_key(config, wildcards.task)


def label_key(wildcards) -> str:
    return rerun_keys.label_key(config, wildcards.task)


def write_run_config(wildcards, path: str, log_path: str) -> None:
    """Job of rule `run_config`. Saves the workflow's own resolution (calql.training.run_spec). By
    hand, `calql pretrain --config C --task T --method M` resolves the same run in one step."""
    RUN_SPECS[wildcards.task, wildcards.method].write(path, wildcards.phase)
    Path(log_path).write_text(f"wrote {path} (rerun key of the {wildcards.phase} phase: {run_config_key(wildcards)})\n")


def run_config_key(wildcards) -> str:
    """A run config file's rerun key is its phase's (train_key): the file is rewritten exactly
    when that phase must rerun. (Its copy of the other phase's budget may then be older than the
    config; the phase does not read it, and its run.json records what the file held.)"""
    return train_key(wildcards.phase)(wildcards)


def live_tracking_option(wildcards, output) -> str:
    """Param function: ` --live-tracking JSON` when tracking.live is on, else nothing. Taking
    `output` keeps it out of Snakemake's rerun check (see job_config): where a run is logged
    changes none of its numbers."""
    settings = live_tracking_settings(config)
    return "" if settings is None else f" --live-tracking {shlex.quote(json.dumps(settings, sort_keys=True))}"


def train_key(phase: str):
    def key(wildcards) -> str:
        return rerun_keys.train_key(config, RUN_SPECS[wildcards.task, wildcards.method].run, phase)

    return key


# ----------------------------------------------------------------------------- resources
#: Used when the config's `resources.default` leaves a key out.
#: Requests of a rule whose config leaves a key out everywhere (the schema's resources.default).
_BUILTIN_RESOURCES = builtin_rule_resources()


def rule_resources(name: str) -> dict:
    """Requests of one rule: built-ins < `resources.default` < `resources.<name>`."""
    res = config.get("resources", {})
    return {**_BUILTIN_RESOURCES, **res.get("default", {}), **res.get(name, {})}


def threads_of(name: str) -> int:
    return int(rule_resources(name)["threads"])


# torch runs `train.threads` threads in each training job; more than the job asked for would
# oversubscribe the cores Snakemake (or Slurm) gave it.
for _name in ("pretrain", "finetune"):
    if config["train"].get("threads", 1) > threads_of(_name):
        logger.warning(
            f"train.threads={config['train']['threads']} exceeds resources.{_name}.threads="
            f"{threads_of(_name)}: each {_name} job would use more cores than it reserves"
        )


def slurm_resources(name: str) -> dict:
    """Snakemake `resources:` of one rule (mem_mb, runtime in minutes, gpu[, gpu_model])."""
    res = rule_resources(name)
    out = {"mem_mb": res["mem_mb"], "runtime": res["runtime"], "gpu": res["gpu"]}
    if res.get("gpu") and res.get("gpu_model"):
        out["gpu_model"] = res["gpu_model"]
    return out


# ----------------------------------------------------------------------------- targets
def runs(phase: str) -> list[dict]:
    """Wildcard values of every run of a phase (pretrain skips the methods that do not pre-train)."""
    methods = PRETRAINED if phase == "pretrain" else METHODS
    return [dict(task=t, method=m, seed=s) for t in TASKS for m in methods for s in SEEDS]


def run_files(pattern: str, phase: str) -> list[str]:
    return [pattern.format(**run) for run in runs(phase)]


def finetune_inputs(wildcards) -> dict:
    """The run config and labeled dataset for every method; the pre-trained checkpoint for
    methods that pre-train."""
    inputs = {
        "run_config": run_config_of("finetune").format(**wildcards),
        "dataset": rules.label.output.labeled.format(task=wildcards.task),
    }
    if wildcards.method in PRETRAINED:
        inputs["init"] = rules.pretrain.output.checkpoint.format(**wildcards)
    return inputs


def all_run_records() -> list[str]:
    """run.json of every phase of every run: the inputs of tracking and aggregation."""
    return run_files(rules.pretrain.output.record, "pretrain") + run_files(rules.finetune.output.record, "finetune")


def all_metrics() -> list[str]:
    return run_files(rules.pretrain.output.metrics, "pretrain") + run_files(rules.finetune.output.metrics, "finetune")


def parent_dir(name: str | None = None):
    """Param function: the folder of the named input/output file (default: the first output), so
    that no param repeats a path prefix of the rule's files."""

    def get(wildcards, input, output) -> str:
        files = {**dict(input.items()), **dict(output.items())}
        path = files[name] if name else output[0]
        path = path[0] if isinstance(path, list) else path
        return str(Path(path).parent)

    return get


# The two param functions below take `output` / `input` only so that Snakemake counts them as
# derived from the rule's files and leaves them out of its rerun check (like `parent_dir`).
def run_dir(wildcards, output) -> str:
    """Param function: RUN of a training job."""
    return str(RunKey(wildcards.task, wildcards.method, int(wildcards.seed)).dir(RUNS))


def runs_dir(wildcards, input) -> str:
    """Param function: RUNS, the folder holding every run a rule reads."""
    return RUNS


# ----------------------------------------------------------------------------- analysis
SUMMARY = f"{RESULTS}/summary"
#: Captions (workflow/report/*.rst) of the outputs shown in `snakemake --report`.
REPORTED_CSV = {"scores.csv": "scores_csv", "missing.csv": "missing_csv"}


def summary_output(name: str):
    """A summary file, wrapped for the report when it has a caption."""
    path = f"{SUMMARY}/{name}"
    if name in REPORTED_CSV:
        return report(path, caption=f"../report/{REPORTED_CSV[name]}.rst", category="Tables")
    return path


def analysis_key(wildcards) -> str:
    return rerun_keys.analysis_key(config)


def summary_outputs() -> list[str]:
    """What the MLflow import, aggregation, tables and figures write."""
    return [*rules.track.output, *rules.aggregate.output, *rules.tables.output, *rules.figures.output]


def rebuild_partial_results() -> None:
    """After a failed job (with or without --keep-going), rebuild the MLflow import, summary,
    tables and figures from the runs that finished: they say "partial" and n=..., missing.csv says
    why each other run is missing, and no output of an earlier run survives looking current.
    (The next complete run replaces them: their inputs are then newer.)"""
    if not workflow.is_main_process:
        return
    for path in summary_outputs():
        Path(path).unlink(missing_ok=True)
    logger.warning(
        f"A job failed: rebuilding the summary, tables and figures from the runs that finished "
        f"(partial; {SUMMARY}/missing.csv says what is missing and why). Log: {LOGS}/partial.log"
    )
    runs = shlex.quote(RUNS)
    log = shlex.quote(f"{LOGS}/partial.log")
    Path(LOGS).mkdir(parents=True, exist_ok=True)
    for cmd in (
        f"python -m calql track --config {shlex.quote(CONFIG_FILE)} --runs-dir {runs}"
        f" --summary {shlex.quote(rules.track.output.summary)}",
        f"python -m analysis all --config {shlex.quote(CONFIG_FILE)} --runs-dir {runs}",
    ):
        try:
            shell(f"{cmd} >> {log} 2>&1")
        except Exception:  # noqa: BLE001 - report and go on: the other step may still work
            logger.error(f"could not rebuild the partial results: `{cmd}` failed (see {LOGS}/partial.log)")


def all_targets() -> list[str]:
    """Every output of every run (not only run.json: Snakemake does not rebuild a deleted file
    whose consumers are up to date unless a target names it), then the summary outputs."""
    return [
        *[
            f
            for phase in ("pretrain", "finetune")
            for out in getattr(rules, phase).output
            for f in run_files(out, phase)
        ],
        *summary_outputs(),
    ]
