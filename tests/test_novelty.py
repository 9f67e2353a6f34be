"""Count-based exploration (``train.novelty_bonus``): bonuses by hand, what collection stores
(the env's reward plus the bonus of the observation each copy arrived in, an ended episode's
last one included), what it logs, and exact resume with the counts in the checkpoint."""

import json

import numpy as np
import pytest
import torch
from tiny_run import EXACT_TRAIN, history, resume_copy, tiny

from scalezero.config import ConfigError, config_from_dict
from scalezero.training.checkpoint import load_arrays
from scalezero.training.collector import Collector
from scalezero.training.loop import build_model, resolve_tasks, train
from scalezero.training.novelty import CENTER_RATE, NoveltyCounter, observation_keys


def test_bonus_falls_with_the_square_root_of_visits():
    a, b = np.zeros((3, 2), np.uint8), np.ones((3, 2), np.uint8)
    counter = NoveltyCounter(0.6)
    bonuses = counter.bonus(np.stack([a, b, a, a]))
    assert bonuses == pytest.approx([0.6, 0.6, 0.6 / np.sqrt(2), 0.6 / np.sqrt(3)])
    assert len(counter) == 2
    again = NoveltyCounter(0.6)
    again.load_state_arrays(counter.state_arrays())
    assert again.bonus(np.stack([b]))[0] == pytest.approx(0.6 / np.sqrt(2))
    keys = observation_keys(np.stack([a, b, a]))
    assert keys.dtype == np.uint64 and keys[0] == keys[2] != keys[1]


def test_centered_bonus_subtracts_the_running_mean_of_the_bonuses_before_it():
    a, b = np.zeros((3, 2), np.uint8), np.ones((3, 2), np.uint8)
    counter = NoveltyCounter(0.6, centered=True)
    raw, mean, expected = [0.6, 0.6, 0.6 / np.sqrt(2), 0.6 / np.sqrt(3)], 0.0, []
    for r in raw:  # by hand: the bonus less the exponential mean of the earlier ones
        expected.append(r - mean)
        mean += CENTER_RATE * (r - mean)
    assert counter.bonus(np.stack([a, b, a, a])) == pytest.approx(expected)
    assert counter.mean == pytest.approx(mean)
    again = NoveltyCounter(0.6, centered=True)
    again.load_state_arrays(counter.state_arrays())
    assert again.bonus(np.stack([b]))[0] == pytest.approx(0.6 / np.sqrt(2) - mean)
    # Over many arrivals in a settled region the centered bonus averages zero, the plain one does not.
    settled = np.stack([np.full((3, 2), i % 5, np.uint8) for i in range(20_000)])
    assert abs(counter.bonus(settled)[-1000:].mean()) < 1e-3
    assert NoveltyCounter(0.6).bonus(settled)[-1000:].mean() > 0.005


def test_bad_bonus_names_the_field():
    with pytest.raises(ConfigError, match="train.novelty_bonus"):
        config_from_dict(tiny(novelty_bonus=-1.0))
    with pytest.raises(ConfigError, match="train.novelty_centered"):
        config_from_dict(tiny(novelty_centered=True))


def test_collection_stores_the_reward_plus_the_bonus_of_the_observation_arrived_in():
    config = config_from_dict({**tiny(novelty_bonus=0.5), "tasks": ["cartpole"]})
    tasks, layout = resolve_tasks(config)
    torch.manual_seed(0)
    model = build_model(config, layout, torch.device("cpu"))
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    by_hand = NoveltyCounter(0.5)
    expected, ended = [], 0
    original_step = collector.envs[0].step

    def recording(actions, active=None):
        step = original_step(actions, active)
        arrived = np.where(step.done[:, None], step.final_obs, step.obs)
        expected.append(step.reward + by_hand.bonus(arrived))
        return step

    collector.envs[0].step = recording
    for _ in range(40):  # cartpole episodes under an untrained model end within 40 steps
        stats = collector.step(model, [0])
        ended += len(stats["episodes"])
    assert ended > 0 and stats["novelty"] == [(0, len(by_hand))]
    replay = collector.replays[0]
    streams, head = np.arange(replay.num_streams), (replay.written - 1) % replay.stream_capacity
    # The last collection step's rewards, for every copy whose last entry is a step (not a final entry).
    last = replay.kinds[streams, head] == 0
    assert last.any()
    np.testing.assert_allclose(replay.rewards[streams, head][last], expected[-1][last], rtol=1e-6)
    assert collector.novelty[0].counts == by_hand.counts


def test_a_run_with_the_bonus_logs_distinct_observations_and_resumes_exactly(tmp_path):
    config = config_from_dict(tiny(**EXACT_TRAIN, novelty_bonus=0.3))
    straight = tmp_path / "straight"
    train(config, straight, show_progress=False)
    saved = load_arrays(straight / "checkpoints" / "ckpt_80")
    assert saved["novelty0.keys"].size > 0 and saved["novelty0.counts"].sum() >= saved["novelty0.keys"].size
    resumed = resume_copy(straight, "ckpt_80", tmp_path / "resumed")
    train(config, resumed, show_progress=False, resume=True)
    (a_train, a_eval, _), (c_train, c_eval, _) = history(straight), history(resumed)
    assert a_train == c_train and a_eval == c_eval
    rows = json.loads((straight / "metrics.json").read_text())["train"]
    distinct = [r["task1/collect/distinct_observations"] for r in rows if "task1/collect/distinct_observations" in r]
    assert distinct and distinct == sorted(distinct) and distinct[-1] > 1
    plain = tmp_path / "plain"
    train(config_from_dict(tiny(**EXACT_TRAIN)), plain, show_progress=False)
    assert history(plain)[1] != a_eval or history(plain)[0] != a_train  # the bonus changes the run
