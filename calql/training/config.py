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

#: The phases of a run, in order; each has its own folder RUN/<phase>/.
PHASES = ("pretrain", "finetune")


def run_phases(method: str, config: dict[str, Any] | None = None) -> tuple[str, ...]:
    """Phases a run of ``method`` (a method of ``config``, else a registered algorithm) has.
    A name neither knows (e.g. runs of an algorithm registered in another process) is assumed
    to pre-train."""
    from calql.agents import get_method

    try:
        pretrains = get_method(config or {}, method).pretrains
    except ConfigError:
        return PHASES
    return PHASES if pretrains else ("finetune",)


SCORE_MODES = ("return", "success", "last_reward")
#: Fine-tuning budget keys added after runs existed: recorded in a run config only when not at
#: their default, so older run folders keep their config hash.
_RECORDED_WHEN_USED: dict[str, Any] = {"random_steps": 0, "pool_offline": False, "update_schedule": "episode"}
#: ``finetune.update_schedule``: gradient steps after each episode (official Cal-QL) or after
#: each env step (RLPD, AWAC-F, IQL-F); :mod:`calql.training.finetune`.
UPDATE_SCHEDULES = ("episode", "step")
#: Keys of a method's override block that are not agent hyperparameters.
_REWARD_KEY = "reward"
#: Keys of a method's override block that are its budgets (merged like train.pretrain/finetune).
_BUDGET_KEYS = ("pretrain", "finetune")
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


def agent_hparams(algorithm: str, values: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate ``values`` with the algorithm's hyperparameter dataclass; return all fields (defaults filled)."""
    try:
        obj = hparams_class(algorithm).from_dict(values)
    except CalqlError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{where}: invalid hyperparameters for '{algorithm}': {exc}") from exc
    return json_safe(obj.to_dict())


def hparams_class(algorithm: str) -> type:
    """The agent's hyperparameter dataclass of ``algorithm``."""
    from calql.agents import config_class

    return config_class(algorithm)


def hparam_fields(algorithm: str) -> set[str]:
    return {f.name for f in dataclasses.fields(hparams_class(algorithm))}


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
                "random_steps",
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
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or value < (0 if key in ("steps", "random_steps") else 1)
            ):
                raise ConfigError(f"{where}.{phase}.{key} must be a positive integer, got {value!r}")
    if float(ft["utd_ratio"]) <= 0:
        raise ConfigError(f"{where}.finetune.utd_ratio must be > 0, got {ft['utd_ratio']}")
    if ft["update_schedule"] not in UPDATE_SCHEDULES:
        raise ConfigError(
            f"{where}.finetune.update_schedule must be one of {UPDATE_SCHEDULES}, got {ft['update_schedule']!r}"
        )


def _check_actor_period(run: dict[str, Any], where: str) -> None:
    """RLPD steps its actor once per env step: ``actor_update_period`` critic steps, then one
    actor step (ikostrikov/rlpd ``SACLearner.update(batch, utd_ratio)``). The period is an agent
    hyperparameter and the UTD a budget, so a config could change one alone and silently change
    the actor/critic ratio: they must be equal (not derived, so that neither value written in a
    config is ever ignored)."""
    period = run["agent"].get("actor_update_period")
    if period is None:
        return
    utd = run["finetune"]["utd_ratio"]
    if float(utd) != float(period):
        raise ConfigError(
            f"{where}: finetune.utd_ratio = {utd} but the agent's actor_update_period = {period}; "
            "RLPD updates its actor once per env step, after utd_ratio critic steps, so the two must "
            f"be equal: set both (train.finetune.utd_ratio and overrides.{run_algorithm(run)}.actor_update_period)"
        )


