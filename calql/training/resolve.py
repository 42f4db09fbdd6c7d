"""Resolve one run (task x method) of a config: merge its layers, validate, serialise.

:func:`merge_layers` merges, in increasing priority:

1. the agent's hyperparameter dataclass defaults (``calql.agents``),
2. the budgets' dataclass defaults (:func:`calql.training.run_config.base_budgets`) and the
   task's preset (default: its domain; :mod:`calql.training.presets`),
3. the config's ``train`` section: ``pretrain`` / ``finetune`` / ``score`` / ``overrides.<method>``,
4. ``train.per_task.<task>`` (same keys, for one task).

Unknown keys anywhere raise :class:`ConfigError` naming the key, so a typo in a hyperparameter
never silently runs the default. :func:`resolve` turns the merged values into a validated
:class:`~calql.training.run_config.RunConfig`, and :func:`resolve_run_config` serialises it
(:meth:`RunConfig.to_json`): the plain JSON that is hashed, stored in ``run.json`` and checkpoints,
and logged as MLflow params. The config must be validated (:func:`calql.config.load_config`),
so that the schema's defaults are filled in.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from calql.config import TaskSpec, get_task
from calql.errors import CalqlError, ConfigError, suggest
from calql.run_files.layout import PHASES
from calql.training.presets import get_preset
from calql.training.run_config import FinetuneBudget, PretrainBudget, RunConfig, base_budgets, json_safe, run_algorithm

__all__ = [
    "MergedRun",
    "agent_hparams",
    "merge_layers",
    "resolve",
    "resolve_all",
    "resolve_run_config",
    "run_algorithm",
    "run_phases",
]


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


#: Keys of a method's override block that are not agent hyperparameters.
_REWARD_KEY = "reward"
#: Keys of a method's override block that are its budgets (merged like train.pretrain/finetune).
_BUDGET_KEYS = ("pretrain", "finetune")
_REWARD_FIELDS = ("scale", "bias")
_BUDGET_SECTIONS = ("pretrain", "finetune", "score")


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


@dataclass(frozen=True)
class MergedRun:
    """The layers of one run merged, before validation: budgets (``score``, ``pretrain``,
    ``finetune``), agent hyperparameters and the reward override, and where they came from
    (the config's method entry ``spec``, the task and its preset)."""

    spec: Any  # calql.agents.registry.Method
    task: TaskSpec
    budgets: dict[str, Any]
    hparams: dict[str, Any]
    reward: dict[str, float]
    preset_name: str
    preset: dict[str, Any]


def merge_layers(config: dict[str, Any], task_name: str, method: str) -> MergedRun:
    """Merge the layers (module doc) of one run; unknown keys and names are ConfigErrors."""
    from calql.agents import get_method

    spec = get_method(config, method)
    algo = spec.algorithm.name
    train_cfg: dict[str, Any] = config["train"]
    task = get_task(config, task_name)
    preset_name = task.preset or task.domain
    preset = get_preset(preset_name)
    method_preset = preset["methods"].get(algo, {})

    # --- budgets: base < preset < preset's method block < config < config per task
    budgets = _merge(base_budgets(), preset.get("train", {}), f"presets.{preset_name}.train")
    budgets = _merge(budgets, method_preset.get("train", {}), f"presets.{preset_name}.methods.{algo}.train")
    budgets = _merge(budgets, {k: train_cfg[k] for k in _BUDGET_SECTIONS if k in train_cfg}, "train")
    per_task = _per_task(config, train_cfg, task_name)
    budgets = _merge(
        budgets, {k: per_task[k] for k in _BUDGET_SECTIONS if k in per_task}, f"train.per_task.{task_name}"
    )

    # --- hyperparameters and reward transform, later wins: the algorithm's preset, then for each
    # of train.overrides and train.per_task.<task>.overrides its block for the algorithm; the
    # variant's own overrides; then each layer's block for the variant by name.
    hparams = dict(method_preset.get("hparams", {}))
    reward: dict[str, float] = dict(method_preset.get(_REWARD_KEY, {}))
    for where, block_values in _override_blocks(config, train_cfg, per_task, task_name, method, spec):
        block = dict(block_values or {})
        if _REWARD_KEY in block:
            unknown = set(block[_REWARD_KEY]) - set(_REWARD_FIELDS)
            if unknown:
                raise ConfigError(
                    f"{where}.reward: unknown key(s) {sorted(unknown)} (allowed: {', '.join(_REWARD_FIELDS)})"
                )
            reward.update(block.pop(_REWARD_KEY))
        # A method's own budgets (e.g. RLPD's random steps in a smoke test): over the budgets of
        # every other layer, since a method's block is the most specific.
        method_budgets = {k: block.pop(k) for k in _BUDGET_KEYS if k in block}
        budgets = _merge(budgets, method_budgets, where)
        hparams = _merge_hparams(hparams, block)
    return MergedRun(spec, task, budgets, hparams, reward, preset_name, preset)


def _per_task(config: dict[str, Any], train_cfg: dict[str, Any], task_name: str) -> dict[str, Any]:
    """``train.per_task.<task_name>`` ({} if absent); a block for a task the config lacks is an error."""
    per_task_all = train_cfg.get("per_task", {}) or {}
    for name in per_task_all:
        if name not in config["tasks"]:
            raise ConfigError(
                f"train.per_task names unknown task '{name}' (config has: "
                f"{', '.join(config['tasks'])}).{suggest(name, config['tasks'])}"
            )
    return per_task_all.get(task_name, {}) or {}


def _override_blocks(
    config: dict[str, Any], train_cfg: dict[str, Any], per_task: dict[str, Any], task_name: str, method: str, spec: Any
) -> list[tuple[str, dict[str, Any] | None]]:
    """(where, block) of every override layer that applies to ``method``, lowest priority first."""
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
    algo = spec.algorithm.name
    blocks = [(f"{where}.{algo}", layer.get(algo)) for where, layer in layers]
    if spec.is_variant:
        blocks.append((f"methods.{method}.overrides", spec.overrides))
        blocks += [(f"{where}.{method}", layer.get(method)) for where, layer in layers]
    return blocks


def resolve(config: dict[str, Any], task_name: str, method: str) -> RunConfig:
    """The validated :class:`RunConfig` of one (task, method) run of a validated config.

    Seeds are not part of it: every seed of a (task, method) shares this config and its hash.
    ``method`` is a method of the config's ``methods`` (an algorithm or a named variant of one).
    Presets are per algorithm, so a variant starts from its algorithm's preset.
    """
    merged = merge_layers(config, task_name, method)
    spec, task, algorithm = merged.spec, merged.task, merged.spec.algorithm
    train_cfg = config["train"]
    score_ref = merged.preset.get("score_ref", {})
    finetune = merged.budgets["finetune"]
    if not algorithm.offline_data_online:  # SAC from scratch: no offline data in its batches
        finetune = {**finetune, "mixing_ratio": 0.0, "pool_offline": False}
    return RunConfig(
        task=task_name,
        method=method,
        algorithm=algorithm.name,
        variant=json_safe(spec.overrides) if spec.is_variant else {},
        domain=task.domain,
        preset=merged.preset_name,
        env_id=task.env_id,
        gamma=task.gamma,
        reward={**dataclasses.asdict(task.reward), **merged.reward},
        score=merged.budgets["score"],
        # the task's score block, else the preset's pinned references (None: the dataset's metadata)
        ref_min=task.ref_min if task.ref_min is not None else score_ref.get("ref_min"),
        ref_max=task.ref_max if task.ref_max is not None else score_ref.get("ref_max"),
        device=str(train_cfg["device"]),
        threads=int(train_cfg["threads"]),
        calibration_states=int(train_cfg["calibration_states"]),
        # SAC from scratch (docs/method.md) has no pre-training phase
        pretrain=PretrainBudget(**merged.budgets["pretrain"]) if algorithm.pretrains else None,
        finetune=FinetuneBudget(**finetune),
        agent=_agent_hparams_of(merged.hparams, algorithm.name, task, f"{task_name}/{method}"),
    )


def _agent_hparams_of(hparams: dict[str, Any], algorithm: str, task: Any, name: str) -> dict[str, Any]:
    """The algorithm's full hyperparameters: the merged ones, the task's discount, the defaults."""
    hparams = dict(hparams)
    if "gamma" in hparam_fields(algorithm):
        if "gamma" in hparams and float(hparams["gamma"]) != task.gamma:
            raise ConfigError(
                f"hyperparameter gamma={hparams['gamma']} for {name} differs from "
                f"the task's gamma={task.gamma}; set tasks.{task.name}.gamma instead"
            )
        hparams["gamma"] = task.gamma
    if "batch_size" in hparams:
        raise ConfigError(
            f"batch_size is a budget, not an agent hyperparameter: set "
            f"train.pretrain.batch_size / train.finetune.batch_size ({name})"
        )
    return agent_hparams(algorithm, hparams, f"hyperparameters of {name}")


def resolve_run_config(config: dict[str, Any], task_name: str, method: str) -> dict[str, Any]:
    """The serialised run config of one (task, method): ``resolve(...).to_json()``."""
    return resolve(config, task_name, method).to_json()


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
