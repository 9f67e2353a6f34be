"""Continuous actions (Sampled MuZero): the squashed-Gaussian policy against torch's own
distributions, the tree cache against the full-sequence forward with sampled actions, batched
search over candidates in a suite of mixed action dimensions, replay and the policy loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import distributions as D

from scalezero.config import Config, ModelConfig, ReplayConfig, SearchConfig, TaskEntry, TrainConfig
from scalezero.model import ActionSampler, SimNorm, TreeSearchModel, WorldModel
from scalezero.model.policy import SquashedGaussian
from scalezero.tasks import EnvBatch, TaskSpec, make_layout
from scalezero.tasks.gymnasium_task import gymnasium_task
from scalezero.training.acting import ContextHistory, search_actions
from scalezero.training.collector import Collector
from scalezero.training.learner import Learner

REACH = str(Path(__file__).parent / "fixtures" / "continuous_envs.py") + ":Reach"
SMALL = {"embed_dim": 32, "num_layers": 2, "num_heads": 2, "simnorm_group": 8, "support_size": 10, "mlp_hidden": 32}


def reach_tasks():
    return [
        gymnasium_task("reach1", REACH, 10.0, kwargs={"dim": 1}, action_bins=0),
        gymnasium_task("reach3", REACH, 10.0, kwargs={"dim": 3}, action_bins=0),
    ]


def randomize_policy(model: WorldModel) -> None:
    torch.nn.init.normal_(model.heads.policy.net[-1].weight, std=0.5)
    torch.nn.init.normal_(model.heads.policy.net[-1].bias, std=0.5)


# ------------------------------------------------------------------ the policy


def test_log_prob_and_samples_match_torch_tanh_gaussian():
    torch.manual_seed(0)
    params = torch.randn(5, 6)  # 3 dims
    mask = torch.ones(5, 3, dtype=torch.bool)
    ours = SquashedGaussian(params, mask, init_std=0.5)
    ref = D.TransformedDistribution(D.Independent(D.Normal(ours.mu, ours.log_std.exp()), 1), [D.TanhTransform()])
    actions = ref.sample((4,)).clamp(-0.999, 0.999).transpose(0, 1)  # [5, 4, 3]
    torch.testing.assert_close(ours.log_prob(actions), ref.log_prob(actions.transpose(0, 1)).transpose(0, 1), rtol=1e-4, atol=1e-4)
    draws = ours.sample(1000, generator=torch.Generator().manual_seed(1))
    assert draws.shape == (5, 1000, 3) and draws.abs().max() < 1
    torch.testing.assert_close(torch.atanh(draws).mean(1), ours.mu, rtol=0, atol=0.15)
    torch.testing.assert_close(ours.entropy(), D.Normal(ours.mu, ours.log_std.exp()).entropy().sum(-1))


def test_zero_head_gives_the_configured_initial_spread():
    dist = SquashedGaussian(torch.zeros(2, 4), torch.ones(2, 2, dtype=torch.bool), init_std=0.3)
    torch.testing.assert_close(dist.log_std.exp(), torch.full((2, 2), 0.3))
    assert (dist.mode() == 0).all()


def test_padded_dimensions_are_inert():
    params = torch.randn(2, 6)
    mask = torch.tensor([[True, False, False], [True, True, True]])
    dist = SquashedGaussian(params, mask)
    draws = dist.sample(8)
    assert (draws[0, :, 1:] == 0).all() and (draws[1] != 0).all()
    a = torch.rand(2, 1, 3) * 1.8 - 0.9
    b = a.clone()
    b[0, :, 1:] = 0.5  # other values in padded dimensions
    torch.testing.assert_close(dist.log_prob(a)[0], dist.log_prob(b)[0])
    assert dist.mode()[0, 1:].abs().sum() == 0 and (dist.mode()[0] * 0 == 0).all()


def test_a_suite_cannot_mix_continuous_and_discrete_tasks():
    with pytest.raises(ValueError, match="cannot mix continuous tasks"):
        make_layout([TaskSpec("c", "vector", (3,), 0, 1.0, action_dim=2), TaskSpec("d", "vector", (3,), 4, 1.0)])
    with pytest.raises(ValueError, match="num_actions must be 0"):
        TaskSpec("c", "vector", (3,), 2, 1.0, action_dim=2)


def test_box_actions_stay_continuous_and_are_rescaled_to_the_bounds():
    task = reach_tasks()[1]
    assert task.spec.action_dim == 3 and task.spec.num_actions == 0
    env = task.make_env(0)
    env.reset()
    env.step(np.array([1.0, -1.0, 0.0], np.float32))  # +2, -2, 0 in the env's units: moves +0.25, -0.25, 0
    inner = env._env
    start = inner.pos.copy()
    env.step(np.array([-1.0, 0.0, 1.0], np.float32))
    np.testing.assert_allclose(inner.pos - start, np.clip(start + [-0.25, 0, 0.25], -1, 1) - start, atol=1e-6)
    batch = EnvBatch(task, 2, seed=0)
    with pytest.raises(ValueError, match=r"actions must be \[2, 3\] finite floats"):
        batch.step(np.zeros((2, 2), np.float32))


# ------------------------------------------------------------------ the tree cache


def test_tree_cache_matches_full_sequence_with_sampled_actions(record_recurrent):
    layout = make_layout([t.spec for t in reach_tasks()])
    torch.manual_seed(1)
    model = WorldModel(ModelConfig(attention_window_steps=3, **SMALL), layout).eval()
    randomize_policy(model)
    b, t = 2, 3
    gen = torch.Generator().manual_seed(3)
    latents = SimNorm(8)(torch.randn(b, t, 32, generator=gen) * 2)
    task_ids = torch.tensor([0, 1])
    actions = torch.rand(b, t - 1, 3, generator=gen) * 2 - 1
    actions[0, :, 1:] = 0  # task 0 has one dimension
    captured = record_recurrent(model)
    with torch.no_grad():
        root = model.initial_inference(latents, actions, task_ids)
        sampler = ActionSampler(model, 4, include_mode=True, generator=torch.Generator().manual_seed(0))
        candidates = sampler(root.policy_logits, task_ids)
    assert (candidates[0, :, 1:] == 0).all()
    parents_seq = [0, 1, 1, 2, 4, 0]
    slots = np.random.default_rng(0).integers(0, 4, size=(len(parents_seq), b))
    tree = TreeSearchModel(model, root, task_ids, len(parents_seq) + 1, root_actions=candidates, sampler=sampler)
    taken = {}
    for s, p in enumerate(parents_seq):
        parents = np.full(b, p, dtype=np.int32)
        _reward, _value, logits = tree(parents, slots[s].astype(np.int32), s + 1)
        assert logits.shape == (b, 4) and (logits == 0).all()  # uniform prior over the draws
        for row in range(b):
            taken[(row, s + 1)] = tree.node_actions[row, p, slots[s, row]].clone()
    for row in range(b):
        for node in range(1, len(parents_seq) + 1):
            path, cur = [], node
            while cur != 0:
                path.append(cur)
                cur = int(tree.parent[row, cur])
            path.reverse()
            seq_latents = torch.cat([latents[row], tree.latents[row, path]])
            seq_actions = torch.cat([actions[row], torch.stack([taken[(row, n)] for n in path]), torch.zeros(1, 3)])
            with torch.no_grad():
                full = model.forward_sequence(seq_latents[None], seq_actions[None], task_ids[row : row + 1])
            got = captured[node - 1]
            step = t - 1 + len(path)
            torch.testing.assert_close(got.reward_logits[row], full.reward_logits[0, step - 1], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got.value_logits[row], full.value_logits[0, step], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got.policy_logits[row], full.policy_logits[0, step], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ acting and learning


def small_config(**train) -> Config:
    return Config(
        tasks=(TaskEntry("reach1", target_return=10.0, entry_point=REACH, kwargs={"dim": 1}, action_bins=0),
               TaskEntry("reach3", target_return=10.0, entry_point=REACH, kwargs={"dim": 3}, action_bins=0)),
        model=ModelConfig(**SMALL),
        search=SearchConfig(num_simulations=6, num_samples=4),
        replay=ReplayConfig(unroll_steps=3, td_steps=2),
        train=TrainConfig(num_envs=3, batch_size=4, context_steps=2, **train),
    )  # fmt: skip


@pytest.mark.parametrize("explore", [True, False])
def test_search_plays_one_of_the_root_candidates(explore):
    config = small_config()
    tasks = reach_tasks()
    layout = make_layout([t.spec for t in tasks])
    torch.manual_seed(0)
    model = WorldModel(config.resolved_model(), layout).eval()
    randomize_policy(model)
    histories = {t: ContextHistory(EnvBatch(task, 3, seed=t).obs if t else np.pad(EnvBatch(task, 3, seed=t).obs, ((0, 0), (0, 4))), 2, 3)
                 for t, task in enumerate(tasks)}  # fmt: skip
    result = search_actions(model, layout, histories, config.search, 0.99, np.random.default_rng(0), explore, torch.device("cpu"))
    for t, out in result.outputs.items():
        dims = tasks[t].spec.action_dim
        assert out.candidates.shape == (3, 4, 3) and out.env_actions.shape == (3, dims)
        np.testing.assert_array_equal(out.actions, out.candidates[np.arange(3), out.search.action])
        np.testing.assert_array_equal(out.env_actions, out.actions[:, :dims])
        assert (out.actions[:, dims:] == 0).all() and (np.abs(out.actions) <= 1).all()
        np.testing.assert_allclose(out.search.policy_target.sum(1), 1.0, rtol=1e-5)
        assert (out.search.visit_counts.sum(1) == 6).all()


def test_collector_stores_candidates_and_the_policy_loss_trains_the_policy():
    config = small_config()
    tasks = reach_tasks()
    layout = make_layout([t.spec for t in tasks])
    torch.manual_seed(0)
    model = WorldModel(config.resolved_model(), layout)
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    for _ in range(8):
        collector.step(model, [0, 1])
    replay = collector.replays[1]
    assert replay.candidates is not None and replay.actions.shape[-1] == 3
    learner = Learner(model, layout, config, torch.device("cpu"))
    batch = learner.sample(collector.replays, [0, 1])
    assert batch.windows[0].candidates.shape == (4, 6, 4, 3)
    losses = learner.compute_losses(batch)
    assert torch.isfinite(losses.total) and float(losses.losses["policy"].detach()) != 0.0
    head = model.heads.policy.net[-1].weight.detach().clone()
    embed = model.action_embed.weight.detach().clone()
    metrics = learner.update(batch)
    assert "nonfinite" not in metrics
    assert not torch.equal(head, model.heads.policy.net[-1].weight) and not torch.equal(embed, model.action_embed.weight)
