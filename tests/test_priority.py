"""Prioritized replay: draws follow priority ** alpha, importance weights match the formula,
priorities written back land on the right entries (never on overwritten ones), the learner
writes |value target - predicted value| there, and a prioritized run resumes exactly."""

import numpy as np
import pytest
import torch
from tiny_run import EXACT_TRAIN, history, resume_copy, tiny

from scalezero.config import ConfigError, config_from_dict
from scalezero.replay import TaskReplay
from scalezero.training.collector import Collector
from scalezero.training.learner import PRIORITY_FLOOR, Learner
from scalezero.training.loop import build_model, resolve_tasks, train


def _buffer(streams=1, capacity=100, prioritized=True):
    return TaskReplay(obs_shape=(1,), obs_dtype=np.float32, num_actions=3, num_streams=streams, capacity=capacity, prioritized=prioritized)


def _add(buf, t):
    n = buf.num_streams
    pol = np.tile(np.array([0.2, 0.3, 0.5], np.float32), (n, 1))
    buf.add_steps(np.full((n, 1), t, np.float32), np.zeros(n, np.int64), np.zeros(n, np.float32), pol, np.zeros(n, np.float32))


def _set(buf, priorities):
    """Priorities of stream 0's entries 0..len-1 (all still stored) through the public write-back."""
    w = buf.sample(1, len(priorities), np.random.default_rng(0))
    w.streams[:] = 0
    w.start_abs[:] = 0
    buf.update_priorities(w, np.asarray(priorities, np.float32)[None], np.ones((1, len(priorities)), bool))


def test_draws_follow_priority_to_the_alpha_and_weights_match_the_formula():
    buf = _buffer()
    for t in range(4):
        _add(buf, t)
    _set(buf, [1.0, 2.0, 4.0, 8.0])
    alpha, beta, n = 0.5, 0.4, 40_000
    w = buf.sample(n, 1, np.random.default_rng(1), alpha=alpha, beta=beta)
    expected = np.array([1.0, 2.0, 4.0, 8.0]) ** alpha
    expected /= expected.sum()
    counts = np.bincount(w.obs[:, 0, 0].astype(int), minlength=4) / n
    np.testing.assert_allclose(counts, expected, atol=0.01)
    # Importance weights: (N P)^-beta over the largest in the batch (the rarest entry's).
    raw = (4 * expected) ** -beta
    np.testing.assert_allclose(w.weights, (raw / raw.max())[w.obs[:, 0, 0].astype(int)], rtol=1e-6)
    assert w.weights.max() == pytest.approx(1.0)


def test_new_steps_get_the_largest_priority_and_finals_are_never_starts():
    buf = _buffer()
    for t in range(3):
        _add(buf, t)
    _set(buf, [0.5, 6.0, 0.25])
    assert buf.max_priority == 6.0
    _add(buf, 3)
    buf.add_finals(np.array([0]), np.array([[9.0]], np.float32), np.array([True]))
    np.testing.assert_array_equal(buf.priorities[0, :5], [0.5, 6.0, 0.25, 6.0, 0.0])
    w = buf.sample(2_000, 1, np.random.default_rng(2), alpha=1.0, beta=0.0)
    assert set(w.obs[:, 0, 0].astype(int).tolist()) <= {0, 1, 2, 3}
    assert (w.weights == 1.0).all()  # beta 0: no correction


def test_write_back_skips_masked_and_overwritten_entries():
    buf = _buffer(capacity=4)  # one ring of 4 entries
    for t in range(4):
        _add(buf, t)
    w = buf.sample(1, 3, np.random.default_rng(0))
    w.streams[:] = 0
    w.start_abs[:] = 0  # entries 0, 1, 2
    for t in range(4, 6):  # the ring overwrites entries 0 and 1
        _add(buf, t)
    buf.update_priorities(w, np.array([[7.0, 7.0, 3.0]], np.float32), np.array([[True, True, True]]))
    # Slot 2 (entry 2) took its priority; slots 0, 1 now hold entries 4, 5, untouched (new-step priority 1).
    np.testing.assert_array_equal(buf.priorities[0], [1.0, 1.0, 3.0, 1.0])
    assert buf.max_priority == 3.0  # the 7s belonged to entries gone
    buf.update_priorities(w, np.array([[9.0, 9.0, 9.0]], np.float32), np.array([[False, False, False]]))
    np.testing.assert_array_equal(buf.priorities[0], [1.0, 1.0, 3.0, 1.0])


