"""Replay buffer windows and n-step targets against hand-computed values."""

import numpy as np
import pytest

from scalezero.replay import TaskReplay, nstep_value_targets


def _buffer(streams=1, capacity=100):
    return TaskReplay(obs_shape=(1,), obs_dtype=np.float32, num_actions=3, num_streams=streams, capacity=capacity)


def _add(buf, t, reward):
    n = buf.num_streams
    pol = np.tile(np.array([0.2, 0.3, 0.5], np.float32), (n, 1))
    buf.add_steps(np.full((n, 1), t, np.float32), np.full(n, t % 3), np.full(n, reward, np.float32), pol, np.full(n, 10.0 * t, np.float32))


def test_nstep_targets_hand_computed():
    g = 0.9
    # One episode of 3 steps that terminates, window of length 6 starting at t=0.
    rewards = np.array([[1.0, 2.0, 3.0, 0.0, 0.0, 0.0]])
    is_step = np.array([[1, 1, 1, 0, 0, 0]], bool)
    is_obs = np.array([[1, 1, 1, 1, 0, 0]], bool)
    terminal = np.array([[0, 0, 0, 1, 0, 0]], bool)
    boot = np.array([[100.0, 200.0, 300.0, 400.0, 0.0, 0.0]])
    z, mask = nstep_value_targets(rewards, is_step, is_obs, terminal, boot, g, td_steps=2, num_targets=4)
    expected = [1 + g * 2 + g * g * 300, 2 + g * 3, 3.0, 0.0]  # last step: terminal -> no bootstrap
    np.testing.assert_allclose(z[0], expected, rtol=1e-6)
    assert mask[0].tolist() == [True, True, True, True]


def test_nstep_targets_truncation_and_write_head():
    g = 0.5
    rewards = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    is_step = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], bool)
    # Row 0: truncated after 2 steps (final entry at 2). Row 1: write head after 2 steps.
    is_obs = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    terminal = np.zeros((2, 4), bool)
    boot = np.array([[10.0, 20.0, 30.0, 0.0], [10.0, 20.0, 0.0, 0.0]])
    z, mask = nstep_value_targets(rewards, is_step, is_obs, terminal, boot, g, td_steps=3, num_targets=1)
    assert z[0, 0] == pytest.approx(1 + g * 1 + g * g * 30)  # bootstrap from the truncated last obs
    assert z[1, 0] == pytest.approx(1 + g * 20)  # one step fewer, bootstrap from last stored obs
    assert mask.all()


def test_windows_follow_episodes_and_mask_beyond():
    buf = _buffer()
    for t in range(3):
        _add(buf, t, reward=float(t + 1))
    buf.add_finals(np.array([0]), np.array([[99.0]], np.float32), np.array([True]))
    for t in range(10, 12):
        _add(buf, t, reward=5.0)
    rng = np.random.default_rng(0)
    w = buf.sample(200, 4, rng)
    for i in range(200):
        first = w.obs[i, 0, 0]
        if first == 0:
            assert w.obs[i, :, 0].tolist() == [0, 1, 2, 99]
            assert w.is_step[i].tolist() == [True, True, True, False]
            assert w.terminal[i].tolist() == [False, False, False, True]
            assert w.rewards[i].tolist() == [1, 2, 3, 0]
        if first == 2:
            assert w.is_obs[i].tolist() == [True, True, False, False]
        if first == 11:  # at the write head: nothing after it is valid
            assert w.is_obs[i].tolist() == [True, False, False, False]
            assert w.obs[i, 1:].sum() == 0
    starts = set(w.obs[:, 0, 0].tolist())
    assert starts == {0, 1, 2, 10, 11}  # final entries are never window starts


def test_ring_wraps_and_streams_stay_separate():
    buf = _buffer(streams=2, capacity=10)  # 5 entries per stream
    for t in range(12):
        _add(buf, t, reward=1.0)
    assert len(buf) == 10
    w = buf.sample(300, 3, np.random.default_rng(1))
    starts = w.obs[:, 0, 0]
    assert set(starts.tolist()) == {7, 8, 9, 10, 11}
    for i in range(300):
        n_valid = int(w.is_obs[i].sum())
        assert w.obs[i, :n_valid, 0].tolist() == list(range(int(starts[i]), int(starts[i]) + n_valid))
        assert n_valid == min(3, 12 - int(starts[i]))


