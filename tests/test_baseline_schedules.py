"""The baselines run as their authors ran them (issue 19): AWAC-F's one pooled FIFO replay, the
per-env-step update schedule of RLPD / AWAC-F / IQL-F next to Cal-QL's per-episode one, the
RLPD actor-period check, and the raw-reward presets.

Each is checked against a plain re-implementation of the reference code:

- jaxrl ``ReplayBuffer`` (nakamotoo/jaxrl, branch dev_mitsuhiko @ 1c7459c,
  ``jaxrl/datasets/replay_buffer.py``): :class:`JaxrlReplayBuffer`;
- the fine-tuning loops, reduced to when gradient steps happen and what the replay holds then:
  ikostrikov/rlpd ``train_finetuning.py`` (as nakamotoo/rlpd @ 271d3d8), jaxrl
  ``examples/train_finetuning.py`` (AWAC-F), nakamotoo/implicit_q_learning dev_mitsuhiko @
  0b14c52 ``train_finetune.py`` (IQL-F), nakamotoo/Cal-QL @ ac6eafe
  ``JaxCQL/conservative_sac_main.py`` (per trajectory);
- Cal-QL's ``calc_return_to_go`` (nakamotoo/Cal-QL ``JaxCQL/replay_buffer.py``) for the labels
  of the raw-reward methods.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from calql.config import RewardSpec, load_config
from calql.data.mc_returns import label_returns
from calql.errors import ConfigError
from calql.training.buffers import BATCH_KEYS, MixedReplay, OfflineData, OnlineBuffer, PooledReplay
from calql.training.checkpoint import load_checkpoint
from calql.training.resolve import resolve_run_config
from calql.training.run_spec import RunSpec
from tests.conftest import write_config
from tests.test_resume import _same_agent
from tests.test_training import TINY_TRAIN, labeled_dataset, make_config, metrics_without_timing, tiny_task  # noqa: F401

CPU = torch.device("cpu")
O, A = 3, 2  # noqa: E741 - observation and action sizes


# ----------------------------------------------------------------------------- references


class JaxrlReplayBuffer:
    """jaxrl's ``ReplayBuffer`` (dev_mitsuhiko @ 1c7459c), numpy only, ``num_samples=None``."""

    def __init__(self, capacity: int, dataset: dict[str, np.ndarray]) -> None:
        self.data = {k: np.empty((capacity, *v.shape[1:]), dtype=np.float32) for k, v in dataset.items()}
        self.capacity, self.size, self.insert_index = capacity, 0, 0
        # initialize_with_dataset(dataset, None)
        n = len(dataset["rewards"])
        assert self.capacity >= n, "Dataset cannot be larger than the replay buffer capacity."
        for k, v in dataset.items():
            self.data[k][:n] = v[np.arange(n)]
        self.insert_index, self.size = n, n

    def insert(self, row: dict[str, np.ndarray]) -> None:
        for k, v in row.items():
            self.data[k][self.insert_index] = v
        self.insert_index = (self.insert_index + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        indx = rng.integers(0, self.size, size=batch_size)  # np.random.randint(self.size, size=...)
        return {k: v[indx] for k, v in self.data.items()}


def rlpd_reference(n_steps: int, start_training: int, utd: int) -> list[tuple[int, bool]]:
    """ikostrikov/rlpd ``train_finetuning.py`` online loop: (rows in the online replay, actor
    stepped?) of each critic step. ``agent.update(batch, utd_ratio)`` does utd critic steps on
    consecutive minibatches, then one actor and one temperature step."""
    events, replay = [], 0
    for i in range(n_steps):
        replay += 1  # replay_buffer.insert(...) after every env step, random or not
        if i >= start_training:
            events += [(replay, u == utd - 1) for u in range(utd)]
    return events


def awac_f_reference(n_offline: int, capacity: int, n_steps: int) -> list[int]:
    """jaxrl ``examples/train_finetuning.py`` (AWAC-F) online loop: the pooled replay's size at
    each gradient step (insert, then ``replay_buffer.sample``, then one ``agent.update``)."""
    events, size = [], n_offline
    for _ in range(n_steps):
        size = min(size + 1, capacity)
        events.append(size)
    return events


def iql_f_reference(n_steps: int) -> list[int]:
    """IQL-F ``train_finetune.py`` online loop with ``--mixing_ratio`` >= 0: rows in the online
    buffer of the ``MixingReplayBuffer`` at each gradient step (insert, sample, one update)."""
    return list(range(1, n_steps + 1))


def calql_reference(episode_lengths: list[int], utd: float) -> list[int]:
    """Cal-QL ``conservative_sac_main.py``: one trajectory, then len x online_utd_ratio gradient
    steps, all with the whole trajectory in the buffer."""
    events, total = [], 0
    for length in episode_lengths:
        total += length
        events += [total] * int(length * utd)
    return events


def calc_return_to_go(
    rewards: np.ndarray, terminals: np.ndarray, gamma: float, reward_neg: float, sparse: bool
) -> np.ndarray:
    """Cal-QL's ``calc_return_to_go`` (reward_scale, reward_bias already applied) of one trajectory."""
    if sparse and np.all(np.array(rewards) == reward_neg):
        return np.array([float(reward_neg / (1 - gamma))] * len(rewards), dtype=np.float32)
    return_to_go, prev_return = [0.0] * len(rewards), 0.0
    for i in range(len(rewards)):
        return_to_go[-i - 1] = rewards[-i - 1] + gamma * prev_return * (1 - terminals[-i - 1])
        prev_return = return_to_go[-i - 1]
    return np.array(return_to_go, dtype=np.float32)


# ----------------------------------------------------------------------------- pooled replay


def _rows(n: int, start: float) -> dict[str, np.ndarray]:
    """n rows whose every key identifies the row (rewards = start, start + 1, ...)."""
    ids = np.arange(n, dtype=np.float32) + start
    return {
        "observations": np.stack([ids] * O, axis=1),
        "actions": np.stack([ids / 1000] * A, axis=1),
        "rewards": ids,
        "next_observations": np.stack([ids + 0.5] * O, axis=1),
        "dones": (ids % 3 == 0).astype(np.float32),
        "mc_returns": -ids,
    }


@pytest.mark.parametrize(
    ("n_offline", "capacity", "online_capacity", "episodes"),
    [
        (5, 8, 8, [1, 2, 3, 7, 1, 9, 4]),  # fills, evicts offline rows, then online ones, wraps twice
        (7, 8, 8, [1, 3, 5]),  # full after one step, then the online steps evict offline rows
        (6, 40, 30, [7, 11, 5, 3]),  # never full: nothing evicted
        (10, 20, 14, [4, 4, 6]),  # online buffer smaller than the pool: what finetune allocates
        # (budget + one episode), evicting offline rows
    ],
)
def test_pooled_replay_equals_jaxrl_replay_buffer(
    n_offline: int, capacity: int, online_capacity: int, episodes: list[int]
) -> None:
    offline = _rows(n_offline, start=-1000.0)
    ref = JaxrlReplayBuffer(capacity, offline)
    online = OnlineBuffer(online_capacity, O, A, CPU)
    pool = PooledReplay(OfflineData(offline, CPU), online, capacity)
    t = 0
    for k, length in enumerate(episodes):
        rows = _rows(length, start=float(t))
        online.add(rows)  # an episode at once (schedule `episode`) ...
        for j in range(length):
            ref.insert({key: v[j] for key, v in rows.items()})  # ... or step by step (jaxrl)
        t += length
        assert pool.size == ref.size
        # the same rows in every slot
        is_online, idx = pool.rows_of_slots(np.arange(pool.size))
        ids = offline["rewards"][np.where(is_online, 0, idx)]
        ids[is_online] = online.tensors["rewards"].numpy()[idx[is_online]]
        np.testing.assert_array_equal(ids, ref.data["rewards"][: ref.size])
        # the same batches from the same generator state, every key
        batch, expected = pool.sample(64, np.random.default_rng(k)), ref.sample(64, np.random.default_rng(k))
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(batch[key].numpy(), expected[key], err_msg=key)


def test_pooled_replay_of_exactly_its_capacity_evicts_the_first_offline_row() -> None:
    """A dataset of exactly ``capacity`` rows: jaxrl's ``insert`` then writes at index capacity
    (its insert index is not wrapped after ``initialize_with_dataset``) and fails; the pool
    does what the modular index means: the first online step replaces offline row 0."""
    offline = _rows(4, start=-1000.0)
    with pytest.raises(IndexError):
        JaxrlReplayBuffer(4, offline).insert({k: v[0] for k, v in _rows(1, start=0.0).items()})
    online = OnlineBuffer(4, O, A, CPU)
    pool = PooledReplay(OfflineData(offline, CPU), online, 4)
    online.add(_rows(1, start=0.0))
    is_online, idx = pool.rows_of_slots(np.arange(4))
    assert is_online.tolist() == [True, False, False, False] and idx.tolist() == [0, 1, 2, 3]


def test_pooled_replay_sampling_is_uniform_over_its_slots() -> None:
    """After eviction the offline share is the surviving offline rows over the capacity."""
    online = OnlineBuffer(100, O, A, CPU)
    pool = PooledReplay(OfflineData(_rows(60, start=-1000.0), CPU), online, 100)
    online.add(_rows(70, start=0.0))  # 30 offline rows evicted, 30 left of 100 slots
    rng = np.random.default_rng(0)
    share = np.mean([float((pool.sample(256, rng)["rewards"] < 0).float().mean()) for _ in range(200)])
    assert abs(share - 0.3) < 0.01, share


def test_pooled_replay_refuses_an_online_buffer_too_small_for_its_live_rows() -> None:
    online = OnlineBuffer(12, O, A, CPU)
    pool = PooledReplay(OfflineData(_rows(5, start=-1000.0), CPU), online, 20)
    online.add(_rows(13, start=0.0))  # 13 live online rows in the pool, 12 kept by the buffer
    with pytest.raises(RuntimeError, match="online buffer is smaller"):
        pool.sample(8, np.random.default_rng(0))


def test_pooled_replay_refuses_a_dataset_larger_than_its_capacity() -> None:
    with pytest.raises(ConfigError, match=r"10 transitions, more than finetune.buffer_size = 9"):
        PooledReplay(OfflineData(_rows(10, start=0.0), CPU), OnlineBuffer(9, O, A, CPU), 9)


def test_online_buffer_set_latest_and_added_round_trip() -> None:
    buf = OnlineBuffer(4, O, A, CPU)
    buf.add(_rows(3, start=0.0))
    buf.add(_rows(3, start=10.0))  # rows 10, 11, 12 at slots 3, 0, 1
    buf.set_latest("mc_returns", np.array([7.0, 8.0, 9.0]))
    assert buf.tensors["mc_returns"].tolist() == [8.0, 9.0, -2.0, 7.0]
    buf.set_latest("mc_returns", np.arange(6.0))  # longer than the buffer: its tail
    assert buf.tensors["mc_returns"].tolist() == [4.0, 5.0, 2.0, 3.0]
    clone = OnlineBuffer(4, O, A, CPU)
    clone.load_state_dict(buf.state_dict())
    assert clone.added == buf.added == 6


# ----------------------------------------------------------------------------- schedules


def _config(tmp_path: Path, **finetune: Any) -> dict[str, Any]:
    train = copy.deepcopy(TINY_TRAIN)
    train["pretrain"].update(steps=10, eval_every=10, checkpoint_every=10)
    train["finetune"].update(finetune)
    return load_config(make_config(tmp_path, train))


class Recorder:
    """What the replay held at each gradient step, and the RLPD actor flag of the step."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from calql.agents.rlpd import RLPDAgent
        from calql.training import finetune

        self.samples: list[tuple[int, int]] = []  # (online rows added so far, replay size)
        self.actor: list[bool] = []
        self.random_actions = 0
        self.episode_lengths: list[int] = []
        rec = self

        def wrap_sample(cls: type) -> None:
            real = cls.sample

            def sample(self: Any, n: int, rng: np.random.Generator) -> Any:
                size = self.size if isinstance(self, PooledReplay) else self.online.size
                rec.samples.append((self.online.added, size))
                return real(self, n, rng)

            monkeypatch.setattr(cls, "sample", sample)

        wrap_sample(MixedReplay)
        wrap_sample(PooledReplay)
        real_update, real_random, real_episode = RLPDAgent.update, finetune.UniformRandomActor.act, finetune.run_episode

        def update(self: Any, batch: Any) -> Any:
            rec.actor.append(self.updates_actor_next())
            return real_update(self, batch)

        def random_act(self: Any, obs: Any, deterministic: bool) -> Any:
            rec.random_actions += 1
            return real_random(self, obs, deterministic)

        def run_episode(*args: Any) -> Any:
            ep = real_episode(*args)
            rec.episode_lengths.append(len(ep["rewards"]))
            return ep

        monkeypatch.setattr(RLPDAgent, "update", update)
        monkeypatch.setattr(finetune.UniformRandomActor, "act", random_act)
        monkeypatch.setattr(finetune, "run_episode", run_episode)


def _finetune(cfg: dict[str, Any], method: str, run_dir: Path, data: Path, **kw: Any) -> dict[str, Any]:
    from calql.training.finetune import run_finetune
    from calql.training.pretrain import run_pretrain

    if resolve_run_config(cfg, "umaze", method)["pretrain"] is not None:
        run_pretrain(RunSpec.from_config(cfg, "umaze", method), 0, data, run_dir, progress=False)
    out = run_finetune(RunSpec.from_config(cfg, "umaze", method), 0, data, run_dir, progress=False, **kw)
    return load_checkpoint(out / "final.pt")["counters"]


def test_rlpd_updates_after_every_env_step_as_rlpd(
    tmp_path: Path, labeled_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RLPD (PointMaze preset: `update_schedule: step`) at UTD 4, 150 random steps."""
    cfg = _config(tmp_path, utd_ratio=4.0, random_steps=150)
    cfg["train"]["overrides"] = {"rlpd": {"actor_update_period": 4}}
    rec = Recorder(monkeypatch)
    counters = _finetune(cfg, "rlpd", tmp_path / "run", labeled_dataset)
    expected = rlpd_reference(counters["env_steps"], 150, 4)
    assert [(added, actor) for (added, _), actor in zip(rec.samples, rec.actor)] == expected
    assert rec.random_actions == 150 and rec.episode_lengths == []  # per step, not whole episodes
    assert counters["grad_step"] == len(expected) and counters["pending"] == 0


def test_awac_updates_once_per_env_step_on_the_pooled_fifo(
    tmp_path: Path, labeled_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWAC (PointMaze preset: pooled, `step`) with a capacity the 2,000 offline rows fill at 2,150."""
    cfg = _config(tmp_path, buffer_size=2150)
    rec = Recorder(monkeypatch)
    counters = _finetune(cfg, "awac", tmp_path / "run", labeled_dataset)
    sizes = [size for _, size in rec.samples]
    assert sizes == awac_f_reference(2000, 2150, counters["env_steps"])
    assert sizes[-1] == 2150 and counters["env_steps"] > 150  # offline rows were evicted


def test_iql_updates_once_per_env_step_on_mixed_batches(
    tmp_path: Path, labeled_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IQL with `update_schedule: step` (its AntMaze/Adroit/Kitchen presets; PointMaze keeps `episode`)."""
    cfg = _config(tmp_path, update_schedule="step")
    rec = Recorder(monkeypatch)
    counters = _finetune(cfg, "iql", tmp_path / "run", labeled_dataset)
    assert [added for added, _ in rec.samples] == iql_f_reference(counters["env_steps"])


def test_sac_keeps_calqls_per_episode_schedule(
    tmp_path: Path, labeled_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, utd_ratio=2.0)
    rec = Recorder(monkeypatch)
    _finetune(cfg, "sac", tmp_path / "run", labeled_dataset)
    assert len(rec.episode_lengths) > 2
    assert [added for added, _ in rec.samples] == calql_reference(rec.episode_lengths, 2.0)


def test_sigterm_inside_a_step_episode_stops_without_checkpoint_and_resumes_exactly(
    tmp_path: Path, labeled_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calql.agents.rlpd import RLPDAgent
    from calql.training import signals
    from calql.training.signals import TrainingTerminated

    cfg = _config(tmp_path, utd_ratio=2.0, random_steps=50)
    cfg["train"]["overrides"] = {"rlpd": {"actor_update_period": 2}}
    _finetune(cfg, "rlpd", tmp_path / "ref", labeled_dataset)
    real = RLPDAgent.update

    def update(self: Any, batch: Any) -> Any:
        out = real(self, batch)
        if self.num_updates == 2 * 215 + 1:  # the first of the two updates of env step 266
            signals._TERMINATE.set()
        return out

    monkeypatch.setattr(RLPDAgent, "update", update)
    crash = tmp_path / "crash"
    try:
        with pytest.raises(TrainingTerminated, match="nothing was written"):
            _finetune(cfg, "rlpd", crash, labeled_dataset)
    finally:
        signals._TERMINATE.clear()
    state = load_checkpoint(crash / "finetune/checkpoints/last.pt")["counters"]
    assert 100 <= state["env_steps"] < 266 and state["pending"] == 0 and state["boundary_done"], state
    monkeypatch.setattr(RLPDAgent, "update", real)
    _finetune(cfg, "rlpd", crash, labeled_dataset)
    assert metrics_without_timing(crash / "finetune/metrics.csv") == metrics_without_timing(
        tmp_path / "ref/finetune/metrics.csv"
    )
    _same_agent(crash / "finetune/final.pt", tmp_path / "ref/finetune/final.pt")


# ----------------------------------------------------------------------------- config


def _tasks() -> dict[str, Any]:
    ant, adroit, kitchen = tiny_task(), tiny_task(), tiny_task()
    ant["domain"] = "antmaze"
    adroit["domain"] = "adroit"
    adroit["reward"] = {"scale": 10.0, "bias": 5.0, "sparse": True, "negative_reward": -1.0}
    kitchen["domain"] = "kitchen"
    kitchen["reward"] = {"scale": 1.0, "bias": 0.0, "sparse": False, "infinite_horizon": True}
    return {"ant": ant, "adroit": adroit, "kitchen": kitchen, "umaze": tiny_task()}


def test_presets_schedule_rewards_and_buffers(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", tasks=_tasks()))
    for task in ("ant", "adroit", "kitchen"):
        runs = {m: resolve_run_config(cfg, task, m) for m in ("calql", "cql", "hybrid", "iql", "awac", "rlpd", "sac")}
        for m in ("calql", "cql", "hybrid", "sac"):  # official per-trajectory loop: key not recorded
            assert "update_schedule" not in runs[m]["finetune"], (task, m)
        for m in ("iql", "awac", "rlpd"):
            assert runs[m]["finetune"]["update_schedule"] == "step", (task, m)
        assert runs["awac"]["finetune"]["pool_offline"] and runs["awac"]["finetune"]["buffer_size"] == 1_000_000
        assert runs["iql"]["finetune"]["buffer_size"] == 2_000_000 and "pool_offline" not in runs["iql"]["finetune"]
        assert (runs["awac"]["reward"]["scale"], runs["awac"]["reward"]["bias"]) == (1.0, 0.0), task
        assert runs["rlpd"]["finetune"]["utd_ratio"] == runs["rlpd"]["agent"]["actor_update_period"] == 20
    rlpd = {t: resolve_run_config(cfg, t, "rlpd")["reward"] for t in ("ant", "adroit")}
    assert (rlpd["ant"]["scale"], rlpd["ant"]["bias"]) == (1.0, -1.0)  # rlpd train_finetuning.py: r - 1
    assert (rlpd["adroit"]["scale"], rlpd["adroit"]["bias"]) == (1.0, 0.0)  # binary_datasets.py: raw
    # PointMaze: the committed default's methods keep their configs (no key), AWAC/RLPD per step
    point = {m: resolve_run_config(cfg, "umaze", m)["finetune"] for m in ("calql", "cql", "iql", "sac", "awac", "rlpd")}
    assert all("update_schedule" not in point[m] for m in ("calql", "cql", "iql", "sac"))
    assert point["awac"]["update_schedule"] == point["rlpd"]["update_schedule"] == "step"


@pytest.mark.parametrize(("task", "r_neg", "success"), [("ant", 0.0, [0, 0, 1]), ("adroit", -1.0, [-1, -1, 0])])
def test_raw_reward_labels_are_cal_qls_return_to_go(tmp_path: Path, task: str, r_neg: float, success: list) -> None:
    """AWAC's raw rewards are re-labeled (training_arrays) with the same rule as the official code
    at reward_scale 1, reward_bias 0: failed trajectories r_neg / (1 - gamma), others discounted."""
    cfg = load_config(write_config(tmp_path / "c.yaml", tasks=_tasks()))
    run = resolve_run_config(cfg, task, "awac")
    spec = RewardSpec(**run["reward"])
    fail = [r_neg] * 4
    rewards = np.array(fail + success, dtype=np.float32)
    terminals = np.array([0, 0, 0, 0, 0, 0, 1], dtype=bool)
    timeouts = np.array([0, 0, 0, 1, 0, 0, 0], dtype=bool)
    train_rewards, mc, _ = label_returns(rewards, terminals, timeouts, spec, 0.99)
    np.testing.assert_array_equal(train_rewards, rewards)
    expected = np.concatenate(
        [calc_return_to_go(rewards[s], terminals[s], 0.99, r_neg, True) for s in (slice(0, 4), slice(4, 7))]
    )
    np.testing.assert_allclose(mc, expected, rtol=1e-6)
    assert mc[0] == pytest.approx(r_neg / 0.01)


def test_rlpd_actor_period_must_equal_its_utd_ratio(tmp_path: Path) -> None:
    cfg = _config(tmp_path, utd_ratio=10.0)
    with pytest.raises(ConfigError, match=r"utd_ratio = 10.0 but the agent's actor_update_period = 20"):
        resolve_run_config(cfg, "umaze", "rlpd")
    cfg["train"]["overrides"] = {"rlpd": {"actor_update_period": 10}}
    assert resolve_run_config(cfg, "umaze", "rlpd")["agent"]["actor_update_period"] == 10
    cfg["train"]["finetune"]["utd_ratio"] = 20.0  # the period alone changed: refused too
    with pytest.raises(ConfigError, match="actor_update_period = 10"):
        resolve_run_config(cfg, "umaze", "rlpd")
    resolve_run_config(cfg, "umaze", "sac")  # other methods have no actor period


def test_update_schedule_is_checked_and_recorded_only_when_used(tmp_path: Path) -> None:
    cfg = _config(tmp_path, update_schedule="episode")
    assert "update_schedule" not in resolve_run_config(cfg, "umaze", "calql")["finetune"]
    cfg["train"]["finetune"]["update_schedule"] = "step"
    assert resolve_run_config(cfg, "umaze", "calql")["finetune"]["update_schedule"] == "step"
    with pytest.raises(ConfigError, match="update_schedule"):
        load_config(make_config(tmp_path, {"finetune": {"update_schedule": "burst"}}))
