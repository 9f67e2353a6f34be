"""Epsilon-greedy collection (``search.collect_epsilon``, ``search.epsilon_zeta``): the
schedule, the checks on its values, that it changes the action played and stored while the
policy target stays the search's, that repeated random actions last as the zeta law says and
stop where they turn illegal, and that such a run resumes exactly."""

import numpy as np
import pytest
import torch
from tiny_run import EXACT_TRAIN, history, resume_copy, tiny

from scalezero.config import EPSILON_MAX_REPEAT, ConfigError, SearchConfig, config_from_dict
from scalezero.training.checkpoint import load_arrays
from scalezero.training.collector import Collector, RandomRun, _epsilon_actions
from scalezero.training.loop import build_model, resolve_tasks, train

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


@pytest.mark.parametrize(
    "field,value", [("collect_epsilon", 1.5), ("collect_epsilon_final", -0.1), ("epsilon_anneal", 0.0), ("epsilon_zeta", 1.0), ("epsilon_zeta", -2.0)]
)
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


def test_repeated_random_actions_follow_the_zeta_law_and_stop_when_illegal():
    n = 20_000
    held = RandomRun(np.zeros(n, np.int64), np.zeros(n, np.int64))
    legal = np.ones((n, 4), bool)
    search_choice = np.full(n, 3)
    first = _epsilon_actions(search_choice, legal, 1.0, np.random.default_rng(0), held, zeta=2.0)
    np.testing.assert_array_equal(held.action, first)
    lengths = held.left + 1
    # P(n) = n^-2 / zeta(2): 6 / pi^2 of the runs last one step, 1.5 / pi^2 two steps.
    assert (lengths == 1).mean() == pytest.approx(6 / np.pi**2, abs=0.01)
    assert (lengths == 2).mean() == pytest.approx(1.5 / np.pi**2, abs=0.01)
    assert lengths.max() == EPSILON_MAX_REPEAT
    # Next step, with no new random runs: rows in a run replay their action, unless it is illegal now.
    legal[: n // 2, :] = False
    legal[: n // 2, 3] = True  # first half: only the search's choice is legal
    left_before = held.left.copy()
    second = _epsilon_actions(search_choice, legal, 0.0, np.random.default_rng(1), held, zeta=2.0)
    in_run = left_before > 0
    keeps = in_run.copy()
    keeps[: n // 2] &= first[: n // 2] == 3
    np.testing.assert_array_equal(second[keeps], first[keeps])
    np.testing.assert_array_equal(second[~keeps], 3)
    np.testing.assert_array_equal(held.left[keeps], left_before[keeps] - 1)
    assert (held.left[~keeps] == 0).all()


def test_a_run_with_repeated_random_actions_resumes_exactly(tmp_path):
    data = tiny(**EXACT_TRAIN)
    data["search"] = {**data["search"], "collect_epsilon": 0.5, "collect_epsilon_final": 0.1, "epsilon_zeta": 2.0}
    config = config_from_dict(data)
    straight = tmp_path / "straight"
    train(config, straight, show_progress=False)
    saved = load_arrays(straight / "checkpoints" / "ckpt_80")
    assert any(saved[f"explore{t}.left"].any() for t in (0, 1))  # a random run is under way at the checkpoint
    resumed = resume_copy(straight, "ckpt_80", tmp_path / "resumed")
    train(config, resumed, show_progress=False, resume=True)
    (a_train, a_eval, _), (c_train, c_eval, _) = history(straight), history(resumed)
    assert a_train == c_train and a_eval == c_eval
    plain = tmp_path / "plain"
    train(config_from_dict(tiny(**EXACT_TRAIN)), plain, show_progress=False)
    assert history(plain)[0] != a_train  # the option changes the run
