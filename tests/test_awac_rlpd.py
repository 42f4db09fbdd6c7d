"""AWAC and RLPD agents: learning, bit-identical checkpoint round trip, determinism, RLPD's actor
period, and each update against a plain re-implementation of its reference (CORL / AWAC-F jaxrl
AWAC, ikostrikov/rlpd SACLearner)."""

import io
import math

import pytest
import torch
import torch.nn.functional as F

from calql.agents.awac import AWACAgent
from calql.agents.hyperparameters import AWACConfig, RLPDConfig
from calql.agents.networks import EnsembleCritic
from calql.agents.policies import GaussianPolicy, TanhNormalPolicy
from calql.agents.rlpd import RLPDAgent
from calql.errors import ConfigError

torch.set_num_threads(1)
O, A = 3, 2  # noqa: E741 - observation and action sizes
PERIOD = 3  # RLPD actor period in these tests (20 in RLPD-F)

SMALL = {"actor_hidden": [32, 32], "critic_hidden": [32, 32]}
# AWAC-F (nakamotoo/jaxrl dev_mitsuhiko, awac_default.py + run_antmaze.sh) at test size.
AWAC_F = {
    **SMALL,
    "awac_lambda": 1.0,
    "advantage_weights": "softmax",
    "actor_weight_decay": 1e-4,
    "orthogonal_init": True,
    "tanh_mean": True,
    "log_std_min": -10.0,
    "clip_policy_samples": False,
    "data_action_clip": 1 - 1e-5,
}
VARIANTS = {
    "awac": (AWACAgent, AWACConfig, SMALL),
    "awac_f": (AWACAgent, AWACConfig, {**AWAC_F, "value_samples": 3}),
    "rlpd": (RLPDAgent, RLPDConfig, {**SMALL, "actor_update_period": PERIOD}),
}


def make(variant: str, seed: int, **overrides):
    torch.manual_seed(seed)
    cls, config_cls, hparams = VARIANTS[variant]
    return cls(O, A, config_cls.from_dict({**hparams, **overrides}), "cpu")


def make_batch(n: int = 64, seed: int = 0, terminal: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, O, generator=g)
    act = torch.rand(n, A, generator=g) * 2 - 1
    act[0, 0] = 1.0  # a boundary action: AWAC-F's data-action clip acts on it
    return {
        "observations": obs,
        "actions": act,
        "rewards": obs[:, 0] + act[:, 0] * obs[:, 1],
        "next_observations": torch.randn(n, O, generator=g),
        "dones": torch.ones(n) if terminal else (torch.rand(n, generator=g) < 0.2).float(),
    }


def roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def all_weights(agent) -> dict[str, torch.Tensor]:
    """Copies of every network tensor and free tensor (state_dict holds the live ones)."""
    state = roundtrip(agent.state_dict())
    out = {f"{m}.{k}": v for m, sd in state["modules"].items() for k, v in sd.items()}
    out.update({f"tensor.{k}": v for k, v in state["tensors"].items()})
    return out


# ------------------------------------------------------------------------------- agents


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_learns_known_target(variant):
    """With terminal transitions the Bellman target is r: the critics must fit it."""
    agent = make(variant, 0, critic_lr=1e-3)
    batch = make_batch(terminal=True)
    hist = [agent.update(batch)["critic_loss"] for _ in range(300)]
    start = torch.stack(hist[:5]).mean().item()
    end = torch.stack(hist[-20:]).mean().item()
    assert end < 0.1 * start, (start, end)
    a = agent.act(batch["observations"], deterministic=False)
    assert a.shape == (64, A) and a.abs().max() <= 1.0
    assert agent.act(batch["observations"][0], deterministic=True).shape == (A,)
    assert agent.policy_q(batch["observations"]).shape == (64,)
    q = agent.q_value(batch["observations"], batch["actions"])
    assert q.shape == (64,) and (q - batch["rewards"]).square().mean() < 0.1 * start


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_state_dict_round_trip_is_bit_identical(variant):
    a = make(variant, 1)
    for i in range(4):  # RLPD: mid-period (next actor step on the 6th call)
        a.update(make_batch(seed=i))
    a.set_mode("online")
    b = make(variant, 2)  # differently initialized
    b.load_state_dict(roundtrip(a.state_dict()))
    assert b.mode == "online" and b.num_updates == 4
    for i in range(4):  # RLPD: crosses the actor step of call 6
        batch = make_batch(seed=10 + i)
        ma, mb = a.update(batch), b.update(batch)
        assert ma.keys() == mb.keys()
        for k in ma:
            assert torch.equal(ma[k], mb[k]), (i, k)
    wa, wb = all_weights(a), all_weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    obs = make_batch(seed=99)["observations"]
    assert torch.equal(a.act(obs, False), b.act(obs, False))
    assert torch.equal(a.policy_q(obs), b.policy_q(obs))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_same_seed_same_numbers(variant):
    runs = []
    for _ in range(2):
        agent = make(variant, 3)
        runs.append([agent.update(make_batch(seed=i)) for i in range(PERIOD + 1)])
    for m1, m2 in zip(*runs):
        assert all(torch.equal(m1[k], m2[k]) for k in m1)
    other = make(variant, 4).update(make_batch(seed=0))
    assert not torch.equal(other["critic_loss"], runs[0][0]["critic_loss"])


