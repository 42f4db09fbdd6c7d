"""Online fine-tuning (docs/method.md#online-fine-tuning), under one of two update schedules.

``finetune.update_schedule`` says when the gradient steps happen:

- ``episode`` (the official Cal-QL loop, also CQL and Hybrid RL; nakamotoo/Cal-QL @ ac6eafe,
  ``JaxCQL/conservative_sac_main.py`` lines 199-239): roll out ONE full episode with the
  stochastic policy, label it with MC returns exactly as the offline data
  (docs/method.md#online-episodes), append it to the online FIFO buffer, then do
  ``episode length x utd_ratio`` gradient steps;
- ``step`` (RLPD, AWAC-F, IQL-F: ikostrikov/rlpd ``train_finetuning.py``, nakamotoo/jaxrl
  dev_mitsuhiko @ 1c7459c ``examples/train_finetuning.py``, nakamotoo/implicit_q_learning
  dev_mitsuhiko @ 0b14c52 ``train_finetune.py``): after every environment step, add the
  transition to the buffer and do ``utd_ratio`` gradient steps right away, so the policy acting
  next already learned from it. A transition's MC return is known only when its episode ends: it
  is -inf until then (Cal-QL's bound max(Q, G) then leaves the row unbounded) and written into the
  buffer at the episode's end.

Batches are ``int(batch * mixing_ratio)`` offline + the rest online transitions, or uniform over
one pooled FIFO of offline and online data (``pool_offline``, AWAC-F; :mod:`calql.training.buffers`).
``random_steps`` (RLPD's ``start_training``): uniform random actions and no gradient steps for the
first that many env steps: per step under ``step``, for whole episodes under ``episode``.
Evaluate at env step 0, at the first episode end after each multiple of ``eval_every_env_steps``,
and at the end, under both schedules.

Checkpoints are written only at episode ends, so no environment state is ever needed to resume;
episodes are seeded by their index (:mod:`calql.training.seeding`). Under ``episode`` a SIGTERM is
honoured between two gradient steps of an episode's burst (checkpoint, then stop). Under ``step``
a SIGTERM inside an episode stops the job WITHOUT a checkpoint (the environment's state cannot be
saved): the rerun resumes from the last episode-end checkpoint and replays the episodes since,
with the same numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calql.atomic import set_aside
from calql.config import RewardSpec
from calql.data.mc_returns import mc_returns_for_episode, transform_rewards
from calql.envs.make import make_env
from calql.errors import CheckpointError, ConfigError
from calql.run_files import FINAL_PT, RUN_JSON, phase_hash
from calql.training.buffers import CLIP_ACTION, MixedReplay, OnlineBuffer, PooledReplay
from calql.training.checkpoint import check_identity, load_checkpoint
from calql.training.evaluation import EvalEnvs, policy_action, run_episode
from calql.training.phase import LiveLogger, TrainingPhase
from calql.training.phase_files import PhaseContext
from calql.training.resolve import run_algorithm
from calql.training.run_spec import RunSpec
from calql.training.seeding import derive_seed, seed_everything
from calql.training.signals import TrainingTerminated, termination_requested

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
    """Online environment steps done (whole episodes at every checkpoint, under both schedules)."""
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
    """Gradient steps owed and not done yet (of the last episode; of the last env step under ``step``)."""
    boundary_done: bool = True
    """Whether the last episode's boundary work (evaluation, checkpoint) is done."""


