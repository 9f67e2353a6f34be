"""Your own environment as a task: any Gymnasium env, named in a suite YAML by import path.

A suite entry with an ``entry_point`` builds its task here instead of looking it up in the
registry::

    tasks:
      - name: gridworld
        entry_point: examples/custom_task/gridworld.py:GridWorld   # or my_pkg.envs:make_env, or a Gymnasium id
        kwargs: {size: 5}
        target_return: 0.9

Spaces are translated once, by probing one env copy:

* observations: ``Box`` of rank 1 -> vector; rank 2 ``(H, W)`` -> image ``(1, H, W)``; rank 3
  -> image, channels-last when the last axis has 1-4 entries and the first does not (then
  transposed to channels-first); ``Discrete(n)`` -> one-hot vector. ``uint8`` images are scaled
  to ``[0, 1]``. Anything else (Dict, Tuple, Text, ...) is refused with a hint to flatten it.
* actions: ``Discrete(n)`` -> ``n`` actions; ``MultiDiscrete`` -> the product of its sizes;
  ``Box`` (continuous) -> with ``action_bins: 0``, continuous actions: the agent acts in
  ``[-1, 1]^d`` (``d`` = the Box's size), rescaled to the Box's bounds, and searches over
  actions sampled from its policy (Sampled MuZero); with ``action_bins >= 2`` (the default,
  5), a grid of that many evenly spaced values per dimension (at most 64 actions in all), so
  the task can share a suite with discrete tasks (a suite cannot mix the two kinds).
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scalezero.tasks.base import Task, TaskSpec
from scalezero.tasks.vector import ObservationShapeError

MAX_ACTIONS = 64


class TaskDefinitionError(ValueError):
    """A custom task cannot be built; the message names the task and what to change."""


def _describe(exc: BaseException, path: Path | None) -> str:
    """``"SyntaxError at line 3: invalid syntax"`` or ``"ValueError at line 7: ..."``: the
    error a user's module raised, with the line of ``path`` (when given) where it happened."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError at line {exc.lineno}: {exc.msg}"
    line = None
    if path is not None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == path]
        line = frames[-1].lineno if frames else None
    return f"{type(exc).__name__}{f' at line {line}' if line else ''}: {exc}"


def load_entry_point(entry_point: str) -> Callable[..., Any]:
    """``"path/to/file.py:Attr"``, ``"package.module:Attr"`` or a Gymnasium id -> env factory."""
    if ":" in entry_point:
        module_part, attr = entry_point.rsplit(":", 1)
        if module_part.endswith(".py"):
            path = Path(module_part).expanduser().resolve()
            if not path.exists():
                raise TaskDefinitionError(f"entry_point {entry_point!r}: file {path} does not exist")
            name = f"scalezero_user_{path.stem}_{abs(hash(str(path)))}"
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except Exception as exc:  # noqa: BLE001 -- the user's file: its own error, in one line
                    del sys.modules[name]
                    raise TaskDefinitionError(f"entry_point {entry_point!r}: importing {path} failed: {_describe(exc, path)}") from None
        else:
            try:
                module = importlib.import_module(module_part)
            except Exception as exc:  # noqa: BLE001 -- the user's module: its own error, in one line
                raise TaskDefinitionError(f"entry_point {entry_point!r}: cannot import {module_part!r} ({_describe(exc, None)})") from None
        if not hasattr(module, attr):
            raise TaskDefinitionError(f"entry_point {entry_point!r}: {module_part} has no attribute {attr!r}")
        return getattr(module, attr)
    import gymnasium

    if entry_point not in gymnasium.registry:
        raise TaskDefinitionError(
            f"entry_point {entry_point!r} is neither 'file.py:Attr', 'package.module:Attr' nor a registered Gymnasium id"
        )
    return lambda **kwargs: gymnasium.make(entry_point, **kwargs)


class _Observation:
    """Maps a Gymnasium observation space onto a vector or channels-first float image."""

    def __init__(self, space: Any, task: str) -> None:
        from gymnasium import spaces

        self.one_hot = None
        self.transpose = False
        self.scale = 1.0
        self.task = task
        self.raw_shape = tuple(getattr(space, "shape", None) or ())
        if isinstance(space, spaces.Discrete):
            self.one_hot = int(space.n)
            self.start = int(space.start)
            self.kind, self.shape = "vector", (self.one_hot,)
            return
        if not isinstance(space, spaces.Box):
            raise TaskDefinitionError(
                f"task {task!r}: observation space {space} is not supported; expose a Box or Discrete space "
                "(e.g. wrap the env in gymnasium.wrappers.FlattenObservation)"
            )
        shape = tuple(int(s) for s in space.shape)
        if space.dtype == np.uint8:
            self.scale = 1.0 / 255.0
        if len(shape) == 1:
            self.kind, self.shape = "vector", shape
        elif len(shape) == 2:
            self.kind, self.shape = "image", (1, *shape)
        elif len(shape) == 3:
            self.transpose = shape[-1] <= 4 and shape[0] > 4
            self.kind, self.shape = "image", (shape[2], shape[0], shape[1]) if self.transpose else shape
        else:
            raise TaskDefinitionError(f"task {task!r}: Box observations of rank {len(shape)} are not supported (rank 1, 2 or 3)")

    def __call__(self, obs: Any) -> np.ndarray:
        if self.one_hot is not None:
            out = np.zeros(self.one_hot, dtype=np.float32)
            out[int(obs) - self.start] = 1.0
            return out
        x = np.asarray(obs, dtype=np.float32) * self.scale
        if x.shape != self.raw_shape:
            raise ObservationShapeError(
                f"task {self.task!r}: the env returned an observation of shape {x.shape}, but its spec says {self.raw_shape}"
            )
        if self.transpose:
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x.reshape(self.shape))