def test_rlpd_actor_and_temperature_change_only_every_kth_update():
    agent = make("rlpd", 0)
    changed = []
    for i in range(2 * PERIOD):
        before = all_weights(agent)
        metrics = agent.update(make_batch(seed=i))
        after = all_weights(agent)
        moved = {k for k in before if not torch.equal(before[k], after[k])}
        assert any(k.startswith("critics.") for k in moved) and any(k.startswith("target_critics.") for k in moved)
        actor_moved = any(k.startswith("policy.") for k in moved)
        assert actor_moved == ("tensor.log_temp" in moved)
        changed.append(actor_moved)
        if actor_moved:
            actor_metrics = {k: metrics[k] for k in ("policy_loss", "entropy", "temperature_loss")}
        elif i > PERIOD:  # between actor steps the last actor step's metrics are repeated
            assert all(torch.equal(metrics[k], v) for k, v in actor_metrics.items())
    assert changed == [(i + 1) % PERIOD == 0 for i in range(2 * PERIOD)]


def test_configs_reject_bad_values():
    with pytest.raises(ConfigError, match="advantage_weights"):
        AWACConfig.from_dict({"advantage_weights": "softmx"})
    with pytest.raises(ConfigError, match="num_min_qs"):
        RLPDConfig.from_dict({"num_qs": 2, "num_min_qs": 3})
    with pytest.raises(ConfigError, match="num_min_q.*Did you mean"):
        RLPDConfig.from_dict({"num_min_q": 2})


def test_defaults_are_the_references():
    awac = AWACConfig()
    assert (awac.awac_lambda, awac.max_weight, awac.tau) == (0.1, 100.0, 5e-3)
    assert awac.actor_lr == awac.critic_lr == 3e-4
    assert awac.actor_hidden == awac.critic_hidden == (256, 256, 256) and awac.advantage_weights == "exp"
    rlpd = RLPDConfig()
    assert (rlpd.num_qs, rlpd.num_min_qs, rlpd.actor_update_period, rlpd.init_temperature) == (10, 2, 20, 1.0)
    assert rlpd.critic_layer_norm and not rlpd.backup_entropy and rlpd.critic_hidden == (256, 256, 256)
    torch.manual_seed(0)
    assert RLPDAgent(O, A, RLPDConfig.from_dict(SMALL), "cpu").target_entropy == -A / 2


# ------------------------------------------------------------------------------- networks


def _member_q(critic: EnsembleCritic, e: int, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """RLPD's StateActionValue for member e on concat(s, a): Dense -> LayerNorm -> ReLU ..., Dense(1)."""
    w0 = torch.cat([critic.obs_in[e], critic.act_in[e]], dim=0)
    h = torch.cat([obs, act], dim=-1) @ w0 + critic.biases[0][e]
    for layer in range(len(critic.kernels)):
        if layer > 0:
            h = h @ critic.kernels[layer - 1][e] + critic.biases[layer][e]
        if critic.layer_norm:
            h = F.layer_norm(h, h.shape[-1:], critic.norm_scales[layer][e, 0], critic.norm_offsets[layer][e, 0], 1e-6)
        h = torch.relu(h)
    return (h @ critic.kernels[-1][e] + critic.biases[-1][e]).squeeze(-1)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_ensemble_critic_equals_per_member_mlps(layer_norm):
    torch.manual_seed(0)
    critic = EnsembleCritic(O, A, (16, 8), num_members=4, layer_norm=layer_norm)
    with torch.no_grad():  # non-trivial LayerNorm parameters
        for p in critic.parameters():
            p.add_(0.1 * torch.randn_like(p))
    obs, act = torch.randn(5, O), torch.rand(5, 3, A) * 2 - 1
    q = critic(obs, act)
    assert q.shape == (4, 5, 3)
    for e in range(4):
        ref = _member_q(critic, e, obs.unsqueeze(1).expand(-1, 3, -1), act)
        assert torch.allclose(q[e], ref, atol=1e-5), e
    members = torch.tensor([2, 0])
    assert torch.allclose(critic(obs, act, members), q[members], atol=1e-6)


def test_ensemble_critic_init_is_xavier_uniform_per_member():
    torch.manual_seed(0)
    critic = EnsembleCritic(O, A, (64, 64), num_members=3, layer_norm=True)
    bound0 = math.sqrt(6.0 / (O + A + 64))
    first = torch.cat([critic.obs_in, critic.act_in], dim=1)
    assert first.abs().max() <= bound0 and first.abs().max() > 0.9 * bound0
    assert not torch.equal(first[0], first[1])  # members are initialized independently
    assert critic.kernels[-1].abs().max() <= math.sqrt(6.0 / 65)
    assert all(torch.count_nonzero(b) == 0 for b in critic.biases)


def test_gaussian_policy_tanh_mean_clip_and_log_prob():
    torch.manual_seed(0)
    policy = GaussianPolicy(O, A, (8,), tanh_mean=True, orthogonal_init=True, log_std_min=-10.0, log_std_max=2.0)
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([-12.0, 0.5]))
    obs = 10 * torch.randn(4, O)
    mean, log_std = policy(obs)
    assert torch.allclose(mean, torch.tanh(policy.net(obs)))
    assert log_std[0].tolist() == [-10.0, 0.5]
    act = torch.rand(4, A) * 2 - 1
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(act).sum(-1)
    assert torch.allclose(GaussianPolicy.log_prob(mean, log_std, act), ref, atol=1e-5)