def test_uniform_buffers_refuse_prioritized_draws_and_priorities_survive_a_round_trip():
    plain = _buffer(prioritized=False)
    _add(plain, 0)
    with pytest.raises(ValueError, match="prioritized=True"):
        plain.sample(2, 1, np.random.default_rng(0), alpha=0.6)
    buf = _buffer(streams=2, capacity=20)
    for t in range(6):
        _add(buf, t)
    _set(buf, [0.1, 5.0, 0.2])
    other = _buffer(streams=2, capacity=20)
    other.load_state_dict({k: v.copy() for k, v in buf.state_dict().items()})
    assert other.max_priority == 5.0
    a = buf.sample(64, 2, np.random.default_rng(3), alpha=0.6, beta=0.4)
    b = other.sample(64, 2, np.random.default_rng(3), alpha=0.6, beta=0.4)
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.weights, b.weights)


@pytest.mark.parametrize(("key", "value"), [("priority_alpha", -0.1), ("priority_beta", 1.5)])
def test_config_names_the_field(key, value):
    run = tiny()
    with pytest.raises(ConfigError, match=f"replay.{key}"):
        config_from_dict({**run, "replay": {**run.get("replay", {}), key: value}})


PRIORITIZED = tiny(**EXACT_TRAIN, env_steps=160, eval_every=80)
PRIORITIZED = {**PRIORITIZED, "replay": {**PRIORITIZED.get("replay", {}), "priority_alpha": 0.6, "priority_beta": 0.4}}


def test_learner_writes_its_value_errors_where_it_drew():
    config = config_from_dict(PRIORITIZED)
    tasks, layout = resolve_tasks(config)
    model = build_model(config, layout, torch.device("cpu"))
    learner = Learner(model, layout, config, torch.device("cpu"))
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    rng, n = np.random.default_rng(0), config.train.num_envs
    for _ in range(12):  # random legal actions: enough steps for windows
        for t, envs in collector.envs.items():
            legal = np.broadcast_to(layout.action_masks[t], (n, layout.num_actions))
            actions = rng.choice(np.flatnonzero(layout.action_masks[t]), size=n)
            obs = envs.obs.copy()
            out = envs.step(actions)
            policy = legal / legal.sum(1, keepdims=True)
            collector.replays[t].add_steps(obs, actions, out.reward.astype(np.float32), policy.astype(np.float32), np.zeros(n, np.float32), legal)
    batch = learner.sample(collector.replays, list(collector.replays))
    assert all(w.weights is not None for w in batch.windows.values())
    losses = learner.compute_losses(batch)
    # Importance weights scale each row's terms: all halved -> every per-task loss halved.
    for w in batch.windows.values():
        w.weights = w.weights * 0.5
    halved = learner.compute_losses(batch)
    for w in batch.windows.values():
        w.weights = w.weights * 2.0
    for name, value in losses.per_task.items():
        torch.testing.assert_close(halved.per_task[name], 0.5 * value)
    learner.update(batch)
    K = config.replay.unroll_steps
    for t, w in batch.windows.items():
        priorities, mask = batch.priorities[t]
        assert priorities.shape == (w.obs.shape[0], K + 1) and mask.any()
        assert (priorities[mask] >= PRIORITY_FLOOR).all()
    # The errors written are |target - prediction| of the pre-step network on that batch.
    first = batch.task_ids[0]
    rows = batch.windows[first].obs.shape[0]
    np.testing.assert_allclose(batch.priorities[first][0], (losses.value_error[:rows] + PRIORITY_FLOOR).astype(np.float32), rtol=1e-5)
    Learner.apply_priorities(batch, collector.replays)
    replay, w = collector.replays[first], batch.windows[first]
    priorities, mask = batch.priorities[first]
    i, p = np.argwhere(mask)[0]
    slot = (w.start_abs[i] + p) % replay.stream_capacity
    assert replay.priorities[w.streams[i], slot] == pytest.approx(float(priorities[i, p]))


@pytest.mark.parametrize("overlap", [False, True])
def test_a_prioritized_run_repeats_itself_and_resumes_exactly(tmp_path, overlap):
    config = config_from_dict({**PRIORITIZED, "train": {**PRIORITIZED["train"], "overlap": overlap}})
    straight = tmp_path / "straight"
    train(config, straight, show_progress=False)
    again = tmp_path / "again"
    train(config, again, show_progress=False)
    resumed = resume_copy(straight, "ckpt_80", tmp_path / "resumed")
    train(config, resumed, show_progress=False, resume=True)
    a, b, c = history(straight), history(again), history(resumed)
    assert a[0] == b[0] and a[1] == b[1]
    assert a[0] == c[0] and a[1] == c[1]
