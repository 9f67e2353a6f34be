"""Epsilon-greedy collection (``search.collect_epsilon``): the schedule, the checks on its
values, and that it changes the action played and stored while the policy target stays the
search's."""

import numpy as np
import pytest
import torch

from scalezero.config import ConfigError, SearchConfig, config_from_dict
from scalezero.training.collector import Collector, _epsilon_actions
from scalezero.training.loop import build_model, resolve_tasks

SUITE = {
    "tasks": ["minatar-breakout", "minatar-seaquest"],
    "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8},
    "search": {"algorithm": "gumbel", "num_simulations": 4},
    "replay": {"unroll_steps": 2, "td_steps": 2},
    "train": {"num_envs": 8, "batch_size": 4, "context_steps": 2, "env_steps": 1000},
}


def test_epsilon_moves_linearly_then_stays():
    cfg = SearchConfig(collect_epsilon=1.0, collect_epsilon_final=0.05, epsilon_anneal=0.25)
    assert [cfg.epsilon_at(p) for p in (0.0, 0.25, 0.5, 1.0)] == pytest.approx([1.0, 0.05, 0.05, 0.05])
    assert cfg.epsilon_at(0.125) == pytest.approx(0.525)
    assert SearchConfig().epsilon_at(0.3) == 0.0  # off by default


@pytest.mark.parametrize("field,value", [("collect_epsilon", 1.5), ("collect_epsilon_final", -0.1), ("epsilon_anneal", 0.0)])
def test_bad_epsilon_settings_name_the_field(field, value):
    with pytest.raises(ConfigError, match=f"search.{field}"):
        config_from_dict({**SUITE, "search": {**SUITE["search"], field: value}})


def test_random_actions_are_uniform_over_legal_ones():
    legal = np.zeros((6000, 6), bool)
    legal[:3000, [1, 4]] = True  # rows with two legal actions
    legal[3000:, [0, 2, 3, 5]] = True  # rows with four
    chosen = np.zeros(6000, np.int64)
    out = _epsilon_actions(chosen, legal, 1.0, np.random.default_rng(0))
    assert legal[np.arange(6000), out].all()
    np.testing.assert_allclose(np.bincount(out[:3000], minlength=6)[[1, 4]] / 3000, [0.5, 0.5], atol=0.03)
    np.testing.assert_allclose(np.bincount(out[3000:], minlength=6)[[0, 2, 3, 5]] / 3000, [0.25] * 4, atol=0.03)
    half = _epsilon_actions(chosen, np.ones((6000, 6), bool), 0.5, np.random.default_rng(1))
    assert (half != 0).mean() == pytest.approx(0.5 * 5 / 6, abs=0.03)  # a random draw may repeat the choice
    np.testing.assert_array_equal(_epsilon_actions(chosen, legal, 0.0, np.random.default_rng(2)), chosen)


def _first_step(epsilon: float):
    config = config_from_dict({**SUITE, "search": {**SUITE["search"], "collect_epsilon": epsilon}})
    tasks, layout = resolve_tasks(config)
    torch.manual_seed(0)
    model = build_model(config, layout, torch.device("cpu"))
    for p in model.heads.parameters():  # a prior that prefers some actions
        torch.nn.init.normal_(p, std=0.5)
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    collector.step(model, [0, 1], progress=0.0)
    return collector, layout


def test_collection_plays_random_legal_actions_but_keeps_the_search_target():
    greedy, layout = _first_step(0.0)
    random, _ = _first_step(1.0)
    for t in (0, 1):
        a, b = greedy.replays[t], random.replays[t]
        # Same observations, same search: the policy targets and root values agree exactly.
        np.testing.assert_array_equal(a.obs[:, 0], b.obs[:, 0])
        np.testing.assert_array_equal(a.policies[:, 0], b.policies[:, 0])
        np.testing.assert_array_equal(a.root_values[:, 0], b.root_values[:, 0])
        # The actions played are legal ones of the task, and differ from the search's somewhere.
        assert layout.action_masks[t][b.actions[:, 0]].all()
    differs = [(greedy.replays[t].actions[:, 0] != random.replays[t].actions[:, 0]).any() for t in (0, 1)]
    assert any(differs)
