"""DeepMind Control Suite tasks from proprioceptive state (``dm_control`` + ``mujoco``).

Tasks are named ``dmc-<domain>-<task>`` (``dmc-cartpole-balance``, ``dmc-ball_in_cup-catch``).
The 18 tasks of the standard state-based DMC benchmark are registered.

* **Observations**: the dm_control observation dict flattened to one float32 vector, keys in
  the order of :data:`DMC_TASKS` (which is the order the task itself emits them; an env whose
  keys or sizes differ from the table is refused, so a changed dm_control cannot silently
  permute inputs). ``obs_kind="vector"``.
* **Actions**: float32 vectors in ``[-1, 1]^d`` mapped affinely onto the task's action-spec
  bounds (``-1`` -> minimum, ``+1`` -> maximum; all 18 tasks happen to use ``[-1, 1]``, so the
  map is the identity for them, but it is applied from the spec).
* **Episodes**: 1,000 environment (control) steps, i.e. ``1000 / repeat`` agent steps. DMC
  episodes never terminate; reaching the time limit is reported as ``truncated=True``,
  ``terminated=False`` (an episode ending with discount 0 would be ``terminated``, but none
  of these tasks has one).
* **Reward**: the sum of the per-step rewards (each in ``[0, 1]``) over the repeated steps, so
  every return lies in ``[0, 1000]``; ``target_return`` is 1,000, DMC's maximum.

Action repeat (:data:`ACTION_REPEAT`, per domain) follows the usual choices of the
state/pixel-based DMC literature (PlaNet, DrQ: 4 for cartpole, cheetah, ball_in_cup and
reacher; Dreamer/TD-MPC-style 2 elsewhere). Cartpole uses 4 rather than PlaNet's 8 so that
the balance tasks keep fine control. A longer repeat shortens the effective horizon (fewer
decisions per episode), which helps credit assignment where dynamics are smooth; 2 keeps the
fast, contact-rich tasks (walker, hopper, finger) and the chaotic acrobot controllable.

===========  ======  ==========  ===========  ===========  =========================================
domain       repeat  agent dt s  agent steps  obs, action  tasks
===========  ======  ==========  ===========  ===========  =========================================
acrobot      2       0.02        500          6, 1         swingup
ball_in_cup  4       0.08        250          8, 2         catch
cartpole     4       0.04        250          5, 1         balance, balance_sparse, swingup, swingup_sparse
cheetah      4       0.04        250          17, 6        run
finger       2       0.04        500          9 / 12, 2    spin (9) / turn_easy, turn_hard (12)
hopper       2       0.04        500          15, 4        hop, stand
pendulum     2       0.04        500          3, 1         swingup
reacher      4       0.08        250          6, 2         easy, hard
walker       2       0.05        500          24, 6        run, stand, walk
===========  ======  ==========  ===========  ===========  =========================================

Random returns (uniform actions in ``[-1, 1]^d``, 10 episodes of one env copy, seed 0) are in
:data:`DMC_TASKS`; they were measured with ``python -m scalezero.tasks.dmc --random-returns``.

Rendering: ``render()`` returns ``physics.render(240, 320)``, which needs an OpenGL backend.
On a machine without a display, importing dm_control through this module sets
``MUJOCO_GL=egl`` when the variable is unset and an EGL library is installed (on the CPU-only
development machine Mesa's EGL renders off-screen); if that backend cannot initialise,
rendering is disabled instead (stepping never needs OpenGL). With no usable backend
``render()`` raises a :class:`RuntimeError` saying what to install. Set ``MUJOCO_GL``
yourself (``egl``, ``osmesa`` or ``glfw``) to override.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalezero.tasks.base import Task, TaskSpec

DMC_PIP = 'pip install "mujoco==3.3.0" "dm_control==1.0.28"'
"""The install command named in errors (mujoco 4 is incompatible with dm_control 1.0.28)."""

ENV_STEPS_PER_EPISODE = 1_000
"""DMC's time limit, in control steps, for every registered task."""

ACTION_REPEAT: dict[str, int] = {
    "acrobot": 2,
    "ball_in_cup": 4,
    "cartpole": 4,
    "cheetah": 4,
    "finger": 2,
    "hopper": 2,
    "pendulum": 2,
    "reacher": 4,
    "walker": 2,
}
"""Control steps each agent action is held for, per domain (see the module docstring)."""

