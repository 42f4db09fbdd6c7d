"""Online fine-tuning (spec 4, online phase), as the official loop does it.

Repeat until ``env_steps`` reaches the budget: roll out ONE full episode with the stochastic
policy, label it with MC returns exactly as the offline data (spec 2.4), append it to the online
FIFO buffer, then do ``episode length x utd_ratio`` gradient steps on batches of
``int(batch * mixing_ratio)`` offline + the rest online transitions. Evaluate at env step 0, at the
first episode end after each multiple of ``eval_every_env_steps``, and at the end.

Checkpoints are written only at episode ends, so no environment state is ever needed to resume;
episodes are seeded by their index (:mod:`calql.training.seeding`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calql.config import RewardSpec
from calql.data.mc_returns import mc_returns_for_episode
from calql.envs.make import make_env
from calql.errors import CheckpointError, ConfigError
from calql.training.buffers import CLIP_ACTION, OnlineBuffer, mixed_batch
from calql.training.checkpoint import check_identity, load_checkpoint
from calql.training.config import phase_hash, run_algorithm
from calql.training.evaluation import run_episode
from calql.training.phase import LiveLogger, PhaseContext, TrainingPhase, set_aside, termination_requested
from calql.training.run_spec import RunSpec
from calql.training.seeding import derive_seed, seed_everything

log = logging.getLogger(__name__)


def _next_multiple(value: int, every: int) -> int:
    return (value // every + 1) * every


class UniformRandomActor:
    """Uniform actions in [-1, 1] for the first ``finetune.random_steps`` env steps (RLPD's
    ``start_training``); seeded per episode, so a resume at an episode end replays nothing."""

    def __init__(self, act_dim: int, seed: int) -> None:
        self.act_dim = act_dim
        self.rng = torch.Generator().manual_seed(seed)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return torch.rand(obs.shape[0], self.act_dim, generator=self.rng) * 2.0 - 1.0


@dataclass
class FinetuneCounters:
    """Where fine-tuning stands (checkpointed, and in run.json)."""

    grad_step: int = 0
    """Gradient steps done."""
    env_steps: int = 0
    """Online environment steps done (whole episodes)."""
    episodes: int = 0
    """Training episodes done (seeds the next one)."""
    eval_index: int = 0
    """Index of the next evaluation (seeds its episodes)."""
    next_eval: int = 0
    """Evaluate at the first episode end at or after this many env steps."""
    next_checkpoint: int = 0
    """Checkpoint at the first episode end at or after this many env steps."""
    grad_debt: float = 0.0
    """The fraction of a gradient step a fractional UTD ratio carries to the next episode."""
    train_successes: int = 0
    """Training episodes that reached the goal."""
    pending: int = 0
    """Gradient steps of the last episode not done yet."""
    boundary_done: bool = True
    """Whether the last episode's boundary work (evaluation, checkpoint) is done."""


def _unreadable_init(ctx: PhaseContext, init: Path, exc: CheckpointError) -> CheckpointError:
    """The error for an unreadable pre-trained checkpoint. If it is this run's own
    ``pretrain/final.pt``, it is moved aside with the phase's ``run.json`` (kept, renamed), so the
    pre-training phase is incomplete and the next `snakemake` run rebuilds it: no file needs
    deleting by hand. A checkpoint given by hand elsewhere is left where it is."""
    own = ctx.run_dir / "pretrain" / "final.pt"
    if init.resolve() != own.resolve():
        return CheckpointError(f"{exc}; pass another --init or re-run `calql pretrain` to rebuild it")
    aside = set_aside(init, "unreadable")
    record = own.with_name("run.json")
    if record.exists():
        set_aside(record, "unreadable-final")
    log.error("moved the unreadable pre-trained checkpoint %s aside to %s", init, aside)
    return CheckpointError(
        f"{exc}. Moved it aside to {aside}; rerun the same `snakemake` command (its "
        f"pretrain job rebuilds it, then this job runs again), or by hand `calql "
        f"pretrain` with --run-dir {ctx.run_dir}"
    )


