"""Agents: learning smoke tests, checkpoint round-trip, determinism, config errors, and the fused
update against a plain re-implementation of the official per-loss gradients (docs/method.md#sac-backbone,
#cql-critic-loss)."""

import io
import math

import pytest
import torch
import torch.nn.functional as F

from calql.agents import METHODS, agent_from_state_dict, check_finite, default_hparams, hparam_names, make_agent
from calql.agents import losses as L
from calql.agents.hyperparameters import CalQLConfig, CQLConfig, IQLConfig, SACConfig
from calql.agents.policies import TanhGaussianPolicy
from calql.errors import CheckpointError, ConfigError, TrainingDivergedError

torch.set_num_threads(1)
O, A = 3, 2  # noqa: E741 - observation and action sizes

SMALL = {
    "sac": {"policy_hidden": [32, 32], "critic_hidden": [32, 32]},
    "cql": {"policy_hidden": [32, 32], "critic_hidden": [32, 32], "cql_n_actions": 4},
    "calql": {"policy_hidden": [32, 32], "critic_hidden": [32, 32], "cql_n_actions": 4},
    "iql": {"hidden": [32, 32]},
    "hybrid": {"policy_hidden": [32, 32], "critic_hidden": [32, 32]},
    "awac": {"actor_hidden": [32, 32], "critic_hidden": [32, 32]},
    "rlpd": {"actor_hidden": [32, 32], "critic_hidden": [32, 32], "actor_update_period": 2},
}


def make_batch(n: int = 64, seed: int = 0, terminal: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, O, generator=g)
    act = torch.rand(n, A, generator=g) * 2 - 1
    rew = obs[:, 0] + act[:, 0] * obs[:, 1]  # a known smooth target
    return {
        "observations": obs,
        "actions": act,
        "rewards": rew,
        "next_observations": torch.randn(n, O, generator=g),
        "dones": torch.ones(n) if terminal else (torch.rand(n, generator=g) < 0.2).float(),
        "mc_returns": rew + torch.randn(n, generator=g),
    }


def bellman_metric(method: str) -> str:
    return {"sac": "qf1_loss", "hybrid": "qf1_loss", "cql": "qf1_bellman_loss", "calql": "qf1_bellman_loss"}.get(
        method, "critic_loss"
    )


@pytest.mark.parametrize("method", METHODS)
def test_learns_known_target(method):
    """With terminal transitions the Bellman target is r: the critic must fit it."""
    torch.manual_seed(0)
    hp = {**SMALL[method], "qf_lr" if "qf_lr" in hparam_names(method) else "critic_lr": 1e-3}
    if method in ("cql", "calql"):
        hp["cql_min_q_weight"] = 1.0  # a weaker penalty so that the Bellman error can reach ~0
    agent = make_agent(method, O, A, hp, "cpu")
    batch = make_batch(terminal=True)
    batch["mc_returns"] = batch["rewards"] - 0.5  # the Cal-QL bound is active on part of the samples
    hist = [agent.update(batch)[bellman_metric(method)] for _ in range(300)]
    check_finite(agent.update(batch), step=300)
    start = torch.stack(hist[:5]).mean().item()
    end = torch.stack(hist[-20:]).mean().item()
    assert end < 0.1 * start, (start, end)
    a = agent.act(batch["observations"], deterministic=False)
    assert a.shape == (64, A) and a.abs().max() <= 1.0
    assert agent.act(batch["observations"][0], deterministic=True).shape == (A,)
    assert agent.policy_q(batch["observations"]).shape == (64,)
    q = agent.q_value(batch["observations"], batch["actions"])
    assert q.shape == (64,) and (q - batch["rewards"]).square().mean() < 0.1 * start


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("method", METHODS)
def test_state_dict_round_trip_is_bit_identical(method):
    hp = dict(SMALL[method])
    if method in ("cql", "calql"):
        hp.update(cql_lagrange=True, cql_target_action_gap=0.8)
    if method == "iql":
        hp.update(dropout=0.1)  # exercises the agent's RNG in the update
    torch.manual_seed(1)
    a = make_agent(method, O, A, hp, "cpu")
    for i in range(5):
        a.update(make_batch(seed=i))
    a.set_mode("online")
    torch.manual_seed(2)  # a differently initialized agent
    b = make_agent(method, O, A, hp, "cpu")
    b.load_state_dict(_roundtrip(a.state_dict()))
    assert b.mode == "online"
    batch = make_batch(seed=99)
    ma, mb = a.update(batch), b.update(batch)
    assert ma.keys() == mb.keys()
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k
    for (n1, p1), (_, p2) in zip(
        a.state_dict()["modules"]["policy"].items(), b.state_dict()["modules"]["policy"].items()
    ):
        assert torch.equal(p1, p2), n1
    assert torch.equal(a.act(batch["observations"], False), b.act(batch["observations"], False))
    c = agent_from_state_dict(_roundtrip(a.state_dict()))
    assert type(c) is type(a) and c.cfg == a.cfg
    assert torch.equal(c.policy_q(batch["observations"]), a.policy_q(batch["observations"]))


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_numbers(method):
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        agent = make_agent(method, O, A, SMALL[method], "cpu")
        runs.append([agent.update(make_batch(seed=i)) for i in range(3)])
    for m1, m2 in zip(*runs):
        assert all(torch.equal(m1[k], m2[k]) for k in m1)


