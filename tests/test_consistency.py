"""EZ-M's pieces: temporal and path consistency losses (zero when consistent by construction,
positive otherwise, gradients where intended), max-norm task embeddings, per-task replay."""

import math

import numpy as np
import pytest
import torch

from scalezero.config import ConfigError, config_from_dict
from scalezero.model.consistency import ConsistencyProjector
from scalezero.model.support import Support
from scalezero.training.collector import Collector
from scalezero.training.learner import Learner, path_consistency
from scalezero.training.loop import build_model, resolve_tasks


def test_temporal_consistency_zero_when_aligned_positive_otherwise():
    torch.manual_seed(0)
    head = ConsistencyProjector(16, 32)
    head.predictor = torch.nn.Identity()  # so that equal latents are consistent by construction
    z = torch.randn(4, 3, 16)
    torch.testing.assert_close(head.loss(z, z), torch.zeros(4, 3), atol=1e-6, rtol=0)
    assert (ConsistencyProjector(16, 32).loss(z, torch.randn(4, 3, 16)) > 0).all()


def test_temporal_consistency_gradients_take_the_online_side_only():
    torch.manual_seed(1)
    head = ConsistencyProjector(16, 32)
    predicted = torch.randn(5, 16, requires_grad=True)
    observed = torch.randn(5, 16, requires_grad=True)
    head.loss(predicted, observed).sum().backward()
    assert predicted.grad is not None and predicted.grad.abs().sum() > 0
    assert observed.grad is None  # stop-gradient on the encoded observation
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.predictor.parameters())


def _logits(support: Support, values: list[list[float]]) -> torch.Tensor:
    return torch.log(support.scalar_to_two_hot(torch.tensor(values)) + 1e-12)


def test_path_consistency_by_hand():
    support, gamma = Support(50), 0.9
    # v_t = r_t + gamma * v_{t+1} holds on both pairs; the second step ends the episode.
    values = [[2.0 + 0.9 * 3.0, 3.0, 7.0]]
    rewards = [[2.0, 3.0, 0.0]]
    terminal = np.array([[False, True]])  # step 2 is terminal: v_2 (7.0) must not count
    loss = path_consistency(_logits(support, values), _logits(support, rewards), support, gamma, terminal)
    assert loss.shape == (1, 2) and float(loss.max()) < 1e-6
    bad = path_consistency(_logits(support, [[1.0, 3.0, 7.0]]), _logits(support, rewards), support, gamma, np.array([[False, False]]))
    h = lambda x: math.copysign(math.sqrt(abs(x) + 1) - 1, x) + 0.001 * x
    assert float(bad[0, 0]) == pytest.approx((h(1.0) - h(2.0 + 0.9 * 3.0)) ** 2, rel=1e-4)
    assert float(bad[0, 1]) == pytest.approx((h(3.0) - h(3.0 + 0.9 * 7.0)) ** 2, rel=1e-4)  # step 2 no longer terminal


SMALL = {
    "tasks": ["cartpole", "minatar-breakout"],
    "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8, "consistency_head": True},
    "search": {"num_simulations": 4},
    "replay": {"unroll_steps": 3, "td_steps": 2},
    "train": {"num_envs": 4, "batch_size": 6, "context_steps": 2},
}


def _setup(**train):
    config = config_from_dict({**SMALL, "train": {**SMALL["train"], **train}})
    tasks, layout = resolve_tasks(config)
    torch.manual_seed(0)
    model = build_model(config, layout, torch.device("cpu"))
    for p in model.heads.parameters():  # non-zero heads, so the path loss is not trivially 0
        torch.nn.init.normal_(p, std=0.3)
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    for _ in range(12):
        collector.step(model, [0, 1])
    return model, collector, Learner(model, layout, config, torch.device("cpu"))


@pytest.mark.parametrize("loss, parts", [("temporal_consistency", ["consistency.predictor", "heads.next_latent", "transformer"]),
                                         ("path_consistency", ["heads.value", "heads.reward", "transformer"])])  # fmt: skip
def test_losses_reach_the_intended_parameters(loss, parts):
    model, collector, learner = _setup(**{f"{loss}_weight": 1.0})
    result = learner.compute_losses(learner.sample(collector.replays, [0, 1]))
    value = result.losses[loss]
    assert value > 0
    model.zero_grad()
    value.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for part in parts:
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(part)), part


def test_temporal_weight_needs_the_head():
    with pytest.raises(ConfigError, match="model.consistency_head"):
        config_from_dict({**SMALL, "model": {**SMALL["model"], "consistency_head": False}, "train": {"temporal_consistency_weight": 1.0}})


def test_task_embeddings_are_held_to_max_norm():
    config = config_from_dict({**SMALL, "model": {**SMALL["model"], "task_embedding_max_norm": 0.5}})
    _, layout = resolve_tasks(config)
    model = build_model(config, layout, torch.device("cpu"))
    with torch.no_grad():
        model.task_embed.weight[0].fill_(3.0)  # far above the limit
        model.task_embed.weight[1].fill_(0.01)  # below it: unchanged
    e = model._task_bias(torch.tensor([0, 1])).squeeze(1)
    assert float(e[0].detach().norm()) == pytest.approx(0.5, rel=1e-5)
    torch.testing.assert_close(e[1], model.task_embed.weight[1])


def test_replay_is_independent_per_task():
    _, collector, _ = _setup()
    for t, replay in collector.replays.items():
        spec = collector.envs[t].task.spec
        assert replay.obs.shape[2:] == spec.obs_shape  # each buffer holds its own task's observations
        assert replay.steps_added == collector.env_steps[t]  # and exactly the steps its copies took