def load_init(ctx: PhaseContext, agent: Any, init: Path) -> None:
    """Load the pre-trained agent, refusing one from another task/method/seed/size/pretrain config."""
    if not init.exists():
        raise CheckpointError(
            f"pre-trained checkpoint not found: {init} (run `calql pretrain` for this "
            "task/method/seed first, or pass --init)"
        )
    try:
        state = load_checkpoint(init)
    except CheckpointError as exc:
        raise _unreadable_init(ctx, init, exc) from exc
    expected = {**ctx.identity(), "phase": "pretrain", "config_hash": phase_hash(ctx.run, "pretrain")}
    check_identity(state, expected, init)
    agent.load_state_dict(state["agent"])
    log.info("initialised from %s (pre-trained %s gradient steps)", init, state["counters"].get("grad_step"))


class Finetune(TrainingPhase):
    """Online fine-tuning: episodes, each followed by its gradient steps, then the boundary work.

    The loop is a small state machine so that a checkpoint can be taken between any two gradient
    steps (on SIGTERM): the ``pending`` updates of the last episode, then its boundary work
    (evaluation, periodic checkpoint) once (``boundary_done``), then the next episode.
    """

    name = "finetune"
    unit = "env step"
    counters_type = FinetuneCounters
    counters: FinetuneCounters

    def __init__(self, *args: Any, init: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.init = None if init is None else Path(init)

    def check(self, run: dict[str, Any]) -> None:
        if run["pretrain"] is None:
            if self.init is not None:
                raise ConfigError(f"method '{self.method}' has no pre-training phase: it takes no --init checkpoint")
        elif self.init is None:
            self.init = self.run_dir / "pretrain" / "final.pt"

    def build(self, state: dict[str, Any] | None) -> None:
        from calql.agents import make_agent

        ctx, seed, budget = self.ctx, self.seed, self.budget
        seed_everything(derive_seed(seed, "finetune", "init"))
        self.agent = make_agent(
            run_algorithm(self.run_config), ctx.obs_dim, ctx.act_dim, self.run_config["agent"], self.device
        )
        if self.init is not None and state is None:  # a resume needs no init: the agent comes from last.pt
            load_init(ctx, self.agent, self.init)
        self.agent.set_phase("online")
        seed_everything(derive_seed(seed, "finetune", "rng"))
        self.sampler = np.random.default_rng(derive_seed(seed, "finetune", "sampler"))
        self.env = make_env(
            ctx.task,
            seed=derive_seed(seed, "finetune", "env"),
            evaluation=True,
            dataset_layout=self.dataset.meta.get("obs_layout"),
        )
        self.eval_env = make_env(ctx.task, seed=derive_seed(seed, "finetune", "eval-env"), evaluation=True)
        spec = self.env.spec
        max_len = int(spec.max_episode_steps) if spec and spec.max_episode_steps else int(budget["env_steps"])
        capacity = min(int(budget["buffer_size"]), int(budget["env_steps"]) + max_len)
        self.buffer = OnlineBuffer(capacity, ctx.obs_dim, ctx.act_dim, self.device)
        self.reward_spec = RewardSpec(**self.run_config["reward"])
        # pool_offline: one replay of offline + online data sampled uniformly (mixing_ratio unused)
        self.mixing = None if budget.get("pool_offline") else float(budget["mixing_ratio"])
        self.offline = self.data if self.mixing is None or self.mixing > 0 else None
        self.counters = FinetuneCounters(
            next_eval=int(budget["eval_every_env_steps"]), next_checkpoint=int(budget["checkpoint_every_env_steps"])
        )

    def resume(self, state: dict[str, Any]) -> None:
        super().resume(state)
        self.buffer.load_state_dict(state["buffer"])

    def extra_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    @property
    def total(self) -> int:
        return int(self.budget["env_steps"])

    def done(self) -> int:
        return self.counters.env_steps

    def position(self) -> tuple[int, int]:
        return self.counters.grad_step, self.counters.env_steps

    def close(self) -> None:
        self.env.close()
        self.eval_env.close()

    # ---- the loop -----------------------------------------------------------------------------
    def train(self) -> None:
        counters = self.counters
        while True:
            if counters.pending == 0 and counters.boundary_done:
                if counters.env_steps >= self.total:
                    break
                self.collect_episode()
            self.train_on_episode()
            self.episode_boundary()

    def collect_episode(self) -> None:
        """One full episode with the stochastic policy, labeled like the offline data and added to
        the buffer; it owes ``length x utd_ratio`` gradient steps (a fractional UTD carries over)."""
        counters = self.counters
        random_phase = counters.env_steps < int(self.budget.get("random_steps", 0))
        actor = (
            UniformRandomActor(self.ctx.act_dim, derive_seed(self.seed, "finetune", "random", counters.episodes))
            if random_phase
            else self.agent
        )
        ep = run_episode(
            self.env, actor, derive_seed(self.seed, "finetune", "train", counters.episodes), False, self.device
        )
        train_rewards, mc = mc_returns_for_episode(
            ep["rewards"], ep["terminals"], self.reward_spec, self.run_config["gamma"]
        )
        self.buffer.add(
            {
                "observations": ep["observations"],
                "actions": np.clip(ep["actions"], -CLIP_ACTION, CLIP_ACTION),
                "rewards": train_rewards,
                "next_observations": ep["next_observations"],
                "dones": ep["terminals"].astype(np.float32),
                "mc_returns": mc,
            }
        )
        length = len(ep["rewards"])
        counters.env_steps += length
        counters.episodes += 1
        counters.train_successes += int(ep["success"])
        self.progress_bar(length)
        if not random_phase:  # RLPD's start_training: no gradient steps for the random episodes
            counters.grad_debt += length * float(self.budget["utd_ratio"])
        counters.pending = int(counters.grad_debt)
        counters.grad_debt -= counters.pending
        counters.boundary_done = False

    def train_on_episode(self) -> None:
        """The pending gradient steps of the last episode; on SIGTERM, checkpoint between two."""
        counters, batch_size = self.counters, int(self.budget["batch_size"])
        while counters.pending > 0:
            metrics = self.agent.update(mixed_batch(self.offline, self.buffer, batch_size, self.mixing, self.sampler))
            counters.grad_step += 1
            counters.pending -= 1
            self.recorder.accumulate(metrics, counters.grad_step)
            if termination_requested():
                self.save()
                self.stop_if_terminated(f"env step {counters.env_steps}, gradient step {counters.grad_step}")

    def episode_boundary(self) -> None:
        """Evaluation and periodic checkpoint at the end of the episode, once."""
        counters = self.counters
        if counters.env_steps >= counters.next_eval or counters.env_steps >= self.total:
            self.evaluate_now()
            counters.next_eval = _next_multiple(counters.env_steps, int(self.budget["eval_every_env_steps"]))
        counters.boundary_done = True
        if counters.env_steps < self.total and (
            counters.env_steps >= counters.next_checkpoint or self.checkpoint_overdue()
        ):
            counters.next_checkpoint = _next_multiple(
                counters.env_steps, int(self.budget["checkpoint_every_env_steps"])
            )
            self.save()
            self.stop_if_terminated(f"env step {counters.env_steps}, gradient step {counters.grad_step}")
        self.stop_if_asked("env step")


def run_finetune(
    spec: RunSpec,
    seed: int,
    dataset_path: str | Path,
    run_dir: str | Path,
    *,
    init: str | Path | None = None,
    live: LiveLogger | None = None,
    restart: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Fine-tune the run of ``spec`` (one task x method) online with ``seed``; returns ``RUN/finetune``.

    ``init`` is the pre-training ``final.pt`` (default ``RUN/pretrain/final.pt``); a method without
    pre-training (e.g. SAC from scratch) starts from a fresh agent. Resumes from ``checkpoints/last.pt``.
    ``stop_after`` (tests) raises :class:`~calql.training.phase.StopRequested` at the first
    episode end at or after that many env steps, as if the job had been killed there.
    """
    phase = Finetune(
        spec,
        seed,
        dataset_path,
        run_dir,
        init=init,
        live=live,
        restart=restart,
        progress=progress,
        stop_after=stop_after,
    )
    return phase.run()