_FINGER = (("position", 4), ("velocity", 3), ("touch", 2))
_FINGER_TURN = _FINGER + (("target_position", 2), ("dist_to_target", 1))
_WALKER = (("orientations", 14), ("height", 1), ("velocity", 9))
_CARTPOLE = (("position", 3), ("velocity", 2))
_HOPPER = (("position", 6), ("velocity", 7), ("touch", 2))
_REACHER = (("position", 2), ("to_target", 2), ("velocity", 2))


@dataclass(frozen=True)
class DMCTaskInfo:
    """What is known of one DMC task without importing dm_control.

    Attributes:
        domain: dm_control domain name.
        task: dm_control task name within the domain.
        obs_layout: ``(key, flattened size)`` in flattening order.
        action_dim: size of the action vector.
        random_return: measured mean return of uniform random actions (see module docstring).
    """

    domain: str
    task: str
    obs_layout: tuple[tuple[str, int], ...]
    action_dim: int
    random_return: float

    @property
    def name(self) -> str:
        """Registered task name, ``dmc-<domain>-<task>``."""
        return f"dmc-{self.domain}-{self.task}"

    @property
    def obs_dim(self) -> int:
        """Length of the flattened observation vector."""
        return sum(size for _, size in self.obs_layout)

    @property
    def action_repeat(self) -> int:
        """Control steps per agent step (:data:`ACTION_REPEAT` of the domain)."""
        return ACTION_REPEAT[self.domain]

    @property
    def max_episode_steps(self) -> int:
        """Agent steps per episode (the 1,000-step time limit divided by the repeat)."""
        return ENV_STEPS_PER_EPISODE // self.action_repeat


def _info(domain: str, task: str, layout: tuple[tuple[str, int], ...], action_dim: int, random_return: float) -> DMCTaskInfo:
    return DMCTaskInfo(domain, task, layout, action_dim, random_return)


#: The 18 state-based benchmark tasks. Columns: domain, task, observation layout (flattening
#: order), action dimension, random-policy return (mean of 10 episodes, uniform actions in
#: [-1, 1]^d; ``python -m scalezero.tasks.dmc --random-returns --episodes 10``).
DMC_TASKS: dict[str, DMCTaskInfo] = {
    t.name: t
    for t in (
        _info("acrobot", "swingup", (("orientations", 4), ("velocity", 2)), 1, 4.5),
        _info("cartpole", "balance", _CARTPOLE, 1, 295.2),
        _info("cartpole", "balance_sparse", _CARTPOLE, 1, 36.6),
        _info("cartpole", "swingup", _CARTPOLE, 1, 115.6),
        _info("cartpole", "swingup_sparse", _CARTPOLE, 1, 0.4),
        _info("cheetah", "run", (("position", 8), ("velocity", 9)), 6, 12.7),
        _info("ball_in_cup", "catch", (("position", 4), ("velocity", 4)), 2, 60.8),
        _info("finger", "spin", _FINGER, 2, 0.8),
        _info("finger", "turn_easy", _FINGER_TURN, 2, 372.4),
        _info("finger", "turn_hard", _FINGER_TURN, 2, 101.8),
        _info("hopper", "hop", _HOPPER, 4, 0.0),
        _info("hopper", "stand", _HOPPER, 4, 1.5),
        _info("pendulum", "swingup", (("orientation", 2), ("velocity", 1)), 1, 0.0),
        _info("reacher", "easy", _REACHER, 2, 52.2),
        _info("reacher", "hard", _REACHER, 2, 11.2),
        _info("walker", "run", _WALKER, 6, 24.4),
        _info("walker", "stand", _WALKER, 6, 132.8),
        _info("walker", "walk", _WALKER, 6, 39.7),
    )
}

TARGET_RETURN = 1000.0
"""DMC's maximum return (reward <= 1 per control step, 1,000 steps)."""

RENDER_HEIGHT, RENDER_WIDTH = 240, 320
"""Default size of ``render()`` frames."""


_AUTO_GL: str | None = None
"""The backend :func:`configure_headless_gl` chose itself (None: it chose none)."""


def configure_headless_gl() -> str | None:
    """Choose MuJoCo's OpenGL backend for a machine without a display, before mujoco renders.

    Only acts when ``MUJOCO_GL`` is unset, there is no ``DISPLAY`` and dm_control has not been
    imported yet (it reads the variable once, at import): then ``egl`` if an EGL library is
    installed, else ``osmesa`` if OSMesa is, else nothing (rendering then fails with a clear
    error; stepping never needs OpenGL). Returns the backend in force (None: left to mujoco).
    Why: without a display dm_control would pick GLFW, which cannot open a context there.
    """
    global _AUTO_GL
    if "MUJOCO_GL" in os.environ or os.environ.get("DISPLAY") or "dm_control" in sys.modules:
        return os.environ.get("MUJOCO_GL")
    import ctypes.util

    for backend, library in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(library):
            os.environ["MUJOCO_GL"] = _AUTO_GL = backend
            return backend
    return None