def test_tanh_normal_policy_heads_and_mode():
    torch.manual_seed(0)
    policy = TanhNormalPolicy(O, A, (8, 8), log_std_min=-20.0, log_std_max=2.0)
    assert policy.net.out.weight.abs().max() <= math.sqrt(6.0 / (8 + A))  # xavier bound of one head
    obs = torch.randn(4, O)
    mean, log_std = policy(obs)
    raw = policy.net(obs)
    assert torch.equal(mean, raw[:, :A]) and torch.equal(log_std, raw[:, A:].clamp(-20.0, 2.0))
    assert torch.equal(policy.deterministic(obs), torch.tanh(mean))


# ------------------------------------------------------------------------------- references


def _awac_reference_update(agent: AWACAgent, batch: dict, eps: torch.Tensor) -> None:
    """CORL `AdvantageWeightedActorCritic.update` / jaxrl AWAC-F `_update_jit`, written out plainly,
    with one forward per critic and per action set and separate backward passes."""
    c = agent.cfg
    obs, act, nxt = batch["observations"], batch["actions"], batch["next_observations"]
    q1, q2 = agent.critics
    t1, t2 = agent.target_critics

    def q(critic, s, a):  # [B, A] -> [B]
        return critic(s, a.unsqueeze(1))[:, 0]

    def dist(s):
        mean = agent.policy.net(s)
        if c.tanh_mean:
            mean = torch.tanh(mean)
        std = agent.policy.log_std.clamp(c.log_std_min, c.log_std_max).exp()
        return torch.distributions.Normal(mean, std)

    def sample(s, noise):
        d = dist(s)
        a = d.mean + d.stddev * noise
        return a.clamp(-1.0, 1.0) if c.clip_policy_samples else a

    with torch.no_grad():
        next_a = sample(nxt, eps[:, 0])
        y = batch["rewards"] + c.gamma * (1 - batch["dones"]) * torch.minimum(q(t1, nxt, next_a), q(t2, nxt, next_a))
    critic_loss = F.mse_loss(q(q1, obs, act), y) + F.mse_loss(q(q2, obs, act), y)
    agent.critic_optimizer.zero_grad()
    critic_loss.backward()
    agent.critic_optimizer.step()

    a_data = act if c.data_action_clip is None else act.clamp(-c.data_action_clip, c.data_action_clip)
    with torch.no_grad():
        v1 = torch.stack([q(q1, obs, sample(obs, eps[:, 1 + k])) for k in range(c.value_samples)]).mean(0)
        v2 = torch.stack([q(q2, obs, sample(obs, eps[:, 1 + k])) for k in range(c.value_samples)]).mean(0)
        adv = torch.minimum(q(q1, obs, a_data), q(q2, obs, a_data)) - torch.minimum(v1, v2)
    log_prob = dist(obs).log_prob(a_data).sum(-1)
    if c.advantage_weights == "softmax":
        actor_loss = -(torch.softmax(adv / c.awac_lambda, dim=0) * log_prob).sum()
    else:
        actor_loss = (-log_prob * torch.clamp_max(torch.exp(adv / c.awac_lambda), c.max_weight)).mean()
    agent.actor_optimizer.zero_grad()
    actor_loss.backward()
    agent.actor_optimizer.step()
    with torch.no_grad():
        for tp, p in zip(agent.target_critics.parameters(), agent.critics.parameters()):
            tp.copy_((1 - c.tau) * tp + c.tau * p)


