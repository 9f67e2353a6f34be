"""Task adapters: spaces, masks, padding and episode semantics against the raw environments."""

import numpy as np
import pytest

from scalezero.tasks import EnvBatch, available_tasks, get_task, make_layout

MINATAR = ["minatar-breakout", "minatar-asterix", "minatar-freeway", "minatar-seaquest", "minatar-space_invaders"]


def test_registry_and_unknown_task():
    assert {"cartpole", *MINATAR} <= set(available_tasks())
    with pytest.raises(KeyError, match=r"unknown task 'pong'; did you mean .*atari-pong.*in the families .*minatar"):
        get_task("pong")


@pytest.mark.parametrize("name", MINATAR + ["cartpole", "acrobot"])
def test_observations_match_spec(name):
    task = get_task(name)
    batch = EnvBatch(task, num_envs=3, seed=0)
    assert batch.obs.shape == (3,) + task.spec.obs_shape
    rng = np.random.default_rng(0)
    for _ in range(50):
        step = batch.step(rng.integers(0, task.spec.num_actions, 3))
        assert step.obs.shape == (3,) + task.spec.obs_shape
        assert step.reward.dtype == np.float32


def test_minatar_matches_raw_environment():
    """Same seed and actions: our adapter's observations and rewards equal MinAtar's own."""
    from minatar import Environment

    raw = Environment("breakout", sticky_action_prob=0.1)
    raw.seed(7)
    raw.reset()
    ours = get_task("minatar-breakout").make_env(7)
    obs = ours.reset()
    minimal = raw.minimal_action_set()
    np.testing.assert_array_equal(obs, raw.state().transpose(2, 0, 1))
    rng = np.random.default_rng(1)
    for _ in range(200):
        a = int(rng.integers(0, 3))
        r_raw, done_raw = raw.act(minimal[a])
        o, r, term, trunc = ours.step(a)
        assert r == r_raw and term == done_raw and not trunc
        np.testing.assert_array_equal(o, raw.state().transpose(2, 0, 1))
        if done_raw:
            break


def test_layout_masks_and_padding():
    specs = [get_task(n).spec for n in MINATAR] + [get_task("cartpole").spec]
    layout = make_layout(specs)
    assert layout.num_actions == 6
    assert layout.action_masks.sum(1).tolist() == [3, 5, 3, 6, 4, 2]
    assert layout.obs_shapes == {"image": (10, 10, 10), "vector": (4,)}
    obs = np.ones((2, 4, 10, 10), np.uint8)
    padded = layout.pad_obs(0, obs)
    assert padded.shape == (2, 10, 10, 10) and padded[:, 4:].sum() == 0 and padded[:, :4].all()


def test_episode_end_returns_final_obs_and_resets():
    task = get_task("cartpole")
    batch = EnvBatch(task, num_envs=2, seed=3, max_episode_steps=5)
    for t in range(5):
        step = batch.step(np.zeros(2, dtype=np.int64))
    assert step.done.all() and (step.episode_length == 5).all()
    assert not np.allclose(step.final_obs, step.obs)  # obs is the reset observation


def test_out_of_range_action_rejected():
    batch = EnvBatch(get_task("minatar-breakout"), num_envs=2, seed=0)
    with pytest.raises(ValueError, match=r"actions must be 2 integers in \[0, 3\)"):
        batch.step(np.array([0, 3]))
