"""The embedded PointMaze generator, the env wrapper and the dataset/label CLI, end to end."""

import time

import numpy as np
import pytest

from calql.cli import main
from calql.config import get_task, load_config
from calql.data.format import load_dataset
from calql.data.sources.generated import GOAL_RADIUS, collect
from calql.data.waypoint_controller import next_hop_table
from calql.envs.make import make_env
from calql.errors import ConfigError, EnvMismatchError


def test_bfs_next_hop_on_umaze():
    maze = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
    table = next_hop_table(maze)
    # from the bottom-left cell to the top-left cell the path goes right, up the side, and left
    assert table[(1, 1)][(3, 1)] == (3, 2)
    assert table[(1, 1)][(3, 3)] == (2, 3)
    assert table[(1, 1)][(2, 3)] == (1, 3)
    assert table[(1, 1)][(1, 2)] == (1, 1)


def test_generation_is_seeded_and_rewards_refer_to_task_goal(umaze_config):
    task = get_task(load_config(umaze_config), "umaze")
    a, _ = collect(task, progress=False)
    b, _ = collect(task, progress=False)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    goal_xy = np.array([-1.0, 1.0])  # centre of cell (1, 1) in the UMaze
    dist = np.linalg.norm(a["next_observations"][:, :2] - goal_xy, axis=1)
    np.testing.assert_array_equal(a["rewards"] == 1.0, dist <= GOAL_RADIUS)
    np.testing.assert_array_equal(a["terminals"], a["rewards"] == 1.0)  # AntMaze-v2 convention
    assert a["rewards"].sum() > 0, "the controller should pass through the goal"
    # segments of 500 steps end with a timeout; continuity holds inside the data
    assert a["timeouts"].sum() == 6
    inside = ~a["timeouts"][:-1]
    np.testing.assert_allclose(a["next_observations"][:-1][inside], a["observations"][1:][inside])


def test_other_seed_other_data(umaze_config):
    config = load_config(umaze_config)
    config["tasks"]["umaze"]["source"]["seed"] = 1
    a, _ = collect(get_task(config, "umaze"), progress=False)
    b, _ = collect(get_task(load_config(umaze_config), "umaze"), progress=False)
    assert not np.array_equal(a["actions"], b["actions"])


def test_generated_needs_goal_and_pointmaze(umaze_config):
    config = load_config(umaze_config)
    config["tasks"]["umaze"]["env"].pop("eval_reset")
    with pytest.raises(ConfigError, match="goal_cell"):
        collect(get_task(config, "umaze"), progress=False)
    config = load_config(umaze_config)
    config["tasks"]["umaze"]["env"]["eval_reset"]["goal_cell"] = [0, 0]
    with pytest.raises(ConfigError, match=r"\[0, 0\] is a wall"):
        collect(get_task(config, "umaze"), progress=False)


def test_env_fixed_start_success_termination_and_layout(umaze_config):
    task = get_task(load_config(umaze_config), "umaze")
    env = make_env(task, seed=0)
    obs, info = env.reset(seed=0)
    assert obs.shape == (4,) and obs.dtype == np.float32 and info["success"] is False
    assert np.abs(obs[:2] - np.array([-1.0, -1.0])).max() <= 0.25 + 1e-6  # start cell (3, 1)
    # drive with the controller: success terminates the episode with reward 1
    from calql.data.waypoint_controller import WaypointController

    maze_env = env.unwrapped
    ctrl = WaypointController(maze_env.maze)
    for _ in range(300):
        pos, vel = maze_env.point_env.data.qpos[:2], maze_env.point_env.data.qvel[:2]
        obs, r, term, trunc, info = env.step(ctrl.action(pos, vel, (1, 1), maze_env.goal))
        if term or trunc:
            break
    assert term and not trunc and r == 1.0 and info["success"]
    with pytest.raises(EnvMismatchError, match="dataset has"):
        make_env(task, dataset_layout=[{"key": "observation", "size": 4}, {"key": "desired_goal", "size": 2}])


def test_cli_dataset_then_label(umaze_config, tmp_path):
    raw, labeled = tmp_path / "raw.hdf5", tmp_path / "lab.hdf5"
    assert main(["-q", "dataset", "--config", str(umaze_config), "--task", "umaze", "--out", str(raw)]) == 0
    assert (
        main(
            [
                "-q",
                "label",
                "--config",
                str(umaze_config),
                "--task",
                "umaze",
                "--dataset",
                str(raw),
                "--out",
                str(labeled),
            ]
        )
        == 0
    )
    ds = load_dataset(labeled)
    assert ds.is_labeled and ds.meta["obs_layout"] == [{"key": "observation", "size": 4}]
    assert ds.meta["ref_min_score"] == 0.0 and ds.meta["ref_max_score"] == 1.0
    assert ds.meta["reference_policies"]["controller"]["success_rate"] > 0.5
    np.testing.assert_allclose(ds.train_rewards, ds.rewards * 10 - 5)
    assert ds.mc_returns.min() == pytest.approx(-500.0) and ds.mc_returns.max() == pytest.approx(5.0)
    stats = ds.meta["labeling"]["stats"]
    assert stats["n_transitions"] == 3000 and 0 < stats["success_share"] <= 1
    for key in ("git_commit", "packages"):
        assert key in ds.meta["provenance"]


def test_cli_errors_are_one_clear_line(umaze_config, tmp_path, caplog):
    code = main(["dataset", "--config", str(umaze_config), "--task", "umazee", "--out", str(tmp_path / "x.h5")])
    assert code == 2 and "Did you mean: umaze" in caplog.text
    assert not (tmp_path / "x.h5").exists()


def test_100k_transitions_offline_in_well_under_a_minute(umaze_config, tmp_path):
    config = load_config(umaze_config)
    import yaml

    config["tasks"]["umaze"]["source"].update(n_transitions=100_000, segment_length=1000)
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(config))
    t0 = time.perf_counter()
    assert main(["-q", "dataset", "--config", str(path), "--task", "umaze", "--out", str(tmp_path / "r.h5")]) == 0
    assert (
        main(
            [
                "-q",
                "label",
                "--config",
                str(path),
                "--task",
                "umaze",
                "--dataset",
                str(tmp_path / "r.h5"),
                "--out",
                str(tmp_path / "l.h5"),
            ]
        )
        == 0
    )
    elapsed = time.perf_counter() - t0
    assert load_dataset(tmp_path / "l.h5").size == 100_000
    print(f"100k PointMaze transitions generated and labeled in {elapsed:.1f} s")  # reported, not asserted
