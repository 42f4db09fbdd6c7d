"""The pinned install: requirements.lock, environment.yml and pyproject.toml agree."""

import re

import tomllib
import yaml

from tests.conftest import REPO


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def _norm(name: str) -> str:
    return re.split(r"[<>=!~ \[]", name)[0].lower().replace("_", "-")


def test_environment_yml_matches_lock():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    lock = _lock()
    pinned = [p for p in pip_section if "==" in p]
    assert pinned, "environment.yml pins nothing"
    for spec in pinned:
        name, version = spec.split("==")
        assert lock.get(_norm(name)) == version, f"{name}: environment.yml {version} vs lock {lock.get(_norm(name))}"


def test_every_dependency_is_locked_and_in_environment_yml():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env_text = (REPO / "environment.yml").read_text()
    lock = _lock()
    for dep in deps:
        name = _norm(dep)
        assert name in lock, f"{name} is a dependency but not in requirements.lock"
        assert f"{name}=={lock[name]}" in env_text, f"{name} missing from environment.yml"


def test_machine_specific_pins():
    lock = _lock()
    assert lock["torch"] == "2.13.0"  # the local CPU wheel; a bare torch pulls a CUDA build
    major, minor = (int(x) for x in lock["mujoco"].split(".")[:2])
    assert (major, minor) < (3, 12), "mujoco >= 3.12 breaks FrankaKitchen-v1"


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    command = "bash scripts/setup.sh && .venv/bin/python -m pytest"
    assert command in ci
    assert command in readme