def _raised_by_renderer(exc: BaseException) -> bool:
    """Whether ``exc`` came out of dm_control's OpenGL backend setup (not a missing package)."""
    tb = exc.__traceback__
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename.replace(os.sep, "/")
        if "/dm_control/_render/" in path:
            return True
        tb = tb.tb_next
    return False


def _import_suite() -> Any:
    """``dm_control.suite``, or an ImportError naming the pip command.

    dm_control initialises the backend named by ``MUJOCO_GL`` at import and fails if it cannot
    (e.g. an EGL library without a usable device). When that backend was our own automatic
    choice, the import is retried with rendering disabled, so stepping still works and only
    ``render()`` fails, with its own message.
    """
    configure_headless_gl()
    try:
        from dm_control import suite
    except ImportError as exc:
        if _AUTO_GL is None or os.environ.get("MUJOCO_GL") != _AUTO_GL or not _raised_by_renderer(exc):
            raise ImportError(f"DeepMind Control tasks need dm_control and mujoco: {DMC_PIP} ({exc})") from exc
        for module in [m for m in sys.modules if m == "dm_control" or m.startswith("dm_control.")]:
            del sys.modules[module]
        os.environ["MUJOCO_GL"] = "disable"
        try:
            from dm_control import suite
        except ImportError as exc2:
            raise ImportError(f"DeepMind Control tasks need dm_control and mujoco: {DMC_PIP} ({exc2})") from exc2
    return suite


