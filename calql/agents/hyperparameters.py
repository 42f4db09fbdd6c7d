"""Per-method hyperparameters: one dataclass per method, defaults = the official code's.

Defaults follow the official Cal-QL code (nakamotoo/Cal-QL, ``ConservativeSAC.get_default_config``
and ``conservative_sac_main.py`` flags; docs/method.md#sac-backbone, #per-domain-hyperparameters)
and, for IQL, the first author's IQL fork (docs/method.md#baseline-hyperparameters). Domain
presets (e.g. AntMaze: 4x256 critic, Lagrange, gap 0.8) are built on top of these by
``calql.training``. ``from_dict`` rejects unknown keys with a ConfigError that names the key and
suggests close matches, so a typo in a config never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, TypeVar, get_type_hints

from calql.errors import ConfigError, suggest

C = TypeVar("C", bound="AgentConfig")


def _as_hidden(name: str, value: Any) -> tuple[int, ...]:
    """Accept [256, 256], (256, 256) or the official '256-256' string form."""
    if isinstance(value, str):
        parts = [p for p in value.split("-") if p]
        try:
            value = [int(p) for p in parts]
        except ValueError as exc:
            raise ConfigError(f"hyperparameter '{name}': cannot parse layer sizes from {value!r}") from exc
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"hyperparameter '{name}' must be a non-empty list of layer sizes, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"hyperparameter '{name}': layer sizes must be positive integers, got {value!r}")
        out.append(v)
    return tuple(out)


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """Convert a YAML/JSON value to the field's declared type, or raise naming the key."""
    text = str(hint)
    if "tuple[int" in text:
        return _as_hidden(name, value)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"hyperparameter '{name}' may not be null")
    if text.startswith("bool") or hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"hyperparameter '{name}' must be true/false, got {value!r}")
        return value
    if text.startswith("int") or hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"hyperparameter '{name}' must be an integer, got {value!r}")
        return value
    if "float" in text:
        if isinstance(value, bool):
            raise ConfigError(f"hyperparameter '{name}' must be a number, got {value!r}")
        if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "-inf", "infinity", "-infinity"):
            return float(value)
        if not isinstance(value, (int, float)):
            raise ConfigError(f"hyperparameter '{name}' must be a number, got {value!r}")
        return float(value)
    return value


@dataclass
class AgentConfig:
    """Shared plumbing: dict round-trip with strict key checking."""

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any] | None) -> C:
        values = dict(values or {})
        names = [f.name for f in fields(cls)]
        for key in values:
            if key not in names:
                raise ConfigError(
                    f"unknown hyperparameter '{key}' for {cls.__name__} "
                    f"(allowed: {', '.join(sorted(names))}).{suggest(key, names)}"
                )
        hints = get_type_hints(cls)
        kwargs = {k: _coerce(k, hints[k], v) for k, v in values.items()}
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def validate(self) -> None:
        """Raise ConfigError on out-of-range values (subclasses extend)."""

    def _check(self, ok: bool, name: str, rule: str) -> None:
        if not ok:
            raise ConfigError(f"hyperparameter '{name}' = {getattr(self, name)!r} is invalid: must be {rule}")


