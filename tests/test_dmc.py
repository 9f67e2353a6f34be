"""DeepMind Control tasks against the raw dm_control environments: specs, flattening order,
action rescaling, reward over the action repeat, truncation, and a mixed-dimension suite."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from scalezero.tasks import EnvBatch, available_tasks, get_task, make_layout
from scalezero.tasks.dmc import ACTION_REPEAT, DMC_TASKS, DMCEnv, configure_headless_gl, flatten_observation, rescale_action

configure_headless_gl()  # before dm_control is first imported, so render() can find a backend
suite = pytest.importorskip("dm_control.suite")

BENCHMARK_18 = [
    "acrobot-swingup", "cartpole-balance", "cartpole-balance_sparse", "cartpole-swingup", "cartpole-swingup_sparse",
    "cheetah-run", "ball_in_cup-catch", "finger-spin", "finger-turn_easy", "finger-turn_hard", "hopper-hop",
    "hopper-stand", "pendulum-swingup", "reacher-easy", "reacher-hard", "walker-run", "walker-stand", "walker-walk",
]  # fmt: skip


def raw_env(name: str, seed: int):
    info = DMC_TASKS[name]
    return suite.load(info.domain, info.task, task_kwargs={"random": seed})


def test_the_18_tasks_are_registered_with_specs_of_the_real_envs():
    assert sorted(DMC_TASKS) == sorted(f"dmc-{n}" for n in BENCHMARK_18)
    assert {f"dmc-{n}" for n in BENCHMARK_18} <= set(available_tasks())
    for name in DMC_TASKS:
        spec = get_task(name).spec
        env = raw_env(name, 0)
        obs_spec = env.observation_spec()
        assert spec.obs_kind == "vector" and spec.continuous and spec.num_actions == 0
        assert spec.obs_shape == (sum(int(np.prod(s.shape)) for s in obs_spec.values()),), name
        assert spec.action_dim == env.action_spec().shape[0], name
        assert spec.max_episode_steps == 1000 // ACTION_REPEAT[DMC_TASKS[name].domain]
        assert spec.target_return == 1000.0 and spec.random_return is not None
        # the table's flattening order is the env's own key order
        assert [k for k, _ in DMC_TASKS[name].obs_layout] == list(obs_spec), name
        env.close()


def test_observation_is_the_raw_dict_flattened_in_a_fixed_order():
    name = "dmc-finger-turn_easy"  # five keys, one of them a scalar
    ours = get_task(name).make_env(5)
    raw = raw_env(name, 5)
    obs = ours.reset()
    raw_obs = raw.reset().observation
    expected = np.concatenate([np.asarray(raw_obs[k], np.float32).ravel() for k, _ in DMC_TASKS[name].obs_layout])
    assert obs.dtype == np.float32 and obs.shape == get_task(name).spec.obs_shape
    np.testing.assert_array_equal(obs, expected)
    # the order comes from the table, not from the dict's insertion order
    reversed_dict = dict(reversed(list(raw_obs.items())))
    np.testing.assert_array_equal(flatten_observation(reversed_dict, DMC_TASKS[name].obs_layout), expected)
    with pytest.raises(ValueError, match="has no key 'touch'"):
        flatten_observation({k: v for k, v in raw_obs.items() if k != "touch"}, DMC_TASKS[name].obs_layout)


def test_action_rescaling_to_the_spec_bounds():
    low, high = np.array([-2.0, 0.0, 10.0]), np.array([2.0, 1.0, 30.0])
    np.testing.assert_allclose(rescale_action(np.full(3, -1.0), low, high), low)
    np.testing.assert_allclose(rescale_action(np.full(3, 1.0), low, high), high)
    np.testing.assert_allclose(rescale_action(np.zeros(3), low, high), (low + high) / 2)
    np.testing.assert_allclose(rescale_action(np.array([-5.0, 0.5, 7.0]), low, high), [-2.0, 0.75, 30.0])  # clipped first


def test_actions_reach_the_physics_controls_at_the_bounds():
    env = get_task("dmc-walker-walk").make_env(0)
    env.reset()
    env.step(np.ones(6, np.float32))
    np.testing.assert_allclose(env.physics.data.ctrl, env.high)
    env.step(-np.ones(6, np.float32))
    np.testing.assert_allclose(env.physics.data.ctrl, env.low)
    # with other bounds the same agent actions map onto those bounds
    env.low, env.high = np.full(6, -0.5), np.full(6, 0.25)
    env.step(-np.ones(6, np.float32))
    np.testing.assert_allclose(env.physics.data.ctrl, -0.5)
    env.step(np.ones(6, np.float32))
    np.testing.assert_allclose(env.physics.data.ctrl, 0.25)
    env.step(np.zeros(6, np.float32))
    np.testing.assert_allclose(env.physics.data.ctrl, -0.125)
    with pytest.raises(ValueError, match=r"action must have shape \(6,\)"):
        env.step(np.zeros(2, np.float32))
    env.close()


@pytest.mark.parametrize("name", ["dmc-cartpole-swingup", "dmc-walker-walk"])
def test_reward_is_the_sum_over_the_repeat_of_the_raw_rewards(name):
    repeat = ACTION_REPEAT[DMC_TASKS[name].domain]
    ours = get_task(name).make_env(3)
    raw = raw_env(name, 3)
    obs = ours.reset()
    raw_ts = raw.reset()
    np.testing.assert_array_equal(obs, flatten_observation(raw_ts.observation, DMC_TASKS[name].obs_layout))
    rng = np.random.default_rng(0)
    total = 0.0
    for _ in range(40):
        a = rng.uniform(-1, 1, get_task(name).spec.action_dim).astype(np.float32)
        obs, r, term, trunc = ours.step(a)
        raw_r = 0.0
        for _ in range(repeat):
            raw_ts = raw.step(a.astype(np.float64))
            raw_r += raw_ts.reward
        assert r == pytest.approx(raw_r, abs=1e-9) and not term and not trunc
        np.testing.assert_array_equal(obs, flatten_observation(raw_ts.observation, DMC_TASKS[name].obs_layout))
        total += r
    assert total > 0.0  # these tasks pay a shaped reward from the start


def test_episode_truncates_at_1000_control_steps():
    task = get_task("dmc-cartpole-balance")
    assert ACTION_REPEAT["cartpole"] == 4 and task.spec.max_episode_steps == 250
    env = task.make_env(0)
    env.reset()
    for t in range(1, 251):
        _, _, term, trunc = env.step(np.zeros(1, np.float32))
        assert not term
        assert trunc == (t == 250), t
    assert env.physics.time() == pytest.approx(10.0)  # 1000 control steps of 0.01 s
    env.close()
    # the same through EnvBatch: one episode of 250 agent steps, ended by truncation
    batch = EnvBatch(task, num_envs=2, seed=0)
    for _ in range(250):
        step = batch.step(np.zeros((2, 1), np.float32))
    assert step.truncated.all() and not step.terminated.any() and (step.episode_length == 250).all()
    assert (step.episode_return > 0).all() and (step.episode_return <= 1000).all()
    batch.close()


def test_same_seed_same_episode_other_seed_other_start():
    a, b, c = (get_task("dmc-reacher-easy").make_env(s) for s in (7, 7, 8))
    oa, ob, oc = a.reset(), b.reset(), c.reset()
    np.testing.assert_array_equal(oa, ob)
    assert not np.array_equal(oa, oc)
    for env in (a, b, c):
        env.close()


def test_mixed_dimension_suite_pads_observations_and_masks_action_dims():
    from scalezero.config import load_suite

    config = load_suite("dmc3")
    specs = [get_task(t.name).spec for t in config.tasks]
    assert [s.action_dim for s in specs] == [1, 1, 6]
    layout = make_layout(specs)
    assert layout.continuous and layout.action_dim == 6 and layout.num_actions == 0
    assert layout.action_dim_masks.tolist() == [[True] + [False] * 5, [True] + [False] * 5, [True] * 6]
    assert layout.obs_shapes == {"vector": (24,)}
    batch = EnvBatch(get_task("dmc-cartpole-balance"), num_envs=3, seed=0)
    padded = layout.pad_obs(0, batch.obs)
    assert padded.shape == (3, 24) and (padded[:, 5:] == 0).all()
    np.testing.assert_array_equal(padded[:, :5], batch.obs)
    batch.close()
    full = make_layout([get_task(n).spec for n in DMC_TASKS])
    assert (
        full.action_dim == 6
        and full.obs_shapes == {"vector": (24,)}
        and full.action_dim_masks.sum() == sum(DMC_TASKS[n].action_dim for n in DMC_TASKS)
    )


def test_render_gives_a_frame_or_a_clear_error():
    env = get_task("dmc-cartpole-swingup").make_env(0)
    env.reset()
    try:
        frame = env.render(height=48, width=64)
    except RuntimeError as exc:
        assert "MUJOCO_GL" in str(exc)
    else:
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and frame.std() > 0
    env.close()


def test_a_backend_that_cannot_initialise_disables_rendering_not_stepping():
    """An EGL library whose vendor files are missing (as on a machine without a device) fails
    at dm_control's import; the automatic choice then falls back to no renderer."""
    code = (
        "import numpy as np; from scalezero.tasks import get_task\n"
        "env = get_task('dmc-cartpole-swingup').make_env(0); env.reset()\n"
        "obs, r, term, trunc = env.step(np.zeros(1, np.float32)); assert obs.shape == (5,)\n"
        "try:\n    env.render(height=8, width=8); print('frame')\n"
        "except RuntimeError as exc:\n    assert 'MUJOCO_GL' in str(exc); print('error')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY")}
    env["__EGL_VENDOR_LIBRARY_FILENAMES"] = "/nonexistent/vendor.json"
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() in (["frame"], ["error"])


def test_registration_does_not_import_dm_control_and_missing_package_is_named(monkeypatch):
    code = "import sys, scalezero, scalezero.tasks as t; t.get_task('dmc-cheetah-run'); print('dm_control' in sys.modules, 'mujoco' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    monkeypatch.setitem(sys.modules, "dm_control", None)
    with pytest.raises(ImportError, match=r'pip install "mujoco==3.3.0" "dm_control==1.0.28"'):
        DMCEnv(DMC_TASKS["dmc-cheetah-run"], 0)