def test_checkpoint_of_other_method_or_size_is_rejected():
    torch.manual_seed(0)
    cql = make_agent("cql", O, A, SMALL["cql"], "cpu")
    with pytest.raises(CheckpointError, match="method"):
        make_agent("calql", O, A, SMALL["calql"], "cpu").load_state_dict(cql.state_dict())
    with pytest.raises(CheckpointError):
        make_agent("cql", O, A, {**SMALL["cql"], "critic_hidden": [16]}, "cpu").load_state_dict(cql.state_dict())


def test_unknown_hyperparameter_is_a_config_error_with_suggestion():
    with pytest.raises(ConfigError, match="cql_min_q_weigth.*Did you mean: cql_min_q_weight"):
        make_agent("calql", O, A, {"cql_min_q_weigth": 5.0}, "cpu")
    with pytest.raises(ConfigError, match="expectile"):
        make_agent("iql", O, A, {"expectile": 1.5}, "cpu")
    with pytest.raises(ConfigError, match="unknown algorithm 'calq'.*calql"):
        make_agent("calq", O, A, {}, "cpu")
    with pytest.raises(ConfigError, match="critic_hidden"):
        make_agent("sac", O, A, {"critic_hidden": [0]}, "cpu")


def test_defaults_are_the_official_ones():
    c = CalQLConfig()
    assert (c.policy_lr, c.qf_lr, c.tau, c.gamma) == (1e-4, 3e-4, 5e-3, 0.99)
    assert (c.cql_n_actions, c.cql_min_q_weight, c.cql_temp, c.cql_target_action_gap) == (10, 5.0, 1.0, 1.0)
    assert c.cql_importance_sample and c.max_target_backup and not c.backup_entropy and not c.cql_lagrange
    assert c.cql_clip_diff_min == -math.inf and c.calibrate_online
    i = IQLConfig()
    assert (i.expectile, i.beta, i.actor_lr, i.max_weight) == (0.9, 10.0, 3e-4, 100.0)
    assert set(hparam_names("calql")) == set(hparam_names("cql")) | {"calibrate_online"}
    assert default_hparams("cql")["critic_hidden"] == [256, 256]
    assert CQLConfig.from_dict({"critic_hidden": "256-256-256-256"}).critic_hidden == (256,) * 4
    assert SACConfig.from_dict({}).gamma == 0.99
    with pytest.raises(ConfigError, match="cql_n_actions"):
        SACConfig.from_dict({"cql_n_actions": 4})  # a CQL key is not a SAC key


def test_check_finite_names_step_and_loss():
    check_finite({"a": torch.tensor(1.0)}, step=3)
    with pytest.raises(TrainingDivergedError, match=r"step 7.*qf1_loss=nan"):
        check_finite({"a": torch.tensor(1.0), "qf1_loss": torch.tensor(float("nan"))}, step=7)


def _first_update(method: str, hparams: dict, phase: str | None, batch: dict) -> dict[str, float]:
    torch.manual_seed(0)
    agent = make_agent(method, O, A, hparams, "cpu")
    if phase is not None:
        agent.set_mode(phase)
    torch.manual_seed(1)
    return {k: float(v) for k, v in agent.update(batch).items()}


