"""Meta-World manipulation tasks (MT10 and MT50), state-based, from the ``metaworld`` package.

Tasks are named ``mw-<env-name>`` with Meta-World's own names, which carry the ``-v3``
suffix in ``metaworld`` 3.1 (``mw-reach-v3``, ``mw-pick-place-v3``). All 50 environments are
registered; :data:`MT10` lists the ten of the MT10 benchmark (the ``mt10`` suite) and
:data:`MT50` all fifty (the ``mt50`` suite), in Meta-World's order.

* **Observations**: the env's 39-float state vector as float32: hand position (3), gripper
  opening (1), object positions and quaternions (14, zero-padded), the same 18 values of the
  previous step (frame stacking), and the goal position (3). The goal is visible, as in
  Meta-World's multi-task (MT) benchmarks (``partially_observable=False``).
* **Actions**: ``[-1, 1]^4``: end-effector displacement (x, y, z) and gripper effort, exactly
  the env's own action space (no rescaling).
* **Episodes**: 500 steps (Meta-World's ``max_path_length``), ending ``truncated``; Meta-World
  never terminates an episode, not even on success.
* **Reward**: Meta-World's v2 reward function (the default of ``metaworld`` 3.1), in
  ``[0, 10]`` per step, so returns lie in ``[0, 5000]``.
* **Success**: ``is_success()`` is True once the env's ``info["success"]`` has been set during
  the episode; ``success_metric=True``, so evaluations report success rates.

Task variations follow Meta-World's MT protocol: every environment has 50 predefined
variations (object and goal positions), and each episode starts in one of them drawn
uniformly at random (the ``RandomTaskSelectWrapper`` behaviour of ``metaworld.make_mt_envs``),
by a generator seeded with the env copy's seed. The 50 variations of an environment are
those of ``metaworld.MT1(env_name, seed=VARIATION_SEED)``, i.e. fixed for all runs and
suites; they are drawn per environment, so they are not bit-identical to the variations
``metaworld.MT10(seed)`` draws for the same environment in sequence (same distribution:
50 draws of the environment's own random-reset space). Generating them builds one env and
resets it 50 times (about 1-2 s per environment, once per process).

``target_return`` is 90% of the mean return of Meta-World's scripted expert policy
(``metaworld.policies``) on the task, rounded to 100: a policy that reaches the goal early and
stays there scores about that; success (the benchmark's real metric) is reported separately.
``random_return`` is the mean of uniform random actions. Both were measured over 10 episodes
with ``python -m scalezero.tasks.metaworld --returns --episodes 10`` (columns of
:data:`MW_RETURNS`). Values: at 10 reward a step, discounted values stay below 1,000 at
discount 0.99 (the ``mt10``/``mt50`` suites' setting) but reach about 2,600 at the default
0.997, beyond the default value support (about 2,364); a run at 0.997 needs
``model.support_size`` of about 55.

Rendering: ``render()`` returns a 240x240 frame of the default free camera (Meta-World's named
cameras render upside down through Gymnasium's renderer). It needs an OpenGL backend; see
:func:`scalezero.tasks.dmc.configure_headless_gl`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from scalezero.tasks.base import Task, TaskSpec
from scalezero.tasks.dmc import configure_headless_gl, random_policy_returns

MW_PIP = 'pip install "mujoco==3.3.0" "metaworld==3.1.1"'
"""The install command named in errors."""

OBS_DIM = 39
"""Length of Meta-World's state observation."""
ACTION_DIM = 4
"""xyz end-effector displacement and gripper effort."""
MAX_EPISODE_STEPS = 500
"""Meta-World's ``max_path_length``."""
NUM_VARIATIONS = 50
"""Predefined task variations per environment (Meta-World's ``_N_GOALS``)."""
VARIATION_SEED = 0
"""Seed of ``metaworld.MT1`` that fixes every environment's 50 variations."""
RENDER_SIZE = 240
"""Height and width of ``render()`` frames."""

