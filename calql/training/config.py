"""The resolved configuration of one run (task x method): budgets, reward, agent hyperparameters.

:func:`resolve_run_config` merges, in increasing priority:

1. the agent's hyperparameter dataclass defaults (``calql.agents``),
2. :data:`calql.training.presets.BASE_TRAIN` and the task's preset (default: its domain),
3. the config's ``train`` section: ``pretrain`` / ``finetune`` / ``score`` / ``overrides.<method>``,
4. ``train.per_task.<task>`` (same keys, for one task).

The result is plain JSON (so it can be hashed, stored in ``run.json`` and checkpoints, and logged
as MLflow params). Unknown keys anywhere raise :class:`ConfigError` naming the key, so a typo in a
hyperparameter never silently runs the default.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

from calql.config import get_task
from calql.errors import CalqlError, ConfigError, suggest
from calql.provenance import config_hash
from calql.training.presets import BASE_TRAIN, get_preset

METHODS = ("calql", "cql", "iql", "sac")
#: Methods that have an offline pre-training phase.
OFFLINE_METHODS = ("calql", "cql", "iql")
#: Methods trained online only: no pre-training phase and no offline data (SAC from scratch).
ONLINE_ONLY_METHODS = tuple(m for m in METHODS if m not in OFFLINE_METHODS)
#: The phases of a run, in order; each has its own folder RUN/<phase>/.
PHASES = ("pretrain", "finetune")


def run_phases(method: str) -> tuple[str, ...]:
    """Phases a run of ``method`` has (methods this package does not know are assumed to pre-train)."""
    return ("finetune",) if method in ONLINE_ONLY_METHODS else PHASES


SCORE_MODES = ("return", "success", "last_reward")
#: Keys of a method's override block that are not agent hyperparameters.
_REWARD_KEY = "reward"
_REWARD_FIELDS = ("scale", "bias")


def _merge(base: dict[str, Any], top: dict[str, Any], where: str) -> dict[str, Any]:
    """Recursive dict merge; ``top`` keys must exist in ``base`` (else ConfigError naming them)."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if key not in out:
            raise ConfigError(f"unknown key '{where}.{key}' (allowed: {', '.join(out)}).{suggest(key, out)}")
        if isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = _merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_hparams(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameter dicts: later wins; the agent's dataclass checks the keys afterwards."""
    out = dict(base)
    out.update(copy.deepcopy(top))
    return out


def agent_hparams(method: str, values: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate ``values`` with the method's hyperparameter dataclass; return all fields (defaults filled)."""
    try:
        obj = hparams_class(method).from_dict(values)
    except CalqlError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{where}: invalid hyperparameters for '{method}': {exc}") from exc
    return json_safe(obj.to_dict())


def hparams_class(method: str) -> type:
    """The agent's hyperparameter dataclass of ``method``."""
    from calql.agents import config_class

    return config_class(method)


def hparam_fields(method: str) -> set[str]:
    return {f.name for f in dataclasses.fields(hparams_class(method))}


def json_safe(obj: Any) -> Any:
    """Tuples -> lists and inf -> "inf", recursively: the dict equals its strict-JSON round trip."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)  # "inf" / "-inf" / "nan": strict JSON; the agent configs parse them back
    return obj


def _check_budgets(run: dict[str, Any], where: str) -> None:
    """Range checks the schema cannot express across merged layers."""
    if run["score"] not in SCORE_MODES:
        raise ConfigError(f"{where}.score must be one of {SCORE_MODES}, got '{run['score']}'")
    ft = run["finetune"]
    if not 0.0 <= float(ft["mixing_ratio"]) <= 1.0:
        raise ConfigError(f"{where}.finetune.mixing_ratio must be in [0, 1], got {ft['mixing_ratio']}")
    for phase, keys in (
        ("pretrain", ("steps", "batch_size", "eval_every", "eval_episodes", "checkpoint_every")),
        (
            "finetune",
            (
                "env_steps",
                "batch_size",
                "eval_every_env_steps",
                "eval_episodes",
                "buffer_size",
                "checkpoint_every_env_steps",
            ),
        ),
    ):
        for key in keys:
            value = run[phase][key]
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "steps" else 1):
                raise ConfigError(f"{where}.{phase}.{key} must be a positive integer, got {value!r}")
    if float(ft["utd_ratio"]) <= 0:
        raise ConfigError(f"{where}.finetune.utd_ratio must be > 0, got {ft['utd_ratio']}")


def resolve_run_config(config: dict[str, Any], task_name: str, method: str) -> dict[str, Any]:
    """The fully resolved, JSON-serialisable configuration of one (task, method) run.

    Seeds are not part of it: every seed of a (task, method) shares this config and its hash.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method '{method}' (known: {', '.join(METHODS)}).{suggest(method, METHODS)}")
    task = get_task(config, task_name)
    train_cfg: dict[str, Any] = config.get("train", {}) or {}
    preset_name = task.preset or task.domain
    preset = get_preset(preset_name)
    method_preset = preset["methods"].get(method, {})

    # --- budgets: base < preset < preset's method block < config < config per task
    budgets = _merge(BASE_TRAIN, preset.get("train", {}), f"presets.{preset_name}.train")
    budgets = _merge(budgets, method_preset.get("train", {}), f"presets.{preset_name}.methods.{method}.train")
    top_level = {k: train_cfg[k] for k in ("pretrain", "finetune", "score") if k in train_cfg}
    budgets = _merge(budgets, top_level, "train")
    per_task_all = train_cfg.get("per_task", {}) or {}
    for name in per_task_all:
        if name not in config["tasks"]:
            raise ConfigError(
                f"train.per_task names unknown task '{name}' (config has: "
                f"{', '.join(config['tasks'])}).{suggest(name, config['tasks'])}"
            )
    per_task = per_task_all.get(task_name, {}) or {}
    budgets = _merge(
        budgets,
        {k: per_task[k] for k in ("pretrain", "finetune", "score") if k in per_task},
        f"train.per_task.{task_name}",
    )

    # --- hyperparameters and reward transform: preset < overrides.<method> < per_task overrides
    hparams = dict(method_preset.get("hparams", {}))
    reward_over: dict[str, float] = dict(method_preset.get(_REWARD_KEY, {}))
    layers = [
        ("train.overrides", train_cfg.get("overrides", {}) or {}),
        (f"train.per_task.{task_name}.overrides", per_task.get("overrides", {}) or {}),
    ]
    for where, layer in layers:
        for name in layer:
            if name not in METHODS:
                raise ConfigError(
                    f"{where} names unknown method '{name}' (known: {', '.join(METHODS)}).{suggest(name, METHODS)}"
                )
        block = dict(layer.get(method, {}) or {})
        if _REWARD_KEY in block:
            extra = set(block[_REWARD_KEY]) - set(_REWARD_FIELDS)
            if extra:
                raise ConfigError(
                    f"{where}.{method}.reward: unknown key(s) {sorted(extra)} (allowed: {', '.join(_REWARD_FIELDS)})"
                )
            reward_over.update(block.pop(_REWARD_KEY))
        hparams = _merge_hparams(hparams, block)

    fields = hparam_fields(method)
    if "gamma" in fields:
        if "gamma" in hparams and float(hparams["gamma"]) != task.gamma:
            raise ConfigError(
                f"hyperparameter gamma={hparams['gamma']} for {task_name}/{method} differs from "
                f"the task's gamma={task.gamma}; set tasks.{task_name}.gamma instead"
            )
        hparams["gamma"] = task.gamma
    if "batch_size" in hparams:
        raise ConfigError(
            f"batch_size is a budget, not an agent hyperparameter: set "
            f"train.pretrain.batch_size / train.finetune.batch_size ({task_name}/{method})"
        )
    resolved_hparams = agent_hparams(method, hparams, f"hyperparameters of {task_name}/{method}")

    reward = dataclasses.asdict(task.reward)
    reward.update(reward_over)
    run: dict[str, Any] = {
        "task": task_name,
        "method": method,
        "domain": task.domain,
        "preset": preset_name,
        "env_id": task.env_id,
        "gamma": task.gamma,
        "reward": reward,
        "score": budgets["score"],
        # the task's score block, else the preset's pinned references (None: the dataset's metadata)
        "ref_min": task.ref_min if task.ref_min is not None else preset.get("score_ref", {}).get("ref_min"),
        "ref_max": task.ref_max if task.ref_max is not None else preset.get("score_ref", {}).get("ref_max"),
        "device": str(train_cfg.get("device", "cpu")),
        "threads": int(train_cfg.get("threads", 1)),
        "calibration_states": int(train_cfg.get("calibration_states", 1000)),
        "pretrain": budgets["pretrain"],
        "finetune": budgets["finetune"],
        "agent": resolved_hparams,
    }
    _check_budgets(run, f"train (task {task_name}, method {method})")
    if method == "sac":
        # SAC from scratch: no pre-training and no offline data in its batches (spec 3).
        run["pretrain"] = None
        run["finetune"]["mixing_ratio"] = 0.0
    return json_safe(run)


def resolve_all(config: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Resolve every (task, method) of the config; the workflow calls this before any job starts."""
    return {(t, m): resolve_run_config(config, t, m) for t in config["tasks"] for m in config["methods"]}


def phase_config(run: dict[str, Any], phase: str) -> dict[str, Any]:
    """What determines one phase's numbers: the run config without the other phase's budgets.

    A pre-training checkpoint stays valid when only the fine-tuning budget changes.
    """
    other = {"pretrain": "finetune", "finetune": "pretrain"}[phase]
    out = {k: v for k, v in run.items() if k != other}
    if phase == "finetune" and run.get("pretrain") is not None:
        out["pretrain_hash"] = config_hash(phase_config(run, "pretrain"))
    return out


def phase_hash(run: dict[str, Any], phase: str) -> str:
    return config_hash(phase_config(run, phase))