@pytest.mark.parametrize("variant", ["awac", "awac_f"])
def test_awac_update_equals_reference(variant):
    a = make(variant, 0)
    for i in range(3):  # move away from the initial point
        a.update(make_batch(seed=i))
    b = make(variant, 5)
    b.load_state_dict(roundtrip(a.state_dict()))
    batch = make_batch(seed=20)
    a.update(batch)
    eps = torch.randn(64, 1 + b.cfg.value_samples, A, generator=b.generator)  # the agent's draw
    _awac_reference_update(b, batch, eps)
    wa, wb = all_weights(a), all_weights(b)
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6, rtol=1e-5), (k, (wa[k] - wb[k]).abs().max())


def _rlpd_reference_update(agent: RLPDAgent, batch: dict, with_actor: bool) -> None:
    """ikostrikov/rlpd `update_critic`, then (last minibatch) `update_actor` and `update_temperature`,
    with a Python loop over members and each loss differentiated with respect to its own parameters."""
    c = agent.cfg
    obs, act, nxt = batch["observations"], batch["actions"], batch["next_observations"]
    b = obs.shape[0]
    eps = torch.randn(2 * b if with_actor else b, 1, A, generator=agent.generator)[:, 0]
    members = torch.randperm(c.num_qs, generator=agent.generator)[: c.num_min_qs]
    temp = agent.log_temp.exp()

    def tanh_normal(s, noise):
        out = agent.policy.net(s)
        mean, log_std = out[:, :A], out[:, A:].clamp(c.log_std_min, c.log_std_max)
        base = torch.distributions.Normal(mean, log_std.exp())
        pre = mean + log_std.exp() * noise
        log_prob = base.log_prob(pre).sum(-1) - (2 * (math.log(2) - pre - F.softplus(-2 * pre))).sum(-1)
        return torch.tanh(pre), log_prob

    with torch.no_grad():
        next_a, next_lp = tanh_normal(nxt, eps[:b])
        next_q = torch.stack([_member_q(agent.target_critics, int(e), nxt, next_a) for e in members]).min(0).values
        y = batch["rewards"] + c.gamma * (1 - batch["dones"]) * next_q
        if c.backup_entropy:
            y = y - c.gamma * (1 - batch["dones"]) * temp * next_lp
    qs = torch.stack([_member_q(agent.critics, e, obs, act) for e in range(c.num_qs)])
    critic_loss = ((qs - y) ** 2).mean()
    critic_params = list(agent.critics.parameters())
    for p, g in zip(critic_params, torch.autograd.grad(critic_loss, critic_params)):
        p.grad = g
    agent.critic_optimizer.step()
    with torch.no_grad():
        for tp, p in zip(agent.target_critics.parameters(), critic_params):
            tp.copy_(p * c.tau + tp * (1 - c.tau))  # optax.incremental_update
    if not with_actor:
        return
    a_pi, log_pi = tanh_normal(obs, eps[b:])
    q = torch.stack([_member_q(agent.critics, e, obs, a_pi) for e in range(c.num_qs)]).mean(0)
    actor_loss = (log_pi * temp - q).mean()
    actor_params = list(agent.policy.parameters())
    for p, g in zip(actor_params, torch.autograd.grad(actor_loss, actor_params)):
        p.grad = g
    entropy = -log_pi.detach().mean()
    temp_loss = agent.log_temp.exp() * (entropy - agent.target_entropy)
    (agent.log_temp.grad,) = torch.autograd.grad(temp_loss, [agent.log_temp])
    agent.actor_optimizer.step()


@pytest.mark.parametrize("backup_entropy", [False, True])
def test_rlpd_update_equals_reference(backup_entropy):
    a = make("rlpd", 0, backup_entropy=backup_entropy, num_qs=4)
    for i in range(PERIOD):  # one actor step already taken: non-trivial temperature and Adam state
        a.update(make_batch(seed=i))
    b = make("rlpd", 5, backup_entropy=backup_entropy, num_qs=4)
    b.load_state_dict(roundtrip(a.state_dict()))
    for i in range(PERIOD):  # critic-only calls, then one with the actor and temperature
        batch = make_batch(seed=30 + i)
        with_actor = a.updates_actor_next()
        a.update(batch)
        _rlpd_reference_update(b, batch, with_actor)
        b.num_updates += 1
    assert with_actor
    wa, wb = all_weights(a), all_weights(b)
    for k in wa:
        if k != "tensor.last_actor_metrics":
            assert torch.allclose(wa[k], wb[k], atol=1e-6, rtol=1e-5), (k, (wa[k] - wb[k]).abs().max())