#: The MT10 benchmark's environments, in Meta-World's order.
MT10: tuple[str, ...] = (
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3",
    "drawer-close-v3", "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3",
)  # fmt: skip

#: The MT50 benchmark's environments (all of Meta-World's), in Meta-World's order.
MT50: tuple[str, ...] = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3", "button-press-topdown-v3",
    "button-press-topdown-wall-v3", "button-press-v3", "button-press-wall-v3", "coffee-button-v3",
    "coffee-pull-v3", "coffee-push-v3", "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3",
    "door-open-v3", "door-unlock-v3", "hand-insert-v3", "drawer-close-v3", "drawer-open-v3",
    "faucet-open-v3", "faucet-close-v3", "hammer-v3", "handle-press-side-v3", "handle-press-v3",
    "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3", "pick-place-wall-v3", "pick-out-of-hole-v3",
    "pick-place-v3", "plate-slide-v3", "plate-slide-side-v3", "plate-slide-back-v3",
    "plate-slide-back-side-v3", "peg-insert-side-v3", "peg-unplug-side-v3", "soccer-v3", "stick-push-v3",
    "stick-pull-v3", "push-v3", "push-wall-v3", "push-back-v3", "reach-v3", "reach-wall-v3",
    "shelf-place-v3", "sweep-into-v3", "sweep-v3", "window-open-v3", "window-close-v3",
)  # fmt: skip

#: env name -> (random-policy return, scripted-expert return, expert success rate); means over
#: 10 episodes of one env copy, seed 0 (``python -m scalezero.tasks.metaworld --returns
#: --episodes 10``). Uniform random actions succeed in none of them but coffee-button (0.1),
#: handle-press-side (0.1) and handle-press (0.2).
MW_RETURNS: dict[str, tuple[float, float, float]] = {
    "assembly-v3": (216.9, 4314.6, 1.0),
    "basketball-v3": (8.4, 2982.1, 0.7),
    "bin-picking-v3": (8.5, 3917.7, 1.0),
    "box-close-v3": (303.7, 3570.4, 1.0),
    "button-press-topdown-v3": (219.7, 3851.2, 1.0),
    "button-press-topdown-wall-v3": (309.0, 2102.2, 1.0),
    "button-press-v3": (163.3, 560.2, 1.0),
    "button-press-wall-v3": (64.1, 4217.7, 1.0),
    "coffee-button-v3": (200.2, 496.6, 1.0),
    "coffee-pull-v3": (21.2, 4275.0, 1.0),
    "coffee-push-v3": (20.0, 4055.5, 1.0),
    "dial-turn-v3": (108.9, 4022.4, 1.0),
    "disassemble-v3": (191.7, 3811.6, 1.0),
    "door-close-v3": (44.4, 4477.2, 1.0),
    "door-lock-v3": (644.8, 3457.3, 1.0),
    "door-open-v3": (333.7, 4239.7, 0.9),
    "door-unlock-v3": (551.9, 3418.5, 1.0),
    "hand-insert-v3": (10.3, 4580.0, 1.0),
    "drawer-close-v3": (13.3, 4243.4, 1.0),
    "drawer-open-v3": (679.1, 4031.0, 1.0),
    "faucet-open-v3": (1198.5, 4099.8, 1.0),
    "faucet-close-v3": (1263.8, 3828.0, 1.0),
    "hammer-v3": (466.0, 2679.7, 1.0),
    "handle-press-side-v3": (286.8, 1108.4, 1.0),
    "handle-press-v3": (849.0, 1289.8, 1.0),
    "handle-pull-side-v3": (9.9, 3110.3, 1.0),
    "handle-pull-v3": (39.4, 3998.5, 1.0),
    "lever-pull-v3": (225.1, 640.6, 1.0),
    "pick-place-wall-v3": (0.0, 4271.8, 1.0),
    "pick-out-of-hole-v3": (6.5, 3434.4, 1.0),
    "pick-place-v3": (5.5, 4389.8, 1.0),
    "plate-slide-v3": (281.1, 4579.0, 1.0),
    "plate-slide-side-v3": (95.5, 2889.9, 1.0),
    "plate-slide-back-v3": (145.7, 1165.5, 1.0),
    "plate-slide-back-side-v3": (149.7, 987.3, 1.0),
    "peg-insert-side-v3": (7.1, 3580.6, 0.9),
    "peg-unplug-side-v3": (20.0, 1170.4, 0.9),
    "soccer-v3": (18.8, 3037.0, 0.9),
    "stick-push-v3": (10.9, 1264.8, 1.0),
    "stick-pull-v3": (11.2, 465.0, 1.0),
    "push-v3": (20.9, 3974.1, 1.0),
    "push-wall-v3": (31.8, 4303.1, 1.0),
    "push-back-v3": (4.9, 530.0, 0.9),
    "reach-v3": (786.7, 4833.1, 1.0),
    "reach-wall-v3": (784.5, 4808.3, 1.0),
    "shelf-place-v3": (0.0, 2437.8, 0.9),
    "sweep-into-v3": (60.3, 2328.7, 0.9),
    "sweep-v3": (76.7, 4373.4, 1.0),
    "window-open-v3": (219.1, 2015.6, 1.0),
    "window-close-v3": (322.6, 3609.3, 1.0),
}


