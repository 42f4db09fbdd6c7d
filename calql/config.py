"""Experiment config: load YAML, validate against the JSON schema, fill defaults, pick a task.

The schema (``calql/schemas/config.schema.yaml``) is the single definition of the config; the
workflow validates with the same file (``workflow/schemas/config.schema.yaml`` links to it).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from calql.errors import ConfigError, suggest


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    text = resources.files("calql").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def builtin_rule_resources() -> dict[str, Any]:
    """The requests a rule makes when the config's ``resources.default`` leaves a key out: the
    schema's default of ``resources.default`` (written there only)."""
    return dict(schema()["properties"]["resources"]["properties"]["default"]["default"])


def _extend_with_default(validator_class: type) -> type:
    """The jsonschema recipe that also fills ``default:`` values (as Snakemake's validate does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema_):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if "default" in subschema and prop not in instance:
                    instance[prop] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema_)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_default(jsonschema.Draft202012Validator)


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "<top level>"
    msg = error.message
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed] if isinstance(error.instance, dict) else []
        hints = "".join(suggest(k, allowed) for k in unknown)
        msg = f"unknown key(s) {unknown} (allowed: {', '.join(allowed)}).{hints}"
    return f"config error at '{where}': {msg}"


def _validate(instance: Any, schema_: dict[str, Any], where: tuple[str, ...] = ()) -> None:
    errors = sorted(_Validator(schema_).iter_errors(instance), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        # The deepest error is the most specific one (e.g. a bad key inside a task).
        deepest = max(errors, key=lambda e: len(e.absolute_path))
        deepest.path.extendleft(reversed(where))
        raise ConfigError(_describe(deepest))


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults) and return it; raise ConfigError naming the bad key."""
    _validate(config, schema())
    return config


def validate_section(name: str, section: Any) -> dict[str, Any]:
    """Validate one top-level section (e.g. ``analysis``) on its own, filling its defaults in place;
    errors name the key as in the whole config (``analysis/ci``)."""
    full = schema()
    _validate(section, {"$defs": full.get("$defs", {}), **full["properties"][name]}, (name,))
    return section


#: Top-level key naming a base config (relative to the file) that the file's keys override.
EXTENDS_KEY = "extends"


def merge_config(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merge key by key, anything else (lists too) is replaced,
    as Snakemake merges several ``--configfile`` files."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def read_config_file(path: str | os.PathLike[str], _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Parse a config file without validating it (the workflow merges overrides first).

    A YAML syntax error names the file, line and column (1-based), which Snakemake's own loader
    does not. ``extends: BASE`` (a path relative to the file) makes the file an overlay: its keys
    override BASE's, read the same way (so ``config/paper-smoke.yaml`` is ``config/paper.yaml``
    with smaller budgets, by construction).
    """
    path = Path(path)
    config = _read_yaml(path)
    base_name = config.pop(EXTENDS_KEY, None)
    if base_name is None:
        return config
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: '{EXTENDS_KEY}' must be a file path, got {base_name!r}")
    base_path = (path.parent / base_name).resolve()
    if base_path in _chain or base_path == path.resolve():
        raise ConfigError(f"{path}: '{EXTENDS_KEY}: {base_name}' makes a cycle of config files")
    try:
        base = read_config_file(base_path, (*_chain, path.resolve()))
    except ConfigError as exc:
        raise ConfigError(f"{path} extends {base_name}: {exc}") from exc
    return merge_config(base, config)


def _read_yaml(path: Path) -> dict[str, Any]:
    """One YAML file as a mapping; errors name the file (and line and column)."""
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open(encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = " ".join(filter(None, (getattr(exc, "context", None), getattr(exc, "problem", None))))
        raise ConfigError(f"{where}: not valid YAML: {problem or exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return config


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate an experiment config file."""
    return validate_config(read_config_file(path))


@dataclass(frozen=True)
class RewardSpec:
    """Reward transform and MC-return rule (docs/method.md#reward-transforms, #monte-carlo-returns)."""

    scale: float = 1.0
    bias: float = 0.0
    sparse: bool = False
    negative_reward: float = 0.0
    infinite_horizon: bool = False

    @property
    def scaled_negative(self) -> float:
        """r_neg: the transformed reward of a failed step."""
        return self.negative_reward * self.scale + self.bias


@dataclass(frozen=True)
class TaskSpec:
    """One task of the config: where its data come from and how its environment is made."""

    name: str
    domain: str
    env_id: str
    source: dict[str, Any]
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None
    obs_keys: tuple[str, ...] | None = None
    eval_reset: dict[str, list[int]] | None = None
    reward: RewardSpec = field(default_factory=RewardSpec)
    preprocess: dict[str, bool] = field(default_factory=dict)
    gamma: float = 0.99
    preset: str | None = None
    ref_min: float | None = None
    ref_max: float | None = None

    @classmethod
    def from_config(cls, name: str, task: dict[str, Any]) -> TaskSpec:
        env = task["env"]
        score = task.get("score", {})
        return cls(
            name=name,
            domain=task["domain"],
            env_id=env["id"],
            env_kwargs=dict(env.get("kwargs", {})),
            max_episode_steps=env.get("max_episode_steps"),
            obs_keys=tuple(env["obs_keys"]) if env.get("obs_keys") else None,
            eval_reset=dict(env["eval_reset"]) if env.get("eval_reset") else None,
            source=dict(task["source"]),
            reward=RewardSpec(**task.get("reward", {})),
            preprocess=dict(task.get("preprocess", {})),
            gamma=float(task.get("gamma", 0.99)),
            preset=task.get("preset"),
            ref_min=score.get("ref_min"),
            ref_max=score.get("ref_max"),
        )


def get_task(config: dict[str, Any], name: str) -> TaskSpec:
    tasks = config["tasks"]
    if name not in tasks:
        raise ConfigError(f"unknown task '{name}' (config has: {', '.join(tasks)}).{suggest(name, tasks)}")
    return TaskSpec.from_config(name, tasks[name])