def _unreadable_init(ctx: PhaseContext, init: Path, exc: CheckpointError) -> CheckpointError:
    """The error for an unreadable pre-trained checkpoint. If it is this run's own
    ``pretrain/final.pt``, it is moved aside with the phase's ``run.json`` (kept, renamed), so the
    pre-training phase is incomplete and the next `snakemake` run rebuilds it: no file needs
    deleting by hand. A checkpoint given by hand elsewhere is left where it is."""
    own = ctx.run_dir / "pretrain" / FINAL_PT
    if init.resolve() != own.resolve():
        return CheckpointError(f"{exc}; pass another --init or re-run `calql pretrain` to rebuild it")
    aside = set_aside(init, "unreadable")
    record = own.with_name(RUN_JSON)
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
    """Online fine-tuning: episodes with their gradient steps (after the episode, or after each of
    its env steps: ``update_schedule``), then the boundary work.

    The loop is a small state machine so that, under ``episode``, a checkpoint can be taken
    between any two gradient steps (on SIGTERM): the ``pending`` updates of the last episode, then
    its boundary work (evaluation, periodic checkpoint) once (``boundary_done``), then the next
    episode. Under ``step`` an episode's updates are done inside it, and ``pending`` is 0 at its end.
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
            self.init = self.run_dir / "pretrain" / FINAL_PT

    def build(self, state: dict[str, Any] | None) -> None:
        from calql.agents import make_agent

        ctx, seed, budget = self.ctx, self.seed, self.budget
        seed_everything(derive_seed(seed, "finetune", "init"))
        self.agent = make_agent(
            run_algorithm(self.run_config), ctx.obs_dim, ctx.act_dim, self.run_config["agent"], self.device
        )
        if self.init is not None and state is None:  # a resume needs no init: the agent comes from last.pt
            load_init(ctx, self.agent, self.init)
        self.agent.set_mode("online")
        seed_everything(derive_seed(seed, "finetune", "rng"))
        self.sampler = np.random.default_rng(derive_seed(seed, "finetune", "sampler"))
        self.env = make_env(
            ctx.task,
            seed=derive_seed(seed, "finetune", "env"),
            evaluation=True,
            dataset_layout=self.dataset.meta.get("obs_layout"),
        )
        eval_seed = derive_seed(seed, "finetune", "eval-env")
        self.eval_envs = EvalEnvs(lambda: make_env(ctx.task, seed=eval_seed, evaluation=True))
        spec = self.env.spec
        max_len = int(spec.max_episode_steps) if spec and spec.max_episode_steps else int(budget.env_steps)
        capacity = min(int(budget.buffer_size), int(budget.env_steps) + max_len)
        self.buffer = OnlineBuffer(capacity, ctx.obs_dim, ctx.act_dim, self.device)
        self.reward_spec = RewardSpec(**self.run_config["reward"])
        # pool_offline: one FIFO of offline + online data sampled uniformly (mixing_ratio unused)
        self.replay: MixedReplay | PooledReplay = (
            PooledReplay(self.data, self.buffer, int(budget.buffer_size))
            if budget.pool_offline
            else MixedReplay(self.data, self.buffer, float(budget.mixing_ratio))
        )
        self.per_step = budget.update_schedule == "step"
        self.counters = FinetuneCounters(
            next_eval=int(budget.eval_every_env_steps), next_checkpoint=int(budget.checkpoint_every_env_steps)
        )

    def resume(self, state: dict[str, Any]) -> None:
        super().resume(state)
        self.buffer.load_state_dict(state["buffer"])

    def extra_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    @property
    def total(self) -> int:
        return int(self.budget.env_steps)

    def done(self) -> int:
        return self.counters.env_steps

    def position(self) -> tuple[int, int]:
        return self.counters.grad_step, self.counters.env_steps

    def close(self) -> None:
        self.env.close()
        self.eval_envs.close()

    # ---- the loop -----------------------------------------------------------------------------
    def train(self) -> None:
        counters = self.counters
        # the update schedule, the one choice between the references' loops (module docstring)
        play_episode = self.play_episode_per_step if self.per_step else self.collect_episode
        while True:
            if counters.pending == 0 and counters.boundary_done:
                if counters.env_steps >= self.total:
                    break
                play_episode()
            self.train_on_episode()
            self.episode_boundary()

    def _actor(self, random_phase: bool) -> Any:
        """The agent, or during ``random_steps`` a uniform actor seeded by the episode's index."""
        if not random_phase:
            return self.agent
        return UniformRandomActor(
            self.ctx.act_dim, derive_seed(self.seed, "finetune", "random", self.counters.episodes)
        )

    def _owe(self, env_steps: int) -> None:
        """Owe ``env_steps x utd_ratio`` gradient steps (a fractional remainder carries over)."""
        counters = self.counters
        counters.grad_debt += env_steps * float(self.budget.utd_ratio)
        counters.pending = int(counters.grad_debt)
        counters.grad_debt -= counters.pending

    def _transitions(self, ep: dict[str, Any], train_rewards: np.ndarray, mc: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "observations": ep["observations"],
            "actions": np.clip(ep["actions"], -CLIP_ACTION, CLIP_ACTION),
            "rewards": train_rewards,
            "next_observations": ep["next_observations"],
            "dones": np.asarray(ep["terminals"]).astype(np.float32),
            "mc_returns": mc,
        }

    def _episode_done(self, length: int, success: bool) -> None:
        counters = self.counters
        counters.episodes += 1
        counters.train_successes += int(success)
        counters.boundary_done = False
        self.progress_bar(length)

    def collect_episode(self) -> None:
        """Schedule ``episode``: one full episode with the stochastic policy, labeled like the
        offline data and added to the buffer; it owes ``length x utd_ratio`` gradient steps."""
        counters = self.counters
        random_phase = counters.env_steps < int(self.budget.random_steps)
        ep = run_episode(
            self.env,
            self._actor(random_phase),
            derive_seed(self.seed, "finetune", "train", counters.episodes),
            False,
            self.device,
        )
        train_rewards, mc = mc_returns_for_episode(
            ep["rewards"], ep["terminals"], self.reward_spec, self.run_config["gamma"]
        )
        self.buffer.add(self._transitions(ep, train_rewards, mc))
        length = len(ep["rewards"])
        counters.env_steps += length
        if not random_phase:  # RLPD's start_training: no gradient steps for the random episodes
            self._owe(length)
        self._episode_done(length, bool(ep["success"]))

    def play_episode_per_step(self) -> None:
        """Schedule ``step``: one episode; after each env step its transition enters the buffer
        and its ``utd_ratio`` gradient steps are done (none, and uniform actions, while fewer than
        ``random_steps`` env steps were done before it: RLPD's ``i < start_training``)."""
        counters, random_steps = self.counters, int(self.budget.random_steps)
        random_actor = self._actor(True)
        obs, _ = self.env.reset(seed=derive_seed(self.seed, "finetune", "train", counters.episodes))
        rewards, terminals, success = [], [], False
        while True:
            random_phase = counters.env_steps < random_steps
            action = policy_action(random_actor if random_phase else self.agent, obs, False, self.device)
            nxt, reward, terminated, truncated, info = self.env.step(action)
            rewards.append(float(reward))
            terminals.append(bool(terminated))
            success = success or bool(info.get("success", False))
            step = {"observations": obs[None], "actions": action[None], "next_observations": nxt[None]}
            step["terminals"] = np.array([terminated])
            train_reward = transform_rewards(np.array([reward], dtype=np.float32), self.reward_spec)
            self.buffer.add(self._transitions(step, train_reward, np.array([-np.inf], dtype=np.float32)))
            counters.env_steps += 1
            if not random_phase:
                self._owe(1)
                self.train_on_episode()
            elif termination_requested():
                self._stop_mid_episode()
            obs = nxt
            if terminated or truncated:
                break
        rw = np.asarray(rewards, dtype=np.float32)
        _, mc = mc_returns_for_episode(rw, np.asarray(terminals), self.reward_spec, self.run_config["gamma"])
        self.buffer.set_latest("mc_returns", mc)
        self._episode_done(len(rw), success)

    def _stop_mid_episode(self) -> None:
        """SIGTERM inside a ``step`` episode: stop without a checkpoint (see the module docstring)."""
        counters = self.counters
        raise TrainingTerminated(
            f"finetune stopped by SIGTERM inside episode {counters.episodes} (env step "
            f"{counters.env_steps}, gradient step {counters.grad_step}); the per-step schedule "
            "checkpoints only at episode ends, so nothing was written: rerun the same command to "
            "resume from the last checkpoint"
        )

    def train_on_episode(self) -> None:
        """The pending gradient steps; on SIGTERM, checkpoint between two and stop (``episode``),
        or stop without a checkpoint (``step``: inside an episode)."""
        counters, batch_size = self.counters, int(self.budget.batch_size)
        while counters.pending > 0:
            metrics = self.agent.update(self.replay.sample(batch_size, self.sampler))
            counters.grad_step += 1
            counters.pending -= 1
            self.recorder.accumulate(metrics, counters.grad_step)
            if termination_requested():
                if self.per_step:
                    self._stop_mid_episode()
                self.save()
                self.stop_if_terminated(f"env step {counters.env_steps}, gradient step {counters.grad_step}")

    def episode_boundary(self) -> None:
        """Evaluation and periodic checkpoint at the end of the episode, once."""
        counters = self.counters
        if counters.env_steps >= counters.next_eval or counters.env_steps >= self.total:
            self.evaluate_now()
            counters.next_eval = _next_multiple(counters.env_steps, int(self.budget.eval_every_env_steps))
        counters.boundary_done = True
        if counters.env_steps < self.total and (
            counters.env_steps >= counters.next_checkpoint or self.checkpoint_overdue()
        ):
            counters.next_checkpoint = _next_multiple(counters.env_steps, int(self.budget.checkpoint_every_env_steps))
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