def resolve_run_config(config: dict[str, Any], task_name: str, method: str) -> dict[str, Any]:
    """The fully resolved, JSON-serialisable configuration of one (task, method) run.

    Seeds are not part of it: every seed of a (task, method) shares this config and its hash.
    ``method`` is a method of the config's ``methods`` (an algorithm or a named variant of one).
    Presets are per algorithm, so a variant starts from its algorithm's preset.
    """
    from calql.agents import get_method

    spec = get_method(config, method)
    algo = spec.algorithm.name
    task = get_task(config, task_name)
    train_cfg: dict[str, Any] = config.get("train", {}) or {}
    preset_name = task.preset or task.domain
    preset = get_preset(preset_name)
    method_preset = preset["methods"].get(algo, {})

    # --- budgets: base < preset < preset's method block < config < config per task
    budgets = _merge(BASE_TRAIN, preset.get("train", {}), f"presets.{preset_name}.train")
    budgets = _merge(budgets, method_preset.get("train", {}), f"presets.{preset_name}.methods.{algo}.train")
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

    # --- hyperparameters and reward transform, later wins: the algorithm's preset, then for each
    # of train.overrides and train.per_task.<task>.overrides its block for the algorithm; the
    # variant's own overrides; then each layer's block for the variant by name.
    hparams = dict(method_preset.get("hparams", {}))
    reward_over: dict[str, float] = dict(method_preset.get(_REWARD_KEY, {}))
    layers = [
        ("train.overrides", train_cfg.get("overrides", {}) or {}),
        (f"train.per_task.{task_name}.overrides", per_task.get("overrides", {}) or {}),
    ]
    known = _override_names(config)
    for where, layer in layers:
        for name in layer:
            if name not in known:
                raise ConfigError(
                    f"{where} names unknown method '{name}' (known: {', '.join(known)}).{suggest(name, known)}"
                )
    blocks = [(f"{where}.{algo}", layer.get(algo)) for where, layer in layers]
    if spec.is_variant:
        blocks.append((f"methods.{method}.overrides", spec.overrides))
        blocks += [(f"{where}.{method}", layer.get(method)) for where, layer in layers]
    for where, block_values in blocks:
        block = dict(block_values or {})
        if _REWARD_KEY in block:
            unknown = set(block[_REWARD_KEY]) - set(_REWARD_FIELDS)
            if unknown:
                raise ConfigError(
                    f"{where}.reward: unknown key(s) {sorted(unknown)} (allowed: {', '.join(_REWARD_FIELDS)})"
                )
            reward_over.update(block.pop(_REWARD_KEY))
        # A method's own budgets (e.g. RLPD's random steps in a smoke test): over the budgets of
        # every other layer, since a method's block is the most specific.
        method_budgets = {k: block.pop(k) for k in _BUDGET_KEYS if k in block}
        budgets = _merge(budgets, method_budgets, where)
        hparams = _merge_hparams(hparams, block)

    fields = hparam_fields(algo)
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
    resolved_hparams = agent_hparams(algo, hparams, f"hyperparameters of {task_name}/{method}")

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
    if spec.is_variant:
        # Only variants record these: for an algorithm listed by name they equal `method` and {},
        # and leaving them out keeps the config hash (and so every existing run) unchanged.
        run["algorithm"] = algo
        run["variant"] = json_safe(spec.overrides)
    _check_budgets(run, f"train (task {task_name}, method {method})")
    _check_actor_period(run, f"train (task {task_name}, method {method})")
    for key, default in _RECORDED_WHEN_USED.items():
        # Like a variant's `algorithm`: the hash of every run that does not use these (all runs
        # made before the keys existed) stays unchanged.
        if run["finetune"][key] == default:
            del run["finetune"][key]
    if not spec.algorithm.pretrains:  # e.g. SAC from scratch (docs/method.md): no pre-training phase
        run["pretrain"] = None
    if not spec.algorithm.offline_data_online:  # SAC from scratch: no offline data in its batches
        run["finetune"]["mixing_ratio"] = 0.0
        run["finetune"].pop("pool_offline", None)
    return json_safe(run)


def run_algorithm(run: dict[str, Any]) -> str:
    """The registered algorithm of a resolved run config (a variant records it; else its method)."""
    return str(run.get("algorithm", run["method"]))


def _override_names(config: dict[str, Any]) -> list[str]:
    """Names an override block may use: the config's methods, then every registered algorithm."""
    from calql.agents import algorithm_names, config_methods

    names = list(config_methods(config))
    return names + [n for n in algorithm_names() if n not in names]


def resolve_all(config: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Resolve every (task, method) of the config; the workflow calls this before any job starts."""
    from calql.agents import config_methods

    methods = config_methods(config)
    return {(t, m): resolve_run_config(config, t, m) for t in config["tasks"] for m in methods}


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
