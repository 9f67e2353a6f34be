"""Task-difficulty loss weighting: progress and weights by hand, the learner's weighted total, the loop wiring."""

import json

import numpy as np
import pytest
import torch
from tiny_run import filled_learner

from scalezero.config import ConfigError, config_from_dict
from scalezero.tasks.base import TaskSpec
from scalezero.training.loop import train
from scalezero.training.weighting import difficulty_weights, task_progress

SPEC = TaskSpec("t", "vector", (4,), 2, target_return=10.0)


def test_progress_by_hand():
    assert task_progress([], SPEC) == 0.0
    assert task_progress([2.0, 4.0], SPEC) == pytest.approx(0.3)
    assert task_progress([2.0, 4.0], TaskSpec("t", "vector", (4,), 2, target_return=10.0, random_return=2.0)) == pytest.approx(1 / 8)
    assert task_progress([50.0], SPEC) == 1.0 and task_progress([-5.0], SPEC) == 0.0
    # Negative targets (e.g. Acrobot: random -500, target -100) measure progress the same way.
    acrobot = TaskSpec("a", "vector", (6,), 3, target_return=-100.0, random_return=-500.0)
    assert task_progress([-300.0], acrobot) == pytest.approx(0.5)
    # A target at or below the random return: solved or not, nothing in between.
    easy = TaskSpec("e", "vector", (4,), 2, target_return=5.0, random_return=22.0)
    assert task_progress([6.0], easy) == 1.0 and task_progress([4.0], easy) == 0.0


def test_weights_by_hand():
    np.testing.assert_allclose(difficulty_weights([0.4, 0.4, 0.4], 1.0), [1, 1, 1])
    w = difficulty_weights([1.0, 0.0], 0.5)
    assert w.mean() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(np.exp(1 / 0.5))  # the unsolved task pulls e^2 times harder
    np.testing.assert_allclose(difficulty_weights([1.0, 0.0, 0.5], 1e6), [1, 1, 1], rtol=1e-5)


def test_bad_weighting_values_fail_fast():
    with pytest.raises(ConfigError, match="train.task_weighting = 'hardest' is not allowed"):
        config_from_dict({"tasks": ["cartpole"], "train": {"task_weighting": "hardest"}})
    with pytest.raises(ConfigError, match="train.difficulty_temperature"):
        config_from_dict({"tasks": ["cartpole"], "train": {"difficulty_temperature": 0}})


SMALL = {
    "tasks": ["cartpole", "minatar-breakout"],
    "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8},
    "search": {"num_simulations": 4},
    "replay": {"unroll_steps": 2, "td_steps": 2},
    "train": {"num_envs": 4, "batch_size": 4, "context_steps": 2},
}


def test_learner_total_is_the_weighted_mean_of_task_losses():
    config = config_from_dict(SMALL)
    _, collector, learner = filled_learner(config, 4)
    batch = learner.sample(collector.replays, [0, 1])
    uniform = learner.compute_losses(batch)
    torch.testing.assert_close(uniform.total, uniform.task_totals.mean())
    learner.task_weights = np.array([1.5, 0.5])
    weighted = learner.compute_losses(batch)
    tt = weighted.task_totals.detach()
    torch.testing.assert_close(weighted.total.detach(), (1.5 * tt[0] + 0.5 * tt[1]) / 2)
    assert learner.update(batch)["task0/loss_weight"] == 1.5


def test_loop_sets_difficulty_weights_from_training_returns(tmp_path):
    # CartPole's target is set below any episode's return (every episode lasts 8+ steps), so it
    # is solved and must weigh less than Breakout, far from its target.
    tasks = [{"name": "cartpole", "target_return": 5.0}, {"name": "minatar-breakout"}]
    data = {**SMALL, "tasks": tasks, "train": {**SMALL["train"], "env_steps": 100, "learning_starts": 40, "replay_ratio": 1.0, "eval_every": 120, "eval_episodes": 1, "eval_max_steps": 10, "checkpoint_every": 120, "task_weighting": "difficulty"}}
    train(config_from_dict(data), tmp_path / "run", show_progress=False)
    rows = json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]
    weights = [(r["task0/loss_weight"], r["task1/loss_weight"]) for r in rows if "task0/loss_weight" in r]
    assert weights, "weights are logged with the losses"
    w0, w1 = weights[-1]
    assert (w0 + w1) / 2 == pytest.approx(1.0)
    assert w0 < w1