@dataclass
class SACConfig(AgentConfig):
    """SAC backbone of the official ConservativeSAC (docs/method.md#sac-backbone). Also the `sac`
    (from scratch) method.

    `sac` uses the official code with use_cql=False, so its backup is the max-target backup and
    no entropy term (our reading: no official script trains SAC from scratch;
    docs/method.md#sac-from-scratch-and-hybrid-rl); classic SAC is
    ``max_target_backup: false, backup_entropy: true``.
    """

    gamma: float = 0.99
    """Discount; the training stage passes the task's gamma."""
    policy_lr: float = 1e-4
    """Adam learning rate of the policy and of log alpha (official: same optimizer lr)."""
    qf_lr: float = 3e-4
    """Adam learning rate of each critic (and of the CQL Lagrange log alpha')."""
    tau: float = 5e-3
    """Soft target update rate (official `soft_target_update_rate`), applied every step."""
    policy_hidden: tuple[int, ...] = (256, 256)
    """Policy MLP hidden sizes (official `policy_arch`)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Critic MLP hidden sizes (official `qf_arch`; AntMaze uses 4x256)."""
    orthogonal_init: bool = True
    """Orthogonal init, gain sqrt(2) hidden / 1e-2 output, zero bias (all official scripts set it)."""
    policy_log_std_multiplier: float = 1.0
    """Initial value of the learnable scalar multiplying the raw log-std."""
    policy_log_std_offset: float = -1.0
    """Initial value of the learnable scalar added to the scaled log-std."""
    use_automatic_entropy_tuning: bool = True
    """Learn log alpha (init 0) toward `target_entropy`; else alpha = alpha_multiplier."""
    alpha_multiplier: float = 1.0
    """alpha = exp(log alpha) * alpha_multiplier."""
    target_entropy: float | None = None
    """Entropy target; None (official 0.0 sentinel) means -|A|."""
    backup_entropy: bool = False
    """Subtract alpha * log pi(a'|s') in the Bellman target (off in every official script)."""
    max_target_backup: bool = True
    """Official `cql_max_target_backup`: max over `backup_n_actions` samples of min target Q."""
    backup_n_actions: int | None = None
    """Samples from pi(.|s') for the max-target backup; None = as the official code, which uses
    `cql_n_actions` (10 by default; 10 for `sac`): see :meth:`n_backup_actions`."""
    compile: bool = False
    """torch.compile the loss computation (costs ~25 s per process on CPU; off by default)."""

    def validate(self) -> None:
        self._check(0.0 < self.gamma < 1.0, "gamma", "in (0, 1)")
        for name in ("policy_lr", "qf_lr"):
            self._check(getattr(self, name) > 0, name, "> 0")
        self._check(0.0 < self.tau <= 1.0, "tau", "in (0, 1]")
        self._check(self.backup_n_actions is None or self.backup_n_actions >= 1, "backup_n_actions", ">= 1 or null")
        self._check(self.alpha_multiplier >= 0, "alpha_multiplier", ">= 0")

    def n_backup_actions(self) -> int:
        """Samples of pi(.|s') in the Bellman backup: 1 without the max-target backup, else
        `backup_n_actions`, or when that is null the official default."""
        if not self.max_target_backup:
            return 1
        if self.backup_n_actions is not None:
            return self.backup_n_actions
        return self._official_backup_n_actions()

    def _official_backup_n_actions(self) -> int:
        return 10  # the official code's default `cql_n_actions`, used by the backup also without CQL


@dataclass
class CQLConfig(SACConfig):
    """CQL regularizer of the official code (docs/method.md#cql-critic-loss, #online-switches);
    defaults = get_default_config."""

    cql_n_actions: int = 10
    """N: samples per set (random, pi(.|s), pi(.|s')) in the CQL logsumexp."""
    cql_importance_sample: bool = True
    """Importance-sampled logsumexp; False = raw [Q_rand, Q_data, Q_next, Q_cur] (Kitchen)."""
    cql_temp: float = 1.0
    """Temperature T of T * logsumexp(x / T)."""
    cql_min_q_weight: float = 5.0
    """CQL weight w (fixed alpha, or multiplied by the Lagrange alpha')."""
    cql_lagrange: bool = False
    """Learn alpha' (log alpha' init 1.0) so that the gap approaches `cql_target_action_gap`."""
    cql_target_action_gap: float = 1.0
    """Lagrange target gap tau (AntMaze: 0.8)."""
    cql_clip_diff_min: float = -math.inf
    """Lower clip of logsumexp - Q_data per state (official -inf; CORL -200)."""
    cql_clip_diff_max: float = math.inf
    """Upper clip of logsumexp - Q_data per state."""
    cql_min_q_weight_online: float = -1.0
    """If >= 0, replaces `cql_min_q_weight` in the online phase (official default -1: unchanged)."""
    online_use_cql: bool = True
    """False drops the CQL term (and alpha' loss) online: 'CQL -> SAC' fine-tuning."""

    def validate(self) -> None:
        super().validate()
        self._check(self.cql_n_actions >= 1, "cql_n_actions", ">= 1")
        self._check(self.cql_temp > 0, "cql_temp", "> 0")
        self._check(self.cql_clip_diff_min <= self.cql_clip_diff_max, "cql_clip_diff_min", "<= cql_clip_diff_max")

    def _official_backup_n_actions(self) -> int:
        return self.cql_n_actions  # official: the backup draws as many samples as each CQL set