def test_state_dict_round_trip():
    buf = _buffer(streams=2, capacity=20)
    for t in range(7):
        _add(buf, t, reward=float(t))
    buf.add_finals(np.array([1]), np.array([[5.0]], np.float32), np.array([False]))
    other = _buffer(streams=2, capacity=20)
    other.load_state_dict({k: v.copy() for k, v in buf.state_dict().items()})
    a = buf.sample(50, 4, np.random.default_rng(3))
    b = other.sample(50, 4, np.random.default_rng(3))
    for field in ("obs", "actions", "rewards", "policies", "is_step", "is_obs", "terminal"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_context_is_the_steps_before_the_window_of_the_same_episode():
    """Episode 0..4 (terminated), then 20..27 in a ring of 10 entries that has overwritten the oldest."""
    buf = _buffer(streams=1, capacity=10)
    for t in range(5):
        _add(buf, t, reward=1.0)
    buf.add_finals(np.array([0]), np.array([[99.0]], np.float32), np.array([True]))
    for t in range(20, 28):
        _add(buf, t, reward=1.0)
    w = buf.sample(300, 2, np.random.default_rng(4), context=3)
    assert w.context_obs.shape == (300, 3, 1) and w.context_valid.shape == (300, 3) and w.context_actions.shape == (300, 3)
    seen = set()
    for i in range(300):
        start = int(w.obs[i, 0, 0])
        seen.add(start)
        first = 20 if start >= 20 else 4  # steps 0..3 were overwritten (10 slots, 14 entries written)
        expected = [t for t in range(start - 3, start) if t >= first]
        valid = w.context_valid[i]
        assert valid.tolist() == [False] * (3 - len(expected)) + [True] * len(expected), start
        assert w.context_obs[i, valid, 0].tolist() == expected
        assert w.context_actions[i, valid].tolist() == [t % 3 for t in expected]
        assert (w.context_obs[i, ~valid] == 0).all()
    assert seen == {4, 20, 21, 22, 23, 24, 25, 26, 27}
    none = buf.sample(4, 2, np.random.default_rng(4))
    assert none.context_obs is None and none.context_valid is None


def test_nstep_targets_per_window_horizon():
    g = 0.5
    rewards = np.tile(np.array([1.0, 2.0, 4.0, 0.0, 0.0]), (3, 1))
    is_step = np.tile(np.array([1, 1, 1, 0, 0], bool), (3, 1))
    is_obs = np.tile(np.array([1, 1, 1, 1, 0], bool), (3, 1))
    terminal = np.zeros((3, 5), bool)
    boot = np.tile(np.array([10.0, 20.0, 40.0, 80.0, 0.0]), (3, 1))
    z, _ = nstep_value_targets(rewards, is_step, is_obs, terminal, boot, g, td_steps=3, num_targets=2, horizon=np.array([3, 2, 1]))
    np.testing.assert_allclose(z[0], [1 + g * 2 + g * g * 4 + g**3 * 80, 2 + g * 4 + g * g * 80])
    np.testing.assert_allclose(z[1], [1 + g * 2 + g * g * 40, 2 + g * 4 + g * g * 80])
    np.testing.assert_allclose(z[2], [1 + g * 20, 2 + g * 40])
    full, _ = nstep_value_targets(rewards, is_step, is_obs, terminal, boot, g, td_steps=3, num_targets=2)
    np.testing.assert_array_equal(full, z[:1].repeat(3, axis=0))  # horizon None = td_steps everywhere
    with pytest.raises(ValueError, match="horizon"):
        nstep_value_targets(rewards, is_step, is_obs, terminal, boot, g, td_steps=3, num_targets=2, horizon=np.array([4, 1, 1]))


def test_window_ages_count_the_task_steps_since_the_start():
    buf = _buffer(streams=2)
    for t in range(10):
        _add(buf, t, reward=0.0)
    w = buf.sample(64, 3, np.random.default_rng(0))
    start = w.obs[:, 0, 0].astype(int)  # the buffer's step t holds observation t
    np.testing.assert_array_equal(w.ages, (10 - start) * 2)