def test_phase_switches_change_the_update_as_configured():
    """Online, Cal-QL with `calibrate_online: false` and `cql_min_q_weight_online: 0.5` updates
    exactly as CQL with weight 0.5 (offline it does not: there the bound and weight 5 apply);
    CQL with `online_use_cql: false` has no CQL term online; an unknown phase is refused."""
    batch = make_batch()
    batch["mc_returns"] = batch["mc_returns"] + 100.0  # far above Q: the Cal-QL bound is active
    hp = {**SMALL["calql"], "cql_min_q_weight_online": 0.5, "calibrate_online": False}
    cql_half = _first_update("cql", {**SMALL["cql"], "cql_min_q_weight": 0.5}, None, batch)
    online = _first_update("calql", hp, "online", batch)
    offline = _first_update("calql", hp, None, batch)
    shared = sorted(set(cql_half) & set(online))
    assert "qf1_loss" in shared and "policy_loss" in shared
    assert [online[k] for k in shared] == [cql_half[k] for k in shared]
    assert offline["qf1_loss"] != online["qf1_loss"]
    with pytest.raises(ValueError, match="phase"):
        make_agent("calql", O, A, hp, "cpu").set_mode("finetune")
    no_cql = _first_update("cql", {**SMALL["cql"], "online_use_cql": False}, "online", make_batch())
    assert "cql_qf1_diff" not in no_cql and "qf1_loss" in no_cql
    assert "cql_qf1_diff" in _first_update("cql", SMALL["cql"], "online", make_batch())


# ------------------------------------------------------------------- official-gradient reference


def _q_concat(critic, obs, act, params=None):
    """The official concat-MLP Q(s, a), one state-action pair per row: [B, K, O], [B, K, A] -> [B, K]."""
    w0 = torch.cat([critic.obs_in.weight, critic.act_in.t()], dim=1)
    h = torch.relu(F.linear(torch.cat([obs, act], dim=-1), w0, critic.obs_in.bias))
    for layer in critic.hidden:
        h = torch.relu(layer(h))
    return critic.out(h).squeeze(-1)


def _reference_losses(agent, batch, eps, rand, calibrate):
    """Straightforward port of the official JAX loss_fn (separate forwards per set)."""
    c = agent.cfg
    obs, act, nxt = batch["observations"], batch["actions"], batch["next_observations"]
    b, n, nb = obs.shape[0], c.cql_n_actions, agent.n_backup
    rep = lambda x, k: x.unsqueeze(1).expand(-1, k, -1)  # noqa: E731
    q1, q2 = agent.critics
    t1, t2 = agent.target_critics
    mean, log_std = agent.policy(obs)
    mean_n, log_std_n = agent.policy(nxt)
    e_s, e_n = eps[:b], eps[b:]
    new_a, log_pi = TanhGaussianPolicy.sample(mean, log_std, e_s[:, :1])
    alpha_loss = -agent.log_alpha * (log_pi + agent.target_entropy).mean()
    alpha = agent.log_alpha.exp()
    q_new = torch.minimum(_q_concat(q1, rep(obs, 1), new_a), _q_concat(q2, rep(obs, 1), new_a))
    policy_loss = (alpha * log_pi - q_new).mean()
    q1_pred = _q_concat(q1, rep(obs, 1), act.unsqueeze(1))[:, 0]
    q2_pred = _q_concat(q2, rep(obs, 1), act.unsqueeze(1))[:, 0]
    nna, _ = TanhGaussianPolicy.sample(mean_n, log_std_n, e_n[:, :nb])
    tq = torch.minimum(_q_concat(t1, rep(nxt, nb), nna), _q_concat(t2, rep(nxt, nb), nna)).max(dim=1).values
    td = (batch["rewards"] + (1 - batch["dones"]) * c.gamma * tq).detach()
    bell = [((q1_pred - td) ** 2).mean(), ((q2_pred - td) ** 2).mean()]
    cur_a, cur_lp = TanhGaussianPolicy.sample(mean, log_std, e_s[:, 1 : 1 + n])
    nxt_a, nxt_lp = TanhGaussianPolicy.sample(mean_n, log_std_n, e_n[:, nb : nb + n])
    g = batch["mc_returns"].unsqueeze(1).expand(-1, n)
    ap = torch.clamp(agent.log_alpha_prime.exp(), 0.0, 1e6)
    diffs = []
    for qf, pred in ((q1, q1_pred), (q2, q2_pred)):
        q_rand = _q_concat(qf, rep(obs, n), rand)
        q_cur = _q_concat(qf, rep(obs, n), cur_a)
        q_nxt = _q_concat(qf, rep(obs, n), nxt_a)
        if calibrate:
            q_cur, q_nxt = torch.maximum(q_cur, g), torch.maximum(q_nxt, g)
        cat = torch.cat([q_rand - math.log(0.5**A), q_nxt - nxt_lp, q_cur - cur_lp], dim=1)
        diffs.append((torch.logsumexp(cat, dim=1) - pred).mean())
    cql = [ap * c.cql_min_q_weight * (d - c.cql_target_action_gap) for d in diffs]
    return {
        "policy": (policy_loss, list(agent.policy.parameters())),
        "log_alpha": (alpha_loss, [agent.log_alpha]),
        "qf1": (bell[0] + cql[0], list(q1.parameters())),
        "qf2": (bell[1] + cql[1], list(q2.parameters())),
        "log_alpha_prime": (-(cql[0] + cql[1]) * 0.5, [agent.log_alpha_prime]),
    }