class _Actions:
    """Maps action ids ``0..n-1`` (or, continuous, vectors in ``[-1, 1]^d``) onto a Gymnasium
    action space."""

    def __init__(self, space: Any, task: str, bins: int) -> None:
        from gymnasium import spaces

        self.dim = 0
        self.table: list[Any] = []
        if isinstance(space, spaces.Box) and bins == 0:
            if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
                raise TaskDefinitionError(f"task {task!r}: a continuous action space needs finite bounds, got {space}")
            self.dim = int(np.prod(space.shape))
            self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
            self.shape, self.dtype = space.shape, space.dtype
            return
        if bins == 0:
            raise TaskDefinitionError(f"task {task!r}: action_bins = 0 (continuous actions) needs a Box action space, got {space}")
        if isinstance(space, spaces.Discrete):
            self.table: list[Any] = [int(space.start) + i for i in range(int(space.n))]
        elif isinstance(space, spaces.MultiDiscrete):
            self.table = [np.array(a, dtype=space.dtype) for a in itertools.product(*(range(int(n)) for n in space.nvec.ravel()))]
        elif isinstance(space, spaces.Box):
            if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
                raise TaskDefinitionError(f"task {task!r}: a continuous action space needs finite bounds, got {space}")
            axes = [np.linspace(lo, hi, bins) for lo, hi in zip(space.low.ravel(), space.high.ravel())]
            self.table = [np.array(a, dtype=space.dtype).reshape(space.shape) for a in itertools.product(*axes)]
        else:
            raise TaskDefinitionError(f"task {task!r}: action space {space} is not supported (Discrete, MultiDiscrete or Box)")
        if len(self.table) > MAX_ACTIONS:
            raise TaskDefinitionError(
                f"task {task!r}: action space {space} gives {len(self.table)} discrete actions, more than {MAX_ACTIONS}; "
                "lower the task's action_bins or reduce the action dimensions"
            )

    def __len__(self) -> int:
        return len(self.table)

    def __call__(self, action: Any) -> Any:
        """The env's action for an id, or for a vector in ``[-1, 1]^d`` (continuous)."""
        if self.dim:
            a = np.clip(np.asarray(action, dtype=np.float64).reshape(self.shape), -1.0, 1.0)
            return (self.low + (a + 1.0) * 0.5 * (self.high - self.low)).astype(self.dtype)
        return self.table[int(action)]


class GymnasiumEnv:
    """One copy of a user's Gymnasium env behind the task interface (reset/step/close)."""

    def __init__(self, env: Any, observation: _Observation, actions: _Actions, seed: int) -> None:
        self._env = env
        self._observation = observation
        self._actions = actions
        self._seed: int | None = seed

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset(seed=self._seed)
        self._seed = None
        return self._observation(obs)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool]:
        obs, reward, terminated, truncated, _ = self._env.step(self._actions(action))
        return self._observation(obs), float(reward), bool(terminated), bool(truncated)

    def close(self) -> None:
        self._env.close()


def gymnasium_task(
    name: str,
    entry_point: str,
    target_return: float,
    kwargs: dict[str, Any] | None = None,
    random_return: float | None = None,
    max_episode_steps: int | None = None,
    action_bins: int = 5,
) -> Task:
    """Build a :class:`Task` from a Gymnasium env factory (see the module docstring)."""
    factory = load_entry_point(entry_point)
    kwargs = dict(kwargs or {})
    try:
        probe = factory(**kwargs)
    except Exception as exc:  # the user's constructor: report which task failed and why
        raise TaskDefinitionError(f"task {name!r}: {entry_point}(**{kwargs}) raised {type(exc).__name__}: {exc}") from exc
    for attr in ("observation_space", "action_space", "reset", "step"):
        if not hasattr(probe, attr):
            raise TaskDefinitionError(f"task {name!r}: {entry_point} did not return a Gymnasium env (no {attr!r})")
    observation = _Observation(probe.observation_space, name)
    actions = _Actions(probe.action_space, name, action_bins)
    limit = max_episode_steps
    if limit is None and getattr(probe, "spec", None) is not None:
        limit = probe.spec.max_episode_steps
    probe.close()
    spec = TaskSpec(
        name=name,
        obs_kind=observation.kind,
        obs_shape=observation.shape,
        num_actions=len(actions),
        action_dim=actions.dim,
        target_return=float(target_return),
        random_return=random_return,
        max_episode_steps=limit,
    )

    def make_env(seed: int) -> GymnasiumEnv:
        return GymnasiumEnv(factory(**kwargs), observation, actions, seed)

    return Task(spec=spec, make_env=make_env)


_CACHE: dict[str, Task] = {}


def cached_gymnasium_task(entry: Any) -> Task:
    """The task of a suite entry (a ``TaskEntry``), built once per distinct entry."""
    key = repr((entry.name, entry.entry_point, sorted(entry.kwargs.items()), entry.target_return, entry.random_return, entry.max_episode_steps, entry.action_bins))
    if key not in _CACHE:
        _CACHE[key] = gymnasium_task(
            entry.name,
            entry.entry_point,
            entry.target_return,
            kwargs=entry.kwargs,
            random_return=entry.random_return,
            max_episode_steps=entry.max_episode_steps,
            action_bins=entry.action_bins,
        )
    return _CACHE[key]
