"""Reanalyse: a fresh search of the same model on the same context gives the actor's targets.

The actor searches with a model whose weights are the learner's target network; a deterministic
Gumbel search (no root noise) then makes the stored policy targets and root values a function
of the model and the context alone. Reanalysing sampled windows with that same network must
reproduce them exactly, position by position, across episode boundaries, left-padded contexts
and the suite's padding of observations; a different network must give different targets.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scalezero.config import load_suite, with_overrides
from scalezero.training.collector import Collector
from scalezero.training.learner import Learner
from scalezero.training.loop import build_model, resolve_tasks


def _setup(suite: str, overrides: dict, steps: int):
    config = load_suite(suite)
    config = with_overrides(config, "model", embed_dim=32, num_heads=2, mlp_hidden=32)
    config = with_overrides(config, "search", algorithm="gumbel", gumbel_scale=0.0, num_simulations=8)
    config = with_overrides(config, "replay", reanalyse_fraction=1.0, reanalyse_values=True)
    config = with_overrides(config, "train", num_envs=4, batch_size=32, torch_threads=1, **overrides)
    torch.manual_seed(0)
    tasks, layout = resolve_tasks(config)
    device = torch.device("cpu")
    learner = Learner(build_model(config, layout, device), layout, config, device)
    with torch.no_grad():  # a non-trivial policy and value, so searches differ from step to step
        for p in learner.target.heads.parameters():
            p.add_(0.3 * torch.randn_like(p))
    collector = Collector(tasks, layout, config, device)
    task_ids = list(range(len(tasks)))
    for _ in range(steps):
        collector.step(learner.target, task_ids)
    return learner, collector, task_ids


def _stored(replay) -> dict[bytes, tuple[np.ndarray, float]]:
    """Observation bytes -> (policy target, root value) the actor stored at that step, for
    observations seen at one step only (a repeated frame had several contexts)."""
    out, seen = {}, {}
    for stream, slot in zip(*np.nonzero(replay.kinds == 0)):
        key = replay.obs[stream, slot].tobytes()
        seen[key] = seen.get(key, 0) + 1
        out[key] = (replay.policies[stream, slot], float(replay.root_values[stream, slot]))
    return {k: v for k, v in out.items() if seen[k] == 1}


@pytest.mark.parametrize("suite,overrides,steps", [("cartpole", {}, 40), ("minatar", {"context_steps": 2}, 25)], ids=["cartpole", "minatar-5-tasks"])
def test_reanalysed_targets_equal_the_actors_search_of_the_same_model(suite, overrides, steps) -> None:
    learner, collector, task_ids = _setup(suite, overrides, steps)
    batch = learner.sample(collector.replays, task_ids)
    checked = 0
    for t, window in batch.windows.items():
        stored = _stored(collector.replays[t])
        if suite == "cartpole":  # continuous observations: every step's observation is unique
            assert len(stored) == len(collector.replays[t])
        K = learner.config.replay.unroll_steps
        for r, p in zip(*np.nonzero(window.is_step)):
            key = window.obs[r, p].tobytes()
            if key not in stored:
                continue
            policy, root_value = stored[key]
            if p <= K:
                np.testing.assert_allclose(window.policies[r, p], policy, atol=1e-4)
            if p >= 1:
                assert batch.fresh_values[t][r, p] == pytest.approx(root_value, abs=1e-4)
            checked += 1
        assert np.isnan(batch.fresh_values[t][window.terminal]).all()  # terminal entries bootstrap 0, not searched
    assert checked > 50


def test_a_different_target_network_gives_different_targets() -> None:
    learner, collector, task_ids = _setup("cartpole", {}, 40)
    with torch.no_grad():
        for p in learner.target.heads.policy.parameters():
            p.add_(torch.randn_like(p))
    batch = learner.sample(collector.replays, task_ids)
    stored = _stored(collector.replays[0])
    window = batch.windows[0]
    diffs = [np.abs(window.policies[r, p] - stored[window.obs[r, p].tobytes()][0]).max() for r, p in zip(*np.nonzero(window.is_step[:, :6]))]
    assert np.mean(np.asarray(diffs) > 1e-3) > 0.5


def test_only_the_configured_fraction_is_searched() -> None:
    learner, collector, task_ids = _setup("cartpole", {}, 40)
    learner.config = with_overrides(learner.config, "replay", reanalyse_fraction=0.25)
    batch = learner.sample(collector.replays, task_ids)
    searched = ~np.isnan(batch.fresh_values[0]).all(axis=1)
    assert searched.tolist() == [True] * 8 + [False] * 24
