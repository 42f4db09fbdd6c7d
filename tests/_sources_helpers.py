"""Test helpers for the dataset-source tests: tiny D4RL-format files, a local HTTP server, and a
small local Minari dataset built without jax (``minari.create_dataset_from_buffers``)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from calql.config import TaskSpec


def d4rl_arrays(
    episode_lengths: tuple[int, ...] = (4, 3, 5),
    obs_dim: int = 29,
    act_dim: int = 8,
    terminal_last: tuple[bool, ...] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """D4RL-style rows: episodes back to back; each ends with a timeout row, or a terminal row
    where ``terminal_last`` says so. Observation row t has obs[t, 0] == t (easy to check)."""
    rng = np.random.default_rng(seed)
    n = sum(episode_lengths)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    obs[:, 0] = np.arange(n)
    terminals = np.zeros(n, dtype=bool)
    timeouts = np.zeros(n, dtype=bool)
    end = 0
    for k, length in enumerate(episode_lengths):
        end += length
        if terminal_last is not None and terminal_last[k]:
            terminals[end - 1] = True
        else:
            timeouts[end - 1] = True
    return {
        "observations": obs,
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": rng.integers(0, 2, size=n).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
    }


def write_hdf5(path: Path, arrays: dict[str, np.ndarray], extra_group: bool = True) -> Path:
    """Write ``arrays`` as a D4RL HDF5 file (with an 'infos' group, as real D4RL files have)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, arr in arrays.items():
            f.create_dataset(key, data=arr)
        if extra_group:
            f.create_group("infos").create_dataset("goal", data=np.zeros((len(arrays["rewards"]), 2)))
    return path


def make_task(source: dict[str, Any], name: str = "t", **kwargs: Any) -> TaskSpec:
    defaults: dict[str, Any] = dict(domain="antmaze", env_id="AntMaze_Large_Diverse_GR-v5")
    defaults.update(kwargs)
    return TaskSpec(name=name, source=source, **defaults)


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; counts GETs; with ``truncate`` sends fewer bytes than announced."""

    requests: list[str]
    truncate: bool = False

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if not self.server.truncate:  # type: ignore[attr-defined]
            return super().do_GET()
        path = Path(self.translate_path(self.path))
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


@contextlib.contextmanager
def http_server(root: Path, truncate: bool = False) -> Iterator[tuple[str, list[str]]]:
    """Serve ``root`` on 127.0.0.1 (free port) in a thread; yields (base URL, request log)."""
    handler = functools.partial(_CountingHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []  # type: ignore[attr-defined]
    server.truncate = truncate  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def free_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def minari_root_with(tmp_path_factory: Any, build: Any) -> Path:
    """A fresh Minari root (a module-scoped temp folder) in which ``build()`` creates datasets;
    MINARI_DATASETS_PATH points there only while building. Minari's nags are silenced."""
    import warnings

    import pytest

    root = tmp_path_factory.mktemp("minari")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    try:
        with warnings.catch_warnings():  # minari nags about missing author/description
            warnings.simplefilter("ignore", UserWarning)
            build()
    finally:
        mp.undo()
    return root


def build_minari_pointmaze(
    dataset_id: str = "test/pointmaze/umaze-v0",
    episode_lengths: tuple[int, ...] = (5, 7, 4),
    terminate_last: tuple[bool, ...] = (False, True, False),
    ref_scores: tuple[float, float] | None = (0.0, 1.0),
    seed: int = 0,
) -> Any:
    """A tiny Minari dataset of PointMaze_UMaze-v3 random-action episodes, in the current
    MINARI_DATASETS_PATH. Episode k is cut after ``episode_lengths[k]`` steps and ends as a
    termination or a truncation per ``terminate_last`` (flags are set by hand)."""
    import gymnasium as gym
    import gymnasium_robotics
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    gym.register_envs(gymnasium_robotics)
    env = gym.make("PointMaze_UMaze-v3")
    env.action_space.seed(seed)
    buffers = []
    for k, length in enumerate(episode_lengths):
        obs, _ = env.reset(seed=seed + k)
        observations = {key: [np.asarray(v)] for key, v in obs.items()}
        actions, rewards = [], []
        for _ in range(length):
            action = env.action_space.sample()
            obs, reward, _, _, _ = env.step(action)
            for key, v in obs.items():
                observations[key].append(np.asarray(v))
            actions.append(action)
            rewards.append(float(reward))
        terminations = [False] * length
        truncations = [False] * length
        (terminations if terminate_last[k] else truncations)[-1] = True
        buffers.append(
            EpisodeBuffer(
                id=k,
                seed=seed + k,
                observations={key: np.stack(v) for key, v in observations.items()},
                actions=np.stack(actions),
                rewards=np.asarray(rewards),
                terminations=np.asarray(terminations),
                truncations=np.asarray(truncations),
                infos={},
            )
        )
    kwargs: dict[str, Any] = {}
    if ref_scores is not None:
        kwargs = dict(ref_min_score=ref_scores[0], ref_max_score=ref_scores[1])
    dataset = minari.create_dataset_from_buffers(
        dataset_id=dataset_id,
        buffer=buffers,
        env=env,
        algorithm_name="random",
        **kwargs,
    )
    env.close()
    return dataset
