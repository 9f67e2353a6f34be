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


def _starts(buf, entries, stream=0):
    """A window batch drawn from ``buf`` re-pointed to start at ``entries`` of ``stream``."""
    w = buf.sample(len(entries), 1, np.random.default_rng(0))
    w.streams[:] = stream
    w.start_abs[:] = entries
    return w


def _set(buf, priorities):
    """Priorities of stream 0's entries 0..len-1 (all still stored) through the public write-back."""
    n = len(priorities)
    buf.update_priorities(_starts(buf, np.arange(n)), np.asarray(priorities, np.float32), np.ones(n, bool))


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


def test_new_steps_get_the_largest_stored_priority():
    buf = _buffer(capacity=4)
    _add(buf, 0)
    assert buf.priorities[0, 0] == 1.0  # nothing stored yet: 1
    for t in range(1, 3):
        _add(buf, t)
    _set(buf, [0.5, 6.0, 0.25])
    _add(buf, 3)
    buf.add_finals(np.array([0]), np.array([[9.0]], np.float32), np.array([True]))  # overwrites entry 0
    np.testing.assert_array_equal(buf.priorities[0], [0.0, 6.0, 0.25, 6.0])
    _set(buf, [0.5, 0.5, 0.25, 2.0])  # entry 0 (now gone) is skipped; 1 -> 0.5, 3 -> 2
    _add(buf, 5)  # overwrites entry 1 with the largest stored, now 2, not the 6 seen before
    np.testing.assert_array_equal(buf.priorities[0], [0.0, 2.0, 0.25, 2.0])
    w = buf.sample(2_000, 1, np.random.default_rng(2), alpha=1.0, beta=0.0)
    assert (w.weights == 1.0).all()  # beta 0: no correction
    counts = np.bincount(w.obs[:, 0, 0].astype(int), minlength=6)[[2, 3, 5]] / 2_000
    np.testing.assert_allclose(counts, np.array([0.25, 2.0, 2.0]) / 4.25, atol=0.03)


def test_write_back_skips_masked_and_overwritten_entries_and_refuses_bad_values():
    buf = _buffer(capacity=4)  # one ring of 4 entries
    for t in range(4):
        _add(buf, t)
    w = _starts(buf, [0, 1, 2])
    for t in range(4, 6):  # the ring overwrites entries 0 and 1
        _add(buf, t)
    buf.update_priorities(w, np.array([7.0, 7.0, 3.0], np.float32), np.array([True, True, True]))
    # Slot 2 (entry 2) took its priority; slots 0, 1 now hold entries 4, 5, untouched (new-step priority 1).
    np.testing.assert_array_equal(buf.priorities[0], [1.0, 1.0, 3.0, 1.0])
    buf.update_priorities(w, np.array([9.0, 9.0, 9.0], np.float32), np.array([False, False, False]))
    np.testing.assert_array_equal(buf.priorities[0], [1.0, 1.0, 3.0, 1.0])
    for bad in (0.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="finite and > 0"):
            buf.update_priorities(w, np.array([1.0, 1.0, bad], np.float32), np.array([True, True, True]))


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
    np.testing.assert_array_equal(other.priorities, buf.priorities)
    a = buf.sample(64, 2, np.random.default_rng(3), alpha=0.6, beta=0.4)
    b = other.sample(64, 2, np.random.default_rng(3), alpha=0.6, beta=0.4)
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.weights, b.weights)
    # A uniform buffer's state loads into a prioritized one: every stored step at priority 1.
    plain_state = _buffer(streams=2, capacity=20, prioritized=False)
    for t in range(3):
        _add(plain_state, t)
    other.load_state_dict(plain_state.state_dict())
    np.testing.assert_array_equal(other.priorities[:, :4], [[1, 1, 1, 0], [1, 1, 1, 0]])


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
    # The errors to write, by hand: |n-step target - the pre-step network's value| at each start.
    with torch.no_grad():
        latents = learner._encode(learner.model, batch, config.replay.unroll_steps + 1)
        actions = torch.as_tensor(learner._stack(batch, "actions"), dtype=torch.long)
        task_ids = torch.as_tensor(np.asarray(batch.task_ids)[batch.row_slot()])
        out = learner.model.forward_sequence(latents, actions[:, : config.replay.unroll_steps + 1], task_ids)
        predicted = model.value_support.logits_to_scalar(out.value_logits[:, 0]).numpy()
    expected = np.abs(losses.value_target[:, 0] - predicted) + PRIORITY_FLOOR
    learner.update(batch)
    row = 0
    for t, w in batch.windows.items():
        priorities, mask = batch.priorities[t]
        b = w.obs.shape[0]
        assert priorities.shape == mask.shape == (b,) and mask.all()  # every start is a step with a value target
        np.testing.assert_allclose(priorities, expected[row : row + b], rtol=1e-4, atol=1e-6)
        row += b
    before = {t: r.priorities.copy() for t, r in collector.replays.items()}
    Learner.apply_priorities(batch, collector.replays)
    for t, w in batch.windows.items():
        replay, (priorities, _) = collector.replays[t], batch.priorities[t]
        slots = w.start_abs % replay.stream_capacity
        np.testing.assert_allclose(replay.priorities[w.streams, slots], priorities)  # a start drawn twice: one window, one error
        untouched = np.ones_like(replay.priorities, bool)
        untouched[w.streams, slots] = False
        np.testing.assert_array_equal(replay.priorities[untouched], before[t][untouched])


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