def target_return(env_name: str) -> float:
    """90% of the scripted expert's mean return, rounded to 100 (at least 100)."""
    return max(100.0, round(0.9 * MW_RETURNS[env_name][1], -2))


def _import_metaworld() -> Any:
    """The ``metaworld`` package, or an ImportError naming the pip command."""
    configure_headless_gl()
    try:
        import metaworld
    except ImportError as exc:
        raise ImportError(f"Meta-World tasks need metaworld and mujoco: {MW_PIP} ({exc})") from exc
    return metaworld


@functools.cache
def task_variations(env_name: str, seed: int = VARIATION_SEED) -> tuple[Any, ...]:
    """The 50 predefined variations (``metaworld.types.Task``) of ``env_name``, cached per process.

    Built by ``metaworld.MT1(env_name, seed)``, which seeds NumPy's global generator for the
    draw and restores it afterwards.
    """
    metaworld = _import_metaworld()
    if env_name not in metaworld.env_dict.ALL_V3_ENVIRONMENTS:
        raise ValueError(f"{env_name!r} is not a Meta-World environment of the installed package")
    tasks = tuple(metaworld.MT1(env_name, seed=seed).train_tasks)
    if len(tasks) != NUM_VARIATIONS:
        raise RuntimeError(f"metaworld.MT1({env_name!r}) has {len(tasks)} variations, expected {NUM_VARIATIONS}")
    return tasks