@dataclass
class CalQLConfig(CQLConfig):
    """Cal-QL = CQL + lower bound of the policy-action values by the MC return
    (docs/method.md#cal-ql-bound)."""

    calibrate_online: bool = True
    """Keep the bound on during fine-tuning (official); False = CORL's variant (off online)."""


@dataclass
class IQLConfig(AgentConfig):
    """IQL as run by the first author for the paper (IQL-F, docs/method.md#baseline-hyperparameters),
    AntMaze defaults."""

    gamma: float = 0.99
    """Discount; the training stage passes the task's gamma."""
    expectile: float = 0.9
    """Expectile tau of the value loss (AntMaze 0.9, Adroit 0.8, Kitchen 0.7)."""
    beta: float = 10.0
    """Inverse temperature of the advantage weights exp(beta * (Q - V)) (AntMaze 10)."""
    max_weight: float = 100.0
    """Clip of the advantage weights."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    tau: float = 5e-3
    """Soft target update rate of the twin Q."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden sizes of actor, critics and value network."""
    dropout: float = 0.0
    """Actor dropout rate (the kitchen preset 0.1, IQL-F on Kitchen; none on AntMaze and Adroit; docs/method.md#baseline-hyperparameters)."""
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    exploration_std: float | None = None
    """If set, stochastic actions use this fixed std around the mean (IQL-F `static_exploration_std`)."""

    def validate(self) -> None:
        self._check(0.0 < self.gamma < 1.0, "gamma", "in (0, 1)")
        self._check(0.0 < self.expectile < 1.0, "expectile", "in (0, 1)")
        self._check(self.beta >= 0, "beta", ">= 0")
        self._check(self.max_weight > 0, "max_weight", "> 0")
        for name in ("actor_lr", "critic_lr", "value_lr"):
            self._check(getattr(self, name) > 0, name, "> 0")
        self._check(0.0 < self.tau <= 1.0, "tau", "in (0, 1]")
        self._check(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)")
        self._check(self.log_std_min < self.log_std_max, "log_std_min", "< log_std_max")
        self._check(self.exploration_std is None or self.exploration_std > 0, "exploration_std", "> 0 or null")


AWAC_WEIGHTS = ("exp", "softmax")