@pytest.mark.parametrize("method", ["cql", "calql"])
def test_fused_update_equals_official_per_loss_gradients(method):
    torch.manual_seed(0)
    hp = {**SMALL[method], "cql_lagrange": True, "cql_target_action_gap": 0.8, "cql_n_actions": 3}
    agent = make_agent(method, O, A, hp, "cpu")
    for i in range(3):  # move away from the symmetric initial point
        agent.update(make_batch(seed=i))
    batch = make_batch(seed=10)
    batch["mc_returns"] = batch["mc_returns"] + 0.05  # Q ~ G: the bound is active on part of the entries
    eps, rand = agent._draw_noise(64)
    total, metrics = agent._losses(batch, eps, rand)
    agent.optimizer.zero_grad(set_to_none=True)
    total.backward()
    ref = _reference_losses(agent, batch, eps, rand, calibrate=method == "calql")
    assert 0.0 < metrics["bound_rate"].item() < 1.0
    assert metrics["qf1_loss"].item() == pytest.approx(ref["qf1"][0].item(), rel=1e-5)
    for name, (loss, params) in ref.items():
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        for p, g in zip(params, grads):
            g = torch.zeros_like(p) if g is None else g
            assert p.grad is not None, name
            assert torch.allclose(p.grad, g, atol=1e-6, rtol=1e-4), (name, (p.grad - g).abs().max())


def test_calql_equals_cql_when_returns_are_below_q():
    """The bound changes nothing when Q >= G, and never touches random actions / data / target."""
    torch.manual_seed(0)
    cql = make_agent("cql", O, A, SMALL["cql"], "cpu")
    calql = make_agent("calql", O, A, SMALL["calql"], "cpu")
    calql.load_state_dict({**cql.state_dict(), "method": "calql"})
    batch = make_batch()
    batch["mc_returns"] = torch.full((64,), -1e6)
    m1, m2 = cql.update(batch), calql.update(batch)
    for k in m1:
        assert torch.equal(m1[k], m2[k]), k


