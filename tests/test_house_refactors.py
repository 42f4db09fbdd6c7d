"""Issue 22 house items: colours without torch, no package self-imports in calql.agents, one
twin-critic minimum, one source metadata builder."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from calql.agents.networks import Critic, twin_min
from calql.agents.registry import ALGORITHMS, Algorithm
from calql.agents.sac import SACAgent
from calql.config import TaskSpec
from calql.data.sources.meta import source_meta

REPO = Path(__file__).resolve().parent.parent


def _imports_torch(statement: str) -> bool:
    code = f"import sys; {statement}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def test_palette_and_registry_import_no_torch() -> None:
    assert not _imports_torch("import analysis.palette")
    assert not _imports_torch("from calql.agents import ALGORITHMS, config_methods; ALGORITHMS['calql'].color")
    assert _imports_torch("from calql.agents import make_agent; make_agent('sac', 3, 2, None)")


def test_no_agents_module_imports_its_own_package() -> None:
    for path in sorted((REPO / "calql" / "agents").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "calql.agents", f"{path.name}:{node.lineno} imports the package calql.agents"
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
                assert "calql.agents" not in names, f"{path.name}:{node.lineno} imports the package calql.agents"


def test_builtin_agents_named_by_path_read_as_classes() -> None:
    import calql.agents as agents

    for name, cls in [("calql", "CalQLAgent"), ("cql", "CQLAgent"), ("iql", "IQLAgent"), ("sac", "SACAgent")]:
        assert ALGORITHMS[name].agent is getattr(agents, cls)
    assert ALGORITHMS["awac"].agent is agents.AWACAgent and ALGORITHMS["rlpd"].agent is agents.RLPDAgent
    by_class = Algorithm("x", SACAgent, ALGORITHMS["sac"].config, "X", "#000000", False, False)
    by_path = Algorithm("x", "calql.agents.sac:SACAgent", ALGORITHMS["sac"].config, "X", "#000000", False, False)
    assert by_class.agent is SACAgent and by_path.agent is SACAgent and by_class == by_path
    with pytest.raises(AttributeError):
        agents.NoSuchAgent  # noqa: B018


def test_twin_min_is_the_elementwise_minimum_and_passes_detach() -> None:
    torch.manual_seed(0)
    critics = torch.nn.ModuleList(Critic(3, 2, (8, 8)) for _ in range(2))
    obs, actions = torch.randn(5, 3), torch.randn(5, 4, 2, requires_grad=True)
    q = twin_min(critics, obs, actions)
    assert torch.equal(q, torch.minimum(critics[0](obs, actions), critics[1](obs, actions)))
    twin_min(critics, obs, actions, detach_params=True).sum().backward()
    assert actions.grad is not None and all(p.grad is None for p in critics.parameters())


def _task(**kw: object) -> TaskSpec:
    return TaskSpec(name="t", domain="d", env_id="E-v0", source={"kind": "file"}, env_kwargs={"a": 1}, **kw)


def test_source_meta_keys_and_precedence() -> None:
    meta = source_meta(_task(ref_max=7.0), {"kind": "file"}, [], refs=(1.0, 2.0), task="t", conversion={})
    assert list(meta) == [
        "source",
        "env_id",
        "env_kwargs",
        "obs_layout",
        "ref_min_score",
        "ref_max_score",
        "task",
        "conversion",
        "provenance",
    ]
    assert meta["env_id"] == "E-v0" and meta["env_kwargs"] == {"a": 1}
    assert (meta["ref_min_score"], meta["ref_max_score"]) == (1.0, 7.0)  # the task's score block wins
    no_refs = source_meta(_task(ref_min=0.0), {}, [], env=("F-v1", {"b": 2}))
    assert "ref_min_score" not in no_refs and (no_refs["env_id"], no_refs["env_kwargs"]) == ("F-v1", {"b": 2})
