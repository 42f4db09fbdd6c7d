"""The resolved configuration of one run (task x method): typed, frozen, and its JSON form.

A run's config is made in three steps (:mod:`calql.training.resolve`): the config's layers are
merged, the result is validated as a :class:`RunConfig` (its construction checks every range the
schema cannot express across layers), and :meth:`RunConfig.to_json` serialises it into the plain
JSON that the run-config files, ``run.json``, checkpoints, MLflow params and every config hash hold.

The budgets' defaults are written here only, as the fields of :class:`PretrainBudget` and
:class:`FinetuneBudget` (the values every official script shares,
docs/method.md#per-domain-hyperparameters); presets and the config change them.

Hash compatibility lives in the serialiser alone: keys added after runs existed are written only
when they differ from the value all earlier runs had, so those runs keep their hashes (and stay
up to date for Snakemake), and :meth:`RunConfig.from_json` reads either form back.

Values are kept as the config wrote them (an integer stays an integer): their JSON, and so every
hash, is then the same as before this module existed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from calql.errors import ConfigError

SCORE_MODES = ("return", "success", "last_reward")
#: ``finetune.update_schedule``: gradient steps after each episode (official Cal-QL) or after
#: each env step (RLPD, AWAC-F, IQL-F); :mod:`calql.training.finetune`.
UPDATE_SCHEDULES = ("episode", "step")


@dataclass(frozen=True)
class PretrainBudget:
    """Offline pre-training: gradient steps, batches, evaluations, checkpoints."""

    steps: int = 1_000_000
    batch_size: int = 256
    eval_every: int = 50_000
    eval_episodes: int = 20
    checkpoint_every: int = 50_000
    checkpoint_minutes: float = 10.0

    def check(self, where: str) -> None:
        _positive_integers(self, "pretrain", where, zero_ok=("steps",))


@dataclass(frozen=True)
class FinetuneBudget:
    """Online fine-tuning: env steps, replay and update schedule, evaluations, checkpoints."""

    env_steps: int = 1_000_000
    batch_size: int = 256
    mixing_ratio: float = 0.5
    utd_ratio: float = 1.0
    random_steps: int = 0
    pool_offline: bool = False
    update_schedule: str = "episode"
    buffer_size: int = 1_000_000
    eval_every_env_steps: int = 2_000
    eval_episodes: int = 20
    checkpoint_every_env_steps: int = 50_000
    checkpoint_minutes: float = 10.0

    #: Keys added after runs existed: serialised only when not at their default (module doc).
    RECORDED_WHEN_USED = ("random_steps", "pool_offline", "update_schedule")

    def check(self, where: str) -> None:
        if not 0.0 <= float(self.mixing_ratio) <= 1.0:
            raise ConfigError(f"{where}.finetune.mixing_ratio must be in [0, 1], got {self.mixing_ratio}")
        _positive_integers(self, "finetune", where, zero_ok=("random_steps",))
        if float(self.utd_ratio) <= 0:
            raise ConfigError(f"{where}.finetune.utd_ratio must be > 0, got {self.utd_ratio}")
        if self.update_schedule not in UPDATE_SCHEDULES:
            raise ConfigError(
                f"{where}.finetune.update_schedule must be one of {UPDATE_SCHEDULES}, got {self.update_schedule!r}"
            )


def _positive_integers(budget: Any, phase: str, where: str, zero_ok: tuple[str, ...]) -> None:
    """Every integer field of ``budget`` is an int >= 1 (>= 0 for ``zero_ok``)."""
    for f in dataclasses.fields(budget):
        if f.type != "int":  # annotations are strings here (from __future__ import annotations)
            continue
        value = getattr(budget, f.name)
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if f.name in zero_ok else 1):
            raise ConfigError(f"{where}.{phase}.{f.name} must be a positive integer, got {value!r}")


#: The budgets every preset starts from, as the layers to merge (``score``, ``pretrain``,
#: ``finetune``): the dataclass defaults above, so they are written once.
def base_budgets() -> dict[str, Any]:
    return {
        "score": "return",
        "pretrain": dataclasses.asdict(PretrainBudget()),
        "finetune": dataclasses.asdict(FinetuneBudget()),
    }


@dataclass(frozen=True)
class RunConfig:
    """One (task, method) run, shared by its seeds and both phases. Constructing one validates it.

    ``method`` is the config's name (an algorithm or a variant), ``algorithm`` the registered
    algorithm it runs and ``variant`` its overrides ({} for an algorithm listed by name).
    ``pretrain`` is None for an algorithm that trains online only (SAC from scratch).
    """

    task: str
    method: str
    algorithm: str
    domain: str
    preset: str
    env_id: str
    gamma: float
    reward: dict[str, Any]
    score: str
    ref_min: float | None
    ref_max: float | None
    device: str
    threads: int
    calibration_states: int
    pretrain: PretrainBudget | None
    finetune: FinetuneBudget
    agent: dict[str, Any]
    variant: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"train (task {self.task}, method {self.method})"
        if self.score not in SCORE_MODES:
            raise ConfigError(f"{where}.score must be one of {SCORE_MODES}, got '{self.score}'")
        if self.pretrain is not None:
            self.pretrain.check(where)
        self.finetune.check(where)
        self._check_actor_period(where)

    def _check_actor_period(self, where: str) -> None:
        """RLPD steps its actor once per env step: ``actor_update_period`` critic steps, then one
        actor step (ikostrikov/rlpd ``SACLearner.update(batch, utd_ratio)``). The period is an agent
        hyperparameter and the UTD a budget, so a config could change one alone and silently change
        the actor/critic ratio: they must be equal (not derived, so that neither value written in a
        config is ever ignored)."""
        period = self.agent.get("actor_update_period")
        if period is None:
            return
        utd = self.finetune.utd_ratio
        if float(utd) != float(period):
            raise ConfigError(
                f"{where}: finetune.utd_ratio = {utd} but the agent's actor_update_period = {period}; "
                "RLPD updates its actor once per env step, after utd_ratio critic steps, so the two must "
                f"be equal: set both (train.finetune.utd_ratio and overrides.{self.algorithm}.actor_update_period)"
            )

    @property
    def is_variant(self) -> bool:
        return self.method != self.algorithm

    def budget(self, phase: str) -> PretrainBudget | FinetuneBudget:
        """The budget of ``phase`` (``pretrain`` or ``finetune``)."""
        budget = {"pretrain": self.pretrain, "finetune": self.finetune}[phase]
        if budget is None:
            raise ConfigError(f"method '{self.method}' has no {phase} phase")
        return budget

    # ---- the JSON form --------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The serialised run config (what is hashed and recorded); see the module doc."""
        finetune = dataclasses.asdict(self.finetune)
        defaults = FinetuneBudget()
        for key in FinetuneBudget.RECORDED_WHEN_USED:
            if finetune[key] == getattr(defaults, key):
                del finetune[key]
        out: dict[str, Any] = {
            "task": self.task,
            "method": self.method,
            "domain": self.domain,
            "preset": self.preset,
            "env_id": self.env_id,
            "gamma": self.gamma,
            "reward": self.reward,
            "score": self.score,
            "ref_min": self.ref_min,
            "ref_max": self.ref_max,
            "device": self.device,
            "threads": self.threads,
            "calibration_states": self.calibration_states,
            "pretrain": dataclasses.asdict(self.pretrain) if self.pretrain is not None else None,
            "finetune": finetune,
            "agent": self.agent,
        }
        if self.is_variant:
            # An algorithm listed by name records neither (they equal `method` and {}): runs made
            # before variants existed keep their hashes.
            out["algorithm"] = self.algorithm
            out["variant"] = self.variant
        return json_safe(out)

    @classmethod
    def from_json(cls, run: dict[str, Any]) -> RunConfig:
        """Read a serialised run config back (keys :meth:`to_json` leaves out take their defaults)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(run) - fields
        if unknown:
            raise ConfigError(f"run config of {run.get('task')}/{run.get('method')} has unknown keys {sorted(unknown)}")
        values = dict(run)
        values["algorithm"] = run_algorithm(run)
        values["variant"] = run_variant(run)
        values["pretrain"] = PretrainBudget(**run["pretrain"]) if run.get("pretrain") is not None else None
        values["finetune"] = FinetuneBudget(**run["finetune"])
        return cls(**values)


def run_algorithm(run: dict[str, Any]) -> str:
    """The registered algorithm of a serialised run config (a variant records it; else its method)."""
    return str(run.get("algorithm", run["method"]))


def run_variant(run: dict[str, Any]) -> dict[str, Any]:
    """The overrides of a serialised run config's variant ({} for an algorithm listed by name)."""
    return dict(run.get("variant") or {})


def json_safe(obj: Any) -> Any:
    """Tuples -> lists and inf -> "inf", recursively: the dict equals its strict-JSON round trip."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)  # "inf" / "-inf" / "nan": strict JSON; the agent configs parse them back
    return obj
