"""AWAC agent: learning, bit-identical checkpoint round trip, determinism, and the update against a
plain re-implementation of its references (CORL, AWAC-F jaxrl AWAC)."""

import io

import pytest
import torch
import torch.nn.functional as F

from calql.agents.awac import AWACAgent
from calql.agents.configs import AWACConfig
from calql.agents.policies import GaussianPolicy
from calql.errors import ConfigError

torch.set_num_threads(1)
O, A = 3, 2  # noqa: E741 - observation and action sizes

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
    for i in range(4):
        a.update(make_batch(seed=i))
    a.set_phase("online")
    b = make(variant, 2)  # differently initialized
    b.load_state_dict(roundtrip(a.state_dict()))
    assert b.phase == "online" and b.num_updates == 4
    for i in range(4):
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
        runs.append([agent.update(make_batch(seed=i)) for i in range(3)])
    for m1, m2 in zip(*runs):
        assert all(torch.equal(m1[k], m2[k]) for k in m1)
    other = make(variant, 4).update(make_batch(seed=0))
    assert not torch.equal(other["critic_loss"], runs[0][0]["critic_loss"])


def test_configs_reject_bad_values():
    with pytest.raises(ConfigError, match="advantage_weights"):
        AWACConfig.from_dict({"advantage_weights": "softmx"})
    with pytest.raises(ConfigError, match="awac_lamda.*Did you mean"):
        AWACConfig.from_dict({"awac_lamda": 2})


def test_defaults_are_the_references():
    awac = AWACConfig()
    assert (awac.awac_lambda, awac.max_weight, awac.tau) == (0.1, 100.0, 5e-3)
    assert awac.actor_lr == awac.critic_lr == 3e-4
    assert awac.actor_hidden == awac.critic_hidden == (256, 256, 256) and awac.advantage_weights == "exp"


# ------------------------------------------------------------------------------- networks


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
