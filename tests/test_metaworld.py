"""Meta-World tasks against the raw metaworld environments: specs, the MT10/MT50 lists, per-
episode task variations, success reporting with a scripted reach controller, truncation at 500
steps, and a suite mixing Meta-World with DeepMind Control dimensions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from scalezero.tasks import EnvBatch, available_tasks, get_task, make_layout
from scalezero.tasks.dmc import configure_headless_gl
from scalezero.tasks.metaworld import MT10, MT50, MW_RETURNS, MetaWorldEnv, task_variations

configure_headless_gl()  # before mujoco's renderer is first imported, so render() can find a backend
metaworld = pytest.importorskip("metaworld")


def raw_env_like(ours: MetaWorldEnv, seed: int):
    """A bare Meta-World env in the same variation as ``ours``'s current episode."""
    raw = metaworld.env_dict.ALL_V3_ENVIRONMENTS[ours.env_name]()
    raw.seed(seed)
    raw.set_task(task_variations(ours.env_name)[ours.variation])
    return raw


def reach_action(obs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Proportional controller of the hand (obs[:3]) toward ``target``; gripper open."""
    return np.append(np.clip(10.0 * (target - obs[:3]), -1.0, 1.0), 0.0).astype(np.float32)


def test_benchmark_lists_match_the_installed_package_and_are_registered():
    assert MT10 == tuple(metaworld.env_dict.MT10_V3) and MT50 == tuple(metaworld.env_dict.MT50_V3)
    assert set(MT10) <= set(MT50) and len(MT50) == 50 and set(MW_RETURNS) == set(MT50)
    assert {f"mw-{n}" for n in MT50} <= set(available_tasks())
    for name in MT50:
        spec = get_task(f"mw-{name}").spec
        assert spec.obs_shape == (39,) and spec.action_dim == 4 and spec.num_actions == 0
        assert spec.max_episode_steps == 500 and spec.success_metric
        assert spec.random_return is not None and spec.target_return > spec.random_return


def test_spec_matches_the_env_and_observations_are_the_state_vector():
    env = get_task("mw-reach-v3").make_env(0)
    raw_space = env.unwrapped.action_space
    assert raw_space.shape == (4,) and (raw_space.low == -1).all() and (raw_space.high == 1).all()
    assert env.unwrapped.observation_space.shape == (39,)
    obs = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (39,)
    np.testing.assert_allclose(obs[-3:], env.unwrapped._target_pos, atol=1e-6)  # the goal is visible
    env.close()


def test_each_episode_draws_one_of_the_50_variations_reproducibly():
    a, b = get_task("mw-reach-v3").make_env(3), get_task("mw-reach-v3").make_env(3)
    goals, variations = set(), []
    for _ in range(6):
        oa, ob = a.reset(), b.reset()
        np.testing.assert_array_equal(oa, ob)
        assert a.variation == b.variation and 0 <= a.variation < 50
        variations.append(a.variation)
        goals.add(tuple(np.round(oa[-3:], 5)))
    assert len(set(variations)) > 1 and len(goals) == len(set(variations))
    assert len(task_variations("reach-v3")) == 50
    a.close()
    b.close()


def test_steps_and_success_follow_the_raw_env_info():
    ours = get_task("mw-reach-v3").make_env(11)
    obs = ours.reset()
    raw = raw_env_like(ours, 11)
    raw_obs, _ = raw.reset()
    np.testing.assert_allclose(obs, raw_obs.astype(np.float32))
    assert not ours.is_success()
    goal = obs[-3:].copy()
    first_success = None
    for t in range(1, 150):
        action = reach_action(obs, goal)
        obs, r, term, trunc = ours.step(action)
        raw_obs, raw_r, _, _, info = raw.step(action.astype(np.float64))
        np.testing.assert_allclose(obs, raw_obs.astype(np.float32))
        assert r == pytest.approx(raw_r) and not term and not trunc
        assert ours.is_success() == (first_success is not None or bool(info["success"]))
        if info["success"] and first_success is None:
            first_success = t
        if first_success is not None and t > first_success + 5:
            break
    assert first_success is not None, "the scripted controller should reach the goal"
    # moving away ends the env's per-step success, but the episode has succeeded
    away = goal + np.array([0.0, -0.3, 0.0], np.float32)
    for _ in range(60):
        action = reach_action(obs, away)
        obs, *_ = ours.step(action)
        _, _, _, _, info = raw.step(action.astype(np.float64))
    assert not info["success"] and ours.is_success()
    ours.reset()
    assert not ours.is_success()
    ours.close()
    raw.close()


def test_episode_truncates_at_500_steps_and_batches_report_success():
    task = get_task("mw-reach-v3")
    env = task.make_env(0)
    env.reset()
    rng = np.random.default_rng(0)
    for t in range(1, 501):
        _, r, term, trunc = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        assert not term and trunc == (t == 500) and 0.0 <= r <= 10.0
    env.close()
    batch = EnvBatch(task, num_envs=1, seed=4)
    for _ in range(500):
        step = batch.step(reach_action(batch.obs[0], batch.obs[0, -3:])[None])
    assert step.truncated.all() and not step.terminated.any() and step.episode_length[0] == 500
    assert step.episode_success[0] == 1.0 and step.episode_return[0] > MW_RETURNS["reach-v3"][0]
    batch.close()


def test_suite_with_other_dimensions_pads_and_masks():
    from scalezero.config import load_suite

    mt10 = make_layout([get_task(t.name).spec for t in load_suite("mt10").tasks])
    assert mt10.action_dim == 4 and mt10.action_dim_masks.all() and mt10.obs_shapes == {"vector": (39,)}
    assert len(load_suite("mt50").tasks) == 50
    mixed = make_layout([get_task("mw-reach-v3").spec, get_task("dmc-walker-walk").spec, get_task("dmc-pendulum-swingup").spec])
    assert mixed.action_dim == 6 and mixed.obs_shapes == {"vector": (39,)}
    assert mixed.action_dim_masks.sum(1).tolist() == [4, 6, 1]
    assert mixed.pad_obs(2, np.ones((2, 3), np.float32)).shape == (2, 39)


def test_render_gives_a_frame_or_a_clear_error():
    env = get_task("mw-reach-v3").make_env(0)
    env.reset()
    try:
        frame = env.render()
    except RuntimeError as exc:
        assert "MUJOCO_GL" in str(exc)
    else:
        assert frame.shape == (240, 240, 3) and frame.dtype == np.uint8 and frame.std() > 0
    env.close()


def test_registration_does_not_import_metaworld_and_missing_package_is_named(monkeypatch):
    code = "import sys, scalezero, scalezero.tasks as t; t.get_task('mw-reach-v3'); print('metaworld' in sys.modules, 'mujoco' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    monkeypatch.setitem(sys.modules, "metaworld", None)
    with pytest.raises(ImportError, match=r'pip install "mujoco==3.3.0" "metaworld==3.1.1"'):
        MetaWorldEnv("reach-v3", 0)