@dataclass
class AWACConfig(AgentConfig):
    """AWAC; defaults = CORL (`corl-team/CORL` `algorithms/finetune/awac.py` with
    `configs/finetune/awac/*.yaml`).

    The paper's baseline is the first author's jaxrl fork (AWAC-F, `nakamotoo/jaxrl` dev_mitsuhiko,
    `examples/configs/awac_default.py` + `run_antmaze.sh`; docs/method.md#baseline-hyperparameters);
    each field names its AWAC-F value. AWAC-F also uses batch 1024 and keeps the offline data in
    the online buffer (loop settings).
    """

    gamma: float = 0.99
    """Discount (CORL and AWAC-F 0.99); the training stage passes the task's gamma."""
    awac_lambda: float = 0.1
    """Temperature lambda of the advantage weights, exp(A / lambda) (CORL yamls 0.1 for AntMaze and
    Adroit; CORL TrainConfig default 1.0). AWAC-F `beta`: 1.0 AntMaze and Adroit, 0.3 Kitchen."""
    advantage_weights: str = "exp"
    """'exp' (CORL): w = min(exp(A / lambda), max_weight), loss -mean(w log pi(a|s)). 'softmax' (AWAC-F):
    w = softmax over the batch of A / lambda, loss -sum(w log pi(a|s))."""
    max_weight: float = 100.0
    """Clip of the 'exp' weights (CORL `exp_adv_max`); AWAC-F's softmax weights have no clip."""
    value_samples: int = 1
    """Policy samples a_k ~ pi(s) in V(s) = min_j mean_k Q_j(s, a_k) (CORL 1; AWAC-F `num_samples` 1 in
    awac_default.py, the jaxrl learner's own default 10)."""
    actor_lr: float = 3e-4
    """Actor Adam learning rate (CORL `learning_rate`; AWAC-F 3e-4)."""
    critic_lr: float = 3e-4
    """Critic Adam learning rate (CORL `learning_rate`; AWAC-F `critic_lr` 3e-4)."""
    actor_weight_decay: float = 0.0
    """Decoupled (AdamW) weight decay of every actor parameter, log-std included (CORL: none, plain
    Adam; AWAC-F: optax.adamw weight_decay 1e-4, no mask)."""
    tau: float = 5e-3
    """Soft target update rate, every step (CORL and AWAC-F 0.005, target_update_period 1)."""
    actor_hidden: tuple[int, ...] = (256, 256, 256)
    """Actor MLP hidden sizes (CORL: 3 x hidden_dim 256, hard-coded; AWAC-F 4 x 256)."""
    critic_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden sizes of each of the twin critics (CORL 3 x 256; AWAC-F 4 x 256)."""
    orthogonal_init: bool = False
    """CORL: torch's default init. AWAC-F (jaxrl `default_init`): orthogonal, gain sqrt(2) for hidden
    layers and the critic output, gain 1 for the actor mean; zero biases."""
    tanh_mean: bool = False
    """Actor mean = tanh(MLP(s)) (AWAC-F NormalTanhPolicy, tanh_squash_distribution=False) instead of
    the raw MLP output (CORL). Either way the distribution is a plain Gaussian, not squashed."""
    log_std_min: float = -20.0
    """Lower clip of the state-independent log-std (CORL -20; AWAC-F jaxrl LOG_STD_MIN -10)."""
    log_std_max: float = 2.0
    """Upper clip of the log-std (CORL and AWAC-F 2)."""
    clip_policy_samples: bool = True
    """Clamp the policy samples of the backup and of V(s) to [-1, 1] (CORL `action.clamp_`); AWAC-F
    uses the unclipped Gaussian samples."""
    data_action_clip: float | None = None
    """If set, the actor step clips the dataset actions to +-this before log pi and Q (AWAC-F
    1 - 1e-5; CORL: no clip). The critic step always uses the dataset actions as they are."""

    def validate(self) -> None:
        self._check(0.0 < self.gamma < 1.0, "gamma", "in (0, 1)")
        self._check(self.awac_lambda > 0, "awac_lambda", "> 0")
        self._check(self.advantage_weights in AWAC_WEIGHTS, "advantage_weights", f"one of {AWAC_WEIGHTS}")
        self._check(self.max_weight > 0, "max_weight", "> 0")
        self._check(self.value_samples >= 1, "value_samples", ">= 1")
        for name in ("actor_lr", "critic_lr"):
            self._check(getattr(self, name) > 0, name, "> 0")
        self._check(self.actor_weight_decay >= 0, "actor_weight_decay", ">= 0")
        self._check(0.0 < self.tau <= 1.0, "tau", "in (0, 1]")
        self._check(self.log_std_min < self.log_std_max, "log_std_min", "< log_std_max")
        clip = self.data_action_clip
        self._check(clip is None or 0.0 < clip <= 1.0, "data_action_clip", "in (0, 1] or null")


@dataclass
class RLPDConfig(AgentConfig):
    """RLPD (`ikostrikov/rlpd`: `rlpd/agents/sac/sac_learner.py`, `configs/rlpd_config.py`) as run by
    the first author for the paper (RLPD-F, `nakamotoo/rlpd` `scripts/run_antmaze.sh`;
    docs/method.md#baseline-hyperparameters).

    Loop settings that are not agent hyperparameters (RLPD-F): `utd_ratio` 20 gradient steps per env
    step, `start_training` 5000 uniform random actions first, `offline_ratio` 0.5 (each minibatch
    half offline, half online), batch 256, no offline pre-training (`pretrain_steps` 0).
    """

    gamma: float = 0.99
    """Discount (RLPD `discount` 0.99); the training stage passes the task's gamma."""
    actor_lr: float = 3e-4
    """Actor Adam learning rate (RLPD td_config)."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critic ensemble (RLPD td_config)."""
    temp_lr: float = 3e-4
    """Adam learning rate of log temperature (RLPD sac_config)."""
    tau: float = 5e-3
    """Soft target update rate of every member, applied after every critic step (RLPD 0.005)."""
    actor_hidden: tuple[int, ...] = (256, 256, 256)
    """Actor MLP hidden sizes: RLPD's one `hidden_dims` for actor and critics; RLPD-F and the RLPD
    README (AntMaze, Adroit) pass "(256, 256, 256)", td_config's default is (256, 256)."""
    critic_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden sizes of each ensemble member (same `hidden_dims` as the actor in RLPD)."""
    num_qs: int = 10
    """Critic ensemble size E (rlpd_config 10)."""
    num_min_qs: int = 2
    """Size M of the random subset of target critics whose min is the backup, one subset per critic
    step for the whole batch (rlpd_config 2, RLPD-F `--config.num_min_qs=2`; the README's AntMaze
    command 1). M = num_qs is the min over all members."""
    critic_layer_norm: bool = True
    """LayerNorm after every hidden Dense of the critics, before the ReLU (rlpd_config True). The
    actor has none."""
    backup_entropy: bool = False
    """Subtract gamma (1 - d) temperature log pi(a'|s') in the target (RLPD-F and README AntMaze/Adroit
    `--config.backup_entropy=False`; sac_config default True)."""
    init_temperature: float = 1.0
    """Initial temperature, log temperature = log(1.0) = 0 (RLPD sac_config)."""
    target_entropy: float | None = None
    """Entropy target of the temperature; None = -|A| / 2 (RLPD's default, not SAC's -|A|)."""
    log_std_min: float = -20.0
    """Lower clip of the actor's state-dependent log-std (RLPD `Normal.log_std_min`)."""
    log_std_max: float = 2.0
    """Upper clip of the actor's log-std (RLPD `Normal.log_std_max`)."""
    actor_update_period: int = 20
    """The actor and temperature are updated on every k-th call of `update`, after its critic step,
    k = RLPD's `utd_ratio` (RLPD-F 20): RLPD does utd_ratio critic steps, then one actor and one
    temperature step on the last minibatch; the training loop calls `update` utd_ratio times per
    env step."""

    def validate(self) -> None:
        self._check(0.0 < self.gamma < 1.0, "gamma", "in (0, 1)")
        for name in ("actor_lr", "critic_lr", "temp_lr"):
            self._check(getattr(self, name) > 0, name, "> 0")
        self._check(0.0 < self.tau <= 1.0, "tau", "in (0, 1]")
        self._check(self.num_qs >= 1, "num_qs", ">= 1")
        self._check(1 <= self.num_min_qs <= self.num_qs, "num_min_qs", "in [1, num_qs]")
        self._check(self.init_temperature > 0, "init_temperature", "> 0")
        self._check(self.log_std_min < self.log_std_max, "log_std_min", "< log_std_max")
        self._check(self.actor_update_period >= 1, "actor_update_period", ">= 1")
