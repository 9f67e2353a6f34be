"""Your own Gymnasium env as a task: space translation, clear errors, and the shipped example
trained together with a built-in task through the Python API."""

from pathlib import Path

import gymnasium
import numpy as np
import pytest
import yaml
from gymnasium import spaces

from scalezero.config import ConfigError, config_from_dict, load_suite
from scalezero.tasks.gymnasium_task import TaskDefinitionError, gymnasium_task

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_task"


class SpaceEnv(gymnasium.Env):
    """Echoes its spaces; observations count steps so translations can be checked."""

    def __init__(self, obs_space=None, act_space=None):
        self.observation_space = obs_space or spaces.Box(-1, 1, (3,), np.float32)
        self.action_space = act_space or spaces.Discrete(2)
        self.last_action = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        self.last_action = action
        return self.observation_space.sample(), 1.0, False, False, {}


def make(**kwargs):
    return SpaceEnv(**kwargs)


ENTRY = f"{__file__}:make"


def test_vector_and_discrete_observations():
    task = gymnasium_task("v", ENTRY, 1.0)
    assert (task.spec.obs_kind, task.spec.obs_shape, task.spec.num_actions) == ("vector", (3,), 2)
    task = gymnasium_task("d", ENTRY, 1.0, kwargs={"obs_space": spaces.Discrete(5, start=2)})
    obs = task.make_env(0).reset()
    assert task.spec.obs_shape == (5,) and obs.sum() == 1.0 and obs.dtype == np.float32


def test_images_become_channels_first_floats_in_unit_range():
    hwc = spaces.Box(0, 255, (10, 10, 3), np.uint8)
    task = gymnasium_task("hwc", ENTRY, 1.0, kwargs={"obs_space": hwc})
    assert (task.spec.obs_kind, task.spec.obs_shape) == ("image", (3, 10, 10))
    obs = task.make_env(0).reset()
    assert obs.shape == (3, 10, 10) and obs.dtype == np.float32 and 0.0 <= obs.min() and obs.max() <= 1.0
    chw = gymnasium_task("chw", ENTRY, 1.0, kwargs={"obs_space": spaces.Box(0, 1, (4, 10, 10), np.float32)})
    assert chw.spec.obs_shape == (4, 10, 10)
    grey = gymnasium_task("grey", ENTRY, 1.0, kwargs={"obs_space": spaces.Box(0, 255, (6, 6), np.uint8)})
    assert grey.spec.obs_shape == (1, 6, 6)


def test_continuous_and_multidiscrete_actions_map_onto_a_grid():
    box = spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    task = gymnasium_task("box", ENTRY, 1.0, kwargs={"act_space": box}, action_bins=3)
    assert task.spec.num_actions == 9
    env = task.make_env(0)
    env.reset()
    env.step(0)
    np.testing.assert_allclose(env._env.last_action, [-2.0, 0.0])
    env.step(8)
    np.testing.assert_allclose(env._env.last_action, [2.0, 1.0])
    env.step(5)  # row-major over (dim0, dim1): (0.0, 1.0)
    np.testing.assert_allclose(env._env.last_action, [0.0, 1.0])
    multi = gymnasium_task("multi", ENTRY, 1.0, kwargs={"act_space": spaces.MultiDiscrete([2, 3])})
    assert multi.spec.num_actions == 6


@pytest.mark.parametrize(
    "entry, kwargs, needle",
    [
        ("/nonexistent/envs.py:Env", {}, "does not exist"),
        (f"{__file__}:NoSuchThing", {}, "has no attribute 'NoSuchThing'"),
        ("no_such_package_xyz.envs:Env", {}, "cannot import 'no_such_package_xyz.envs'"),
        ("NoSuchEnv-v9", {}, "neither 'file.py:Attr'"),
        (ENTRY, {"obs_space": spaces.Dict({"a": spaces.Discrete(2)})}, "FlattenObservation"),
        (ENTRY, {"act_space": spaces.Box(-1, 1, (4,))}, "625 discrete actions, more than 64"),
        (ENTRY, {"wrong": 1}, "raised TypeError"),
    ],
)
def test_broken_definitions_are_named(entry, kwargs, needle):
    with pytest.raises(TaskDefinitionError, match=needle):
        gymnasium_task("broken", entry, 1.0, kwargs=kwargs)


def test_suite_entries_fail_fast_with_the_field_named():
    with pytest.raises(ConfigError, match=r"tasks\[mine\].target_return"):
        config_from_dict({"tasks": [{"name": "mine", "entry_point": ENTRY}]})
    with pytest.raises(ConfigError, match=r"tasks\[cartpole\].name"):
        config_from_dict({"tasks": [{"name": "cartpole", "entry_point": ENTRY, "target_return": 1}]})
    with pytest.raises(ConfigError, match=r"tasks\[mine\].entry_point: .*does not exist"):
        config_from_dict({"tasks": [{"name": "mine", "entry_point": "missing.py:Env", "target_return": 1}]})
    # A Gymnasium id works as an entry point too.
    config = config_from_dict({"tasks": [{"name": "mc", "entry_point": "MountainCar-v0", "target_return": -110}]})
    assert config.tasks[0].entry_point == "MountainCar-v0"


def test_file_entry_points_are_relative_to_the_suite_file(tmp_path):
    data = yaml.safe_load((EXAMPLE / "suite.yaml").read_text())
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "gridworld.py").write_text((EXAMPLE / "gridworld.py").read_text())
    (tmp_path / "elsewhere" / "suite.yaml").write_text(yaml.safe_dump(data))
    config = load_suite(str(tmp_path / "elsewhere" / "suite.yaml"))
    assert config.tasks[1].entry_point == f"{tmp_path / 'elsewhere' / 'gridworld.py'}:GridWorld"


def test_example_trains_with_a_builtin_task_and_the_agent_acts(tmp_path):
    from scalezero import load_agent, train

    small = {"model": {"embed_dim": 32, "num_layers": 1, "mlp_hidden": 32, "conv_channels": 8}, "search": {"num_simulations": 4},
             "train": {"learning_starts": 40, "eval_every": 120, "eval_episodes": 2, "checkpoint_every": 120, "batch_size": 8}}  # fmt: skip
    result = train(EXAMPLE / "suite.yaml", steps=120, out=tmp_path / "run", overrides=small, progress=False)
    assert set(result.final_eval) == {"cartpole", "gridworld"} and result.updates > 0
    agent = load_agent(tmp_path / "run")
    assert agent.tasks == ["cartpole", "gridworld"]
    env = agent.make_env("gridworld", seed=1)
    obs = env.reset()
    assert obs.shape == (1, 5, 5)
    action = agent.act(obs, task="gridworld", new_episode=True)
    assert isinstance(action, int) and 0 <= action < 4
    obs, *_ = env.step(action)
    assert 0 <= agent.act(obs, task="gridworld") < 4
    batch = np.stack([agent.make_env("cartpole", seed=s).reset() for s in range(3)])
    actions = agent.act(batch, task="cartpole", new_episode=True)
    assert actions.shape == (3,) and set(actions.tolist()) <= {0, 1}  # never a padded (masked) action
    with pytest.raises(KeyError, match="its tasks: cartpole, gridworld"):
        agent.act(obs, task="pong")
    with pytest.raises(ValueError, match=r"observations have shape \(4,\)"):
        agent.act(np.zeros(7), task="cartpole")
