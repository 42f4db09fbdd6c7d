"""The official Adroit-binary offline filters (docs/method.md#adroit-binary-offline-data) on a hand-made dataset."""

import numpy as np
import pytest

from calql.config import RewardSpec, TaskSpec
from calql.data.format import Dataset
from calql.data.label import label_dataset
from calql.data.preprocess import preprocess_dataset
from calql.errors import DatasetError

ADROIT = RewardSpec(scale=10.0, bias=5.0, sparse=True, negative_reward=-1.0)


def task(domain: str = "adroit", **preprocess) -> TaskSpec:
    return TaskSpec(
        name="pen",
        domain=domain,
        env_id="AdroitHandPen-v1",
        source={"kind": "file"},
        reward=ADROIT,
        preprocess=preprocess,
    )


def three_trajectories() -> Dataset:
    # raw Adroit-binary rewards: -1 fail, 0 success. Trajectories (timeout-ended):
    #   A: -1 -1 -1        never succeeds          -> dropped
    #   B: -1  0 -1  0 -1  last success at index 3 -> truncated to 4 steps
    #   C: -1  0           success at the end      -> kept whole
    r = np.array([-1, -1, -1, -1, 0, -1, 0, -1, -1, 0], dtype=np.float32)
    timeouts = np.zeros(10, dtype=bool)
    timeouts[[2, 7, 9]] = True
    obs = np.arange(11, dtype=np.float32)[:, None]
    return Dataset(
        observations=obs[:-1],
        actions=np.zeros((10, 1)),
        rewards=r,
        terminals=np.zeros(10),
        timeouts=timeouts,
        next_observations=obs[1:],
    )


def test_official_adroit_filters():
    out = preprocess_dataset(
        three_trajectories(),
        task(drop_failed_trajectories=True, truncate_after_last_success=True, success_is_terminal=True),
    )
    np.testing.assert_array_equal(out.observations[:, 0], [3, 4, 5, 6, 8, 9])
    np.testing.assert_array_equal(out.terminals, [0, 1, 0, 1, 0, 1])  # dones = (raw reward == 0)
    stats = out.meta["preprocess"]
    assert stats["dropped_trajectories"] == 1 and stats["truncated_trajectories"] == 1
    labeled = label_dataset(out, task(), progress=False)
    g = 0.99
    # rewards -5/+5; every success is terminal, so G restarts after it
    np.testing.assert_allclose(labeled.mc_returns, [-5 + g * 5, 5, -5 + g * 5, 5, -5 + g * 5, 5], rtol=1e-6)
    assert labeled.meta["labeling"]["stats"]["n_successful"] == 3


def test_adroit_domain_applies_the_official_filters_without_switches():
    explicit = preprocess_dataset(
        three_trajectories(),
        task(drop_failed_trajectories=True, truncate_after_last_success=True, success_is_terminal=True),
    )
    default = preprocess_dataset(three_trajectories(), task())
    for key, arr in explicit.arrays().items():
        np.testing.assert_array_equal(getattr(default, key), arr, err_msg=key)
    switches = default.meta["preprocess"]["switches"]
    assert switches["drop_failed_trajectories"]["origin"].startswith("official adroit convention")
    assert (
        explicit.meta["preprocess"]["switches"]["drop_failed_trajectories"]["origin"]
        == "tasks.pen.preprocess.drop_failed_trajectories"
    )
    assert default.meta["preprocess"]["conversions"] == [
        "3 non-terminal success steps marked terminal",
        "1 trajectories without success dropped",
        "1 trajectories cut after their last success",
    ]


def test_switches_are_independent_where_the_domain_has_no_official_convention():
    ds = three_trajectories()
    only_terminal = preprocess_dataset(ds, task("custom", success_is_terminal=True))
    assert only_terminal.size == 10
    np.testing.assert_array_equal(np.flatnonzero(only_terminal.terminals), [4, 6, 9])
    with_drop = preprocess_dataset(ds, task("custom", drop_failed_trajectories=True, success_is_terminal=True))
    assert with_drop.size == 7
    with_truncate = preprocess_dataset(ds, task("custom", truncate_after_last_success=True, success_is_terminal=True))
    assert with_truncate.size == 9  # A kept (no success to cut after), B cut by one step
    assert with_truncate.terminals[6] and not with_truncate.timeouts[6]  # B's new last step: its success


def test_nonterminal_successes_are_refused_without_the_switch():
    # drop/truncate alone leave success steps that are not terminals: never labeled silently
    for switches in ({}, {"drop_failed_trajectories": True}, {"truncate_after_last_success": True}):
        with pytest.raises(
            DatasetError,
            match=r"task 'pen' \(domain custom\): the data have 3 success "
            r"steps .* not terminals.*preprocess.success_is_terminal: true",
        ):
            preprocess_dataset(three_trajectories(), task("custom", **switches))


def test_data_already_in_the_official_convention_pass_unchanged():
    ds = three_trajectories()
    ds.terminals = ds.rewards == 0
    assert preprocess_dataset(ds, task("custom")) is ds


def test_dropping_everything_is_an_error():
    ds = three_trajectories()
    ds = Dataset(
        observations=ds.observations,
        actions=ds.actions,
        rewards=-np.ones(10),
        terminals=ds.terminals,
        timeouts=ds.timeouts,
        next_observations=ds.next_observations,
    )
    with pytest.raises(DatasetError, match="dropped every transition"):
        preprocess_dataset(ds, task())