def test_calql_bound_only_on_policy_action_sets():
    torch.manual_seed(0)
    agent = make_agent("calql", O, A, {**SMALL["calql"], "cql_n_actions": 2}, "cpu")
    b, n = 1, 2
    # layout per critic: [data, rand x2, cur x2, next x2]
    q = torch.tensor([[0.0, -50.0, -60.0, -70.0, 3.0, -80.0, 4.0]])
    lp = torch.zeros(b, 1 + n + agent.n_backup)  # log-probs 0 for simplicity
    batch = {"mc_returns": torch.tensor([1.0])}
    pens, _, m = agent._regularizer([q, q.clone()], batch, lp, torch.zeros(b, agent.n_backup + n))
    ld = L.uniform_log_density(A)
    # random (-50, -60) stay, cur -70 -> 1, next -80 -> 1; data stays 0
    expected = torch.logsumexp(torch.tensor([-50 - ld, -60 - ld, 1.0, 4.0, 1.0, 3.0]), 0) - 0.0
    assert m["cql_qf1_diff"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert m["bound_rate"].item() == pytest.approx(0.5)  # -70, -80 of 4 policy values per critic


def test_benchmark_script_runs(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_update.py"
    spec = importlib.util.spec_from_file_location("bench_update", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "r.json"
    args = [
        "--methods",
        "calql",
        "iql",
        "--sizes",
        "small",
        "--threads",
        "1",
        "--warmup",
        "0",
        "--steps",
        "1",
        "--repeats",
        "1",
        "--batch",
        "16",
        "--out",
        str(out),
    ]
    assert bench.main(args) == 0
    rows = json.loads(out.read_text())["results"]
    assert {r["method"] for r in rows} == {"calql", "iql"} and all(r["ms_median"] > 0 for r in rows)


def test_iql_update_matches_jaxrl_order():
    """Value step first; actor and critics then use the *updated* V (jaxrl IQL learner)."""
    torch.manual_seed(0)
    a = make_agent("iql", O, A, SMALL["iql"], "cpu")
    b = agent_from_state_dict(_roundtrip(a.state_dict()))
    batch = make_batch(seed=5)
    a.update(batch)

    s, act, nxt, c = batch["observations"], batch["actions"], batch["next_observations"], b.cfg
    with torch.no_grad():
        tq = torch.minimum(*(t(s, act.unsqueeze(1))[:, 0] for t in b.target_critics))
    diff = tq - b.value(s)
    v_loss = (torch.where(diff > 0, c.expectile, 1 - c.expectile) * diff**2).mean()
    b.value_optimizer.zero_grad()
    v_loss.backward()
    b.value_optimizer.step()
    with torch.no_grad():
        w = torch.exp(c.beta * (tq - b.value(s))).clamp(max=100.0)
        y = batch["rewards"] + c.gamma * (1 - batch["dones"]) * b.value(nxt)
    mean, log_std = b.policy(s)
    actor_loss = -(w * torch.distributions.Normal(mean, log_std.exp()).log_prob(act).sum(-1)).mean()
    critic_loss = sum(((q(s, act.unsqueeze(1))[:, 0] - y) ** 2).mean() for q in b.critics)
    b.optimizer.zero_grad()
    actor_loss.backward()
    critic_loss.backward()
    b.optimizer.step()
    with torch.no_grad():
        for tp, p in zip(b.target_critics.parameters(), b.critics.parameters()):
            tp.mul_(1 - c.tau).add_(c.tau * p)
    for name, mod in a._modules().items():
        for (k, p1), p2 in zip(mod.state_dict().items(), b._modules()[name].state_dict().values()):
            assert torch.allclose(p1, p2, atol=1e-6), (name, k)


def test_calql_without_online_calibration_is_cql_online():
    """CORL's variant: calibrate_online=False makes the online Cal-QL update exactly CQL's."""
    torch.manual_seed(0)
    cql = make_agent("cql", O, A, SMALL["cql"], "cpu")
    calql = make_agent("calql", O, A, {**SMALL["calql"], "calibrate_online": False}, "cpu")
    calql.load_state_dict({**cql.state_dict(), "method": "calql"})
    batch = make_batch()
    batch["mc_returns"] = torch.full((64,), 1e3)  # would bound every entry if calibration were on
    cql.set_mode("online")
    calql.set_mode("online")
    m1, m2 = cql.update(batch), calql.update(batch)
    assert all(torch.equal(m1[k], m2[k]) for k in m1)
    calql.set_mode("offline")
    assert calql.update(batch)["qf1_loss"] != cql.update(batch)["qf1_loss"]


def test_backup_samples_sac_knows_no_cql_setting():
    """SAC's backup size comes from its own config (official default 10); CQL's follows cql_n_actions."""
    assert SACConfig().n_backup_actions() == 10
    assert SACConfig(backup_n_actions=3).n_backup_actions() == 3
    assert SACConfig(max_target_backup=False, backup_n_actions=3).n_backup_actions() == 1
    assert CQLConfig(cql_n_actions=4).n_backup_actions() == 4
    assert CQLConfig(cql_n_actions=4, backup_n_actions=2).n_backup_actions() == 2
    torch.manual_seed(0)
    assert make_agent("sac", O, A, SMALL["sac"], "cpu").n_backup == 10
    assert make_agent("cql", O, A, SMALL["cql"], "cpu").n_backup == 4


def test_cql_action_sets_partition_the_critic_actions():
    """Data, uniform, pi(.|s) and pi(.|s') sets tile the 1 + 3N critic actions without overlap."""
    from calql.agents.cql import CQLActionSets

    sets = CQLActionSets(n=3, n_backup=2)
    columns = list(range(1 + 3 * 3))
    tiled = [sets.data, *columns[sets.uniform], *columns[sets.current], *columns[sets.next]]
    assert tiled == columns
    assert columns[sets.policy] == columns[sets.current] + columns[sets.next]
    assert list(range(1 + 3))[sets.state_samples] == [1, 2, 3]  # after the actor's sample
    assert list(range(2 + 3))[sets.next_samples] == [2, 3, 4]  # after the 2 backup samples


@pytest.mark.parametrize("lagrange", [False, True])
def test_cql_alpha_prime_is_trained_only_with_lagrange(lagrange):
    torch.manual_seed(0)
    agent = make_agent("cql", O, A, {**SMALL["cql"], "cql_lagrange": lagrange}, "cpu")
    before = agent.log_alpha_prime.item()
    agent.update(make_batch())
    optimized = {id(p) for group in agent.optimizer.param_groups for p in group["params"]}
    assert (id(agent.log_alpha_prime) in optimized) == lagrange
    assert (agent.log_alpha_prime.item() != before) == lagrange
