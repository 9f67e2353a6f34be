"""Gradient-conflict diagnostic: hand-made gradients, and a real MoE learner step."""

import math

import numpy as np
import torch

from scalezero.config import config_from_dict
from scalezero.training.collector import Collector
from scalezero.training.conflict import pairwise_conflict
from scalezero.training.learner import Learner
from scalezero.training.loop import build_model, resolve_tasks


def test_identical_gradients_agree_and_opposed_ones_conflict():
    g = torch.tensor([1.0, 2.0, -1.0])
    mean_cos, frac, strength = pairwise_conflict(torch.stack([g, 2 * g, 0.5 * g]))
    assert math.isclose(mean_cos, 1.0, rel_tol=1e-6) and frac == 0.0 and strength == 0.0
    mean_cos, frac, strength = pairwise_conflict(torch.stack([g, -g]))
    assert math.isclose(mean_cos, -1.0, rel_tol=1e-6) and frac == 1.0 and math.isclose(strength, 1.0, rel_tol=1e-6)


def test_mixed_pairs_hand_computed():
    grads = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # pairs: (0,1) cos 0, (0,2) cos -1, (1,2) cos 0 -> mean -1/3, one of three negative
    mean_cos, frac, strength = pairwise_conflict(grads)
    assert math.isclose(mean_cos, -1 / 3, rel_tol=1e-6) and math.isclose(frac, 1 / 3) and math.isclose(strength, 1 / 3, rel_tol=1e-6)


def test_near_orthogonal_pairs_count_as_conflicts_but_barely_weigh():
    # cos(g0, g1) = -0.01: a "conflict" by sign, of strength 0.01; g2 opposes g0 by 0.5.
    grads = torch.tensor([[1.0, 0.0], [-0.01, (1 - 0.01**2) ** 0.5], [-0.5, 0.75**0.5]])
    _, frac, strength = pairwise_conflict(grads)
    cos12 = float(grads[1] @ grads[2])
    assert math.isclose(frac, 2 / 3 + (cos12 < 0) / 3)
    assert math.isclose(strength, (0.01 + 0.5 + max(0.0, -cos12)) / 3, rel_tol=1e-5)


def test_zero_gradients_have_no_direction():
    grads = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert all(math.isnan(x) for x in pairwise_conflict(grads))


def test_learner_reports_conflict_for_backbone_and_experts():
    config = config_from_dict(
        {
            "tasks": ["cartpole", "minatar-breakout", "minatar-asterix"],
            "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8, "moe_num_experts": 3},
            "search": {"num_simulations": 4},
            "replay": {"unroll_steps": 2, "td_steps": 2},
            "train": {"num_envs": 4, "batch_size": 4, "context_steps": 2, "conflict_every": 2},
        }
    )
    tasks, layout = resolve_tasks(config)
    torch.manual_seed(0)
    model = build_model(config, layout, torch.device("cpu"))
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    for _ in range(4):
        collector.step(model, [0, 1, 2])
    learner = Learner(model, layout, config, torch.device("cpu"))
    measured = [learner.update(learner.sample(collector.replays, [0, 1, 2])) for _ in range(4)]
    # Measured at updates 0 and 2 only (after zero-initialised heads have moved, values are finite).
    assert ["conflict/all/mean_cosine" in m for m in measured] == [True, False, True, False]
    last = measured[2]
    for group in ("all", "backbone", "experts"):
        assert -1.0 <= last[f"conflict/{group}/mean_cosine"] <= 1.0
        assert 0.0 <= last[f"conflict/{group}/fraction_negative"] <= 1.0
    assert np.isfinite(last["loss/total"])