def rescale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map ``action`` from ``[-1, 1]^d`` onto ``[low, high]`` (clipped first), affinely.

    ``-1`` gives ``low``, ``+1`` gives ``high``, ``0`` the midpoint. The agent always acts in
    the unit box, so tasks with different physical bounds share one policy parameterisation.
    """
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    return low + (a + 1.0) * 0.5 * (high - low)


def flatten_observation(observation: dict[str, Any], layout: tuple[tuple[str, int], ...]) -> np.ndarray:
    """Concatenate the dm_control observation dict in ``layout`` order into float32 ``(D,)``.

    Raises ValueError if a key is missing or has a different size than the layout says.
    """
    parts = []
    for key, size in layout:
        if key not in observation:
            raise ValueError(f"DMC observation has no key {key!r} (keys: {list(observation)})")
        value = np.asarray(observation[key], dtype=np.float32).ravel()
        if value.size != size:
            raise ValueError(f"DMC observation {key!r} has {value.size} values, expected {size}")
        parts.append(value)
    return np.concatenate(parts)


class DMCEnv:
    """One DMC task behind the project's env protocol (see :mod:`scalezero.tasks.base`).

    ``seed`` seeds the task's random initial states (``task_kwargs={'random': seed}``), so two
    copies with the same seed and actions produce the same episode.
    """

    def __init__(self, info: DMCTaskInfo, seed: int) -> None:
        suite = _import_suite()
        self.info = info
        self.action_repeat = info.action_repeat
        self._env = suite.load(info.domain, info.task, task_kwargs={"random": seed})
        spec = self._env.action_spec()
        if spec.shape != (info.action_dim,):
            raise ValueError(
                f"{info.name}: dm_control action spec has shape {spec.shape}, the task table says ({info.action_dim},)"
            )
        self.low = np.asarray(spec.minimum, dtype=np.float64) * np.ones(spec.shape)
        self.high = np.asarray(spec.maximum, dtype=np.float64) * np.ones(spec.shape)
        obs_spec = self._env.observation_spec()
        layout = tuple((key, int(np.prod(s.shape))) for key, s in obs_spec.items())
        if layout != info.obs_layout:
            raise ValueError(f"{info.name}: dm_control observations are {layout}, the task table says {info.obs_layout}")

    @property
    def physics(self) -> Any:
        """The underlying ``dm_control`` physics (tests read control values from it)."""
        return self._env.physics

    def reset(self) -> np.ndarray:
        """Start a new episode; returns its first observation."""
        return flatten_observation(self._env.reset().observation, self.info.obs_layout)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        """Hold ``action`` (``[-1, 1]^d``) for ``action_repeat`` control steps.

        Returns the last observation, the summed reward, ``terminated`` (an episode end with
        discount 0; never for these tasks) and ``truncated`` (the time limit).
        """
        action = np.asarray(action)
        if action.shape != (self.info.action_dim,):
            raise ValueError(f"{self.info.name}: action must have shape ({self.info.action_dim},), got {action.shape}")
        control = rescale_action(action, self.low, self.high)
        reward = 0.0
        for _ in range(self.action_repeat):
            ts = self._env.step(control)
            reward += float(ts.reward or 0.0)
            if ts.last():
                break
        obs = flatten_observation(ts.observation, self.info.obs_layout)
        if not ts.last():
            return obs, reward, False, False
        terminated = ts.discount is not None and float(ts.discount) == 0.0
        return obs, reward, terminated, not terminated

    def render(self, height: int = RENDER_HEIGHT, width: int = RENDER_WIDTH, camera_id: int = 0) -> np.ndarray:
        """An RGB frame ``uint8 [height, width, 3]`` of the current state.

        Raises RuntimeError naming the fix when no OpenGL backend can render here.
        """
        try:
            return np.asarray(self._env.physics.render(height=height, width=width, camera_id=camera_id), dtype=np.uint8)
        except Exception as exc:
            raise RuntimeError(
                f"{self.info.name}: cannot render ({type(exc).__name__}: {exc}); rendering needs an OpenGL backend: "
                "install EGL (apt-get install libegl1) or OSMesa (apt-get install libosmesa6) and set MUJOCO_GL=egl "
                "or MUJOCO_GL=osmesa before the first import of dm_control/mujoco"
            ) from exc

    def close(self) -> None:
        """Release the physics."""
        self._env.close()


def dmc_task(name: str) -> Task:
    """The registered :class:`Task` for one entry of :data:`DMC_TASKS`."""
    info = DMC_TASKS[name]
    spec = TaskSpec(
        name=info.name,
        obs_kind="vector",
        obs_shape=(info.obs_dim,),
        num_actions=0,
        action_dim=info.action_dim,
        target_return=TARGET_RETURN,
        random_return=info.random_return,
        max_episode_steps=info.max_episode_steps,
    )
    return Task(spec=spec, make_env=lambda seed: DMCEnv(info, seed))


def dmc_tasks() -> list[Task]:
    """The 18 DMC state tasks (cheap: dm_control is imported only when an env is built)."""
    return [dmc_task(name) for name in DMC_TASKS]


# ---------------------------------------------------------------- measurements


def random_policy_returns(
    make_env: Callable[[int], Any], action_dim: int, episodes: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Returns and success flags of ``episodes`` episodes of uniform actions in ``[-1, 1]^d``.

    One env copy (``make_env(seed)``) plays the episodes one after another until each ends
    (terminated or truncated); the env's ``is_success()`` is read after every step where it
    has one (the flags are False otherwise). Used to fill the tables of random returns.
    """
    env = make_env(seed)
    rng = np.random.default_rng(seed)
    success_fn = getattr(env, "is_success", None)
    returns = np.zeros(episodes)
    success = np.zeros(episodes, dtype=bool)
    for e in range(episodes):
        env.reset()
        done = False
        while not done:
            _, r, term, trunc = env.step(rng.uniform(-1.0, 1.0, action_dim).astype(np.float32))
            returns[e] += r
            if callable(success_fn):
                success[e] |= bool(success_fn())
            done = term or trunc
    env.close()
    return returns, success


def main(argv: list[str] | None = None) -> None:
    """Command line: measure random-policy returns (``--random-returns``); env speed is in
    ``benchmarks/env_speed.py``."""
    import argparse

    parser = argparse.ArgumentParser(description="DMC task measurements (random-policy returns)")
    parser.add_argument("--random-returns", action="store_true", help="mean return of uniform random actions per task")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", nargs="*", default=list(DMC_TASKS), help="task names (default: all 18)")
    args = parser.parse_args(argv)
    for name in args.tasks:
        info = DMC_TASKS[name]
        make = lambda seed, info=info: DMCEnv(info, seed)
        if args.random_returns:
            returns, _ = random_policy_returns(make, info.action_dim, args.episodes, args.seed)
            print(f"{name:28s} random return {returns.mean():8.1f} ± {returns.std():6.1f} ({args.episodes} episodes)", flush=True)


if __name__ == "__main__":
    main()