class MetaWorldEnv:
    """One Meta-World environment behind the project's env protocol (see :mod:`scalezero.tasks.base`).

    Every ``reset()`` draws one of the environment's 50 variations uniformly with a generator
    seeded by ``seed`` (also the env's own seed), so copies with the same seed and actions
    play the same episodes.
    """

    def __init__(self, env_name: str, seed: int) -> None:
        metaworld = _import_metaworld()
        self.env_name = env_name
        self._variations = task_variations(env_name)
        cls = metaworld.env_dict.ALL_V3_ENVIRONMENTS[env_name]
        self._env = cls(render_mode="rgb_array", width=RENDER_SIZE, height=RENDER_SIZE)
        self._env.seed(seed)
        self._rng = np.random.default_rng(seed)
        self._success = False
        self.variation: int | None = None
        """Index (0..49) of the current episode's variation."""

    @property
    def unwrapped(self) -> Any:
        """The Meta-World ``SawyerXYZEnv`` (tests and scripted controllers read its state)."""
        return self._env

    def reset(self) -> np.ndarray:
        """Start an episode in a freshly drawn variation; returns its first observation."""
        self.variation = int(self._rng.integers(len(self._variations)))
        self._env.set_task(self._variations[self.variation])
        obs, _ = self._env.reset()
        self._success = False
        if obs.shape != (OBS_DIM,):
            raise ValueError(f"mw-{self.env_name}: observation has shape {obs.shape}, expected ({OBS_DIM},)")
        return obs.astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        """Apply ``action`` (``[-1, 1]^4``, clipped) for one step; success is remembered."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"mw-{self.env_name}: action must have shape ({ACTION_DIM},), got {action.shape}")
        obs, reward, terminated, truncated, info = self._env.step(np.clip(action, -1.0, 1.0))
        self._success |= bool(info.get("success", 0.0))
        return obs.astype(np.float32), float(reward), bool(terminated), bool(truncated)

    def is_success(self) -> bool:
        """Whether ``info["success"]`` has been reported at any step of this episode."""
        return self._success

    def render(self) -> np.ndarray:
        """An RGB frame ``uint8 [240, 240, 3]``; RuntimeError naming the fix without OpenGL."""
        try:
            frame = self._env.render()
        except Exception as exc:
            raise RuntimeError(
                f"mw-{self.env_name}: cannot render ({type(exc).__name__}: {exc}); rendering needs an OpenGL backend: "
                "install EGL (apt-get install libegl1) or OSMesa (apt-get install libosmesa6) and set MUJOCO_GL=egl "
                "or MUJOCO_GL=osmesa before the first import of mujoco"
            ) from exc
        return np.asarray(frame, dtype=np.uint8)

    def close(self) -> None:
        """Release the simulation and any rendering context."""
        self._env.close()


def metaworld_task(env_name: str) -> Task:
    """The registered :class:`Task` ``mw-<env_name>``."""
    random_return = MW_RETURNS[env_name][0]
    spec = TaskSpec(
        name=f"mw-{env_name}",
        obs_kind="vector",
        obs_shape=(OBS_DIM,),
        num_actions=0,
        action_dim=ACTION_DIM,
        target_return=target_return(env_name),
        random_return=random_return,
        max_episode_steps=MAX_EPISODE_STEPS,
        success_metric=True,
    )
    return Task(spec=spec, make_env=lambda seed: MetaWorldEnv(env_name, seed))


def metaworld_tasks() -> list[Task]:
    """All 50 Meta-World tasks (cheap: metaworld is imported only when an env is built)."""
    return [metaworld_task(name) for name in MT50]


# ---------------------------------------------------------------- measurements


def expert_returns(env_name: str, episodes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Returns and success flags of Meta-World's scripted expert policy for ``env_name``."""
    from metaworld.policies import ENV_POLICY_MAP

    policy = ENV_POLICY_MAP[env_name]()
    env = MetaWorldEnv(env_name, seed)
    returns = np.zeros(episodes)
    success = np.zeros(episodes, dtype=bool)
    for e in range(episodes):
        obs = env.reset()
        done = False
        while not done:
            obs, r, term, trunc = env.step(policy.get_action(obs.astype(np.float64)))
            returns[e] += r
            done = term or trunc
        success[e] = env.is_success()
    env.close()
    return returns, success


def main(argv: list[str] | None = None) -> None:
    """Command line: random and expert returns (``--returns``); env speed is in
    ``benchmarks/env_speed.py``."""
    import argparse

    parser = argparse.ArgumentParser(description="Meta-World task measurements (random/expert returns)")
    parser.add_argument("--returns", action="store_true", help="random-policy and scripted-expert returns per task")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", nargs="*", default=list(MT50), help="env names (default: all 50)")
    args = parser.parse_args(argv)
    for name in args.tasks:
        make = lambda seed, name=name: MetaWorldEnv(name, seed)
        if args.returns:
            rand, rand_success = random_policy_returns(make, ACTION_DIM, args.episodes, args.seed)
            expert, expert_success = expert_returns(name, args.episodes, args.seed)
            print(
                f'    "{name}": ({rand.mean():.1f}, {expert.mean():.1f}, {expert_success.mean():.1f}),'
                f"  # random success {rand_success.mean():.1f}, expert return std {expert.std():.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
