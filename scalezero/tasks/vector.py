"""Vectorised stepping of several copies of one task's environment, with auto-reset.

Stepping is synchronous in one process: MinAtar and classic control step in
microseconds, far below the cost of one search, so worker processes would only add
latency. When an episode ends, its final observation is returned in ``final_obs``
(needed as the last latent-consistency target) and the copy is reset at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalezero.tasks.base import Task


@dataclass
class StepResult:
    """Outcome of one step of every copy. Arrays have a leading ``[num_envs]`` axis.

    ``obs`` is the observation to act on next (already the reset observation for copies
    whose episode ended); ``final_obs`` holds the last observation of ended episodes
    (undefined elsewhere); ``episode_return``/``episode_length`` are set where ``done``.
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class ObservationShapeError(ValueError):
    """A task's env returned an observation that does not match its spec (a bug in the task)."""


class EnvTimeout(RuntimeError):
    """An env copy's ``step``/``reset`` ran past ``step_timeout_s``."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise :class:`EnvTimeout` in this (main) thread after ``seconds`` (0: no limit). Uses
    SIGALRM, so it interrupts Python code; elsewhere than the main thread it does nothing."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum, frame):
        raise EnvTimeout(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class EnvBatch:
    """``num_envs`` copies of one task, seeded ``seed, seed+1, ...``.

    A copy whose ``step`` raises or runs past ``step_timeout_s`` is replaced by a fresh one; its
    episode ends there as truncated (final observation: the last one it returned) and the
    restart is counted in ``crashes``, so one broken copy never stops training. Observations
    of the wrong shape are a bug in the task and stop with a message naming it.
    """

    def __init__(self, task: Task, num_envs: int, seed: int, max_episode_steps: int | None = None, step_timeout_s: float = 0.0) -> None:
        self.task = task
        self.num_envs = num_envs
        self.seed = seed
        self.step_timeout_s = step_timeout_s
        self.crashes = 0
        self.envs = [task.make_env(seed + i) for i in range(num_envs)]
        limit = task.spec.max_episode_steps
        self.max_episode_steps = min(x for x in (limit, max_episode_steps) if x) if (limit or max_episode_steps) else None
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self.obs = np.stack([self._checked(env.reset(), "reset") for env in self.envs])

    def _checked(self, obs: Any, where: str) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.shape != tuple(self.task.spec.obs_shape):
            raise ObservationShapeError(
                f"task {self.task.spec.name!r}: {where}() returned an observation of shape {obs.shape}, "
                f"but its spec says {tuple(self.task.spec.obs_shape)}"
            )
        return obs

    def _restart(self, i: int, error: BaseException) -> np.ndarray:
        """Replace copy ``i`` after ``error``; returns its first observation."""
        self.crashes += 1
        warnings.warn(f"task {self.task.spec.name!r}: env copy {i} failed ({type(error).__name__}: {error}); restarted it", RuntimeWarning, stacklevel=3)
        try:
            self.envs[i].close()
        except Exception:  # a broken env may fail to close as well; it is dropped either way
            pass
        self.envs[i] = self.task.make_env(self.seed + i + 7919 * self.crashes)
        with _time_limit(self.step_timeout_s):
            return self._checked(self.envs[i].reset(), "reset")

    def step(self, actions: np.ndarray) -> StepResult:
        """Step every copy with ``actions [num_envs]`` (task-local action ids)."""
        n = self.task.spec.num_actions
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or (actions < 0).any() or (actions >= n).any():
            raise ValueError(f"{self.task.spec.name}: actions must be {self.num_envs} integers in [0, {n}), got {actions!r}")
        obs = np.empty_like(self.obs)
        final_obs = np.empty_like(self.obs)
        reward = np.zeros(self.num_envs, dtype=np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        ep_return = np.zeros(self.num_envs, dtype=np.float64)
        ep_length = np.zeros(self.num_envs, dtype=np.int64)
        for i, env in enumerate(self.envs):
            error: BaseException | None = None
            try:
                with _time_limit(self.step_timeout_s):
                    o, r, term, trunc = env.step(int(actions[i]))
                o = self._checked(o, "step")
            except ObservationShapeError:
                raise
            except Exception as exc:  # any failure inside the user's env: restart this copy
                error = exc
            crashed = error is not None
            if crashed:
                o, r, term, trunc = self.obs[i], 0.0, False, True
            self._returns[i] += r
            self._lengths[i] += 1
            if self.max_episode_steps is not None and self._lengths[i] >= self.max_episode_steps and not term:
                trunc = True
            reward[i], terminated[i], truncated[i] = r, term, trunc
            if term or trunc:
                final_obs[i] = o
                ep_return[i], ep_length[i] = self._returns[i], self._lengths[i]
                self._returns[i], self._lengths[i] = 0.0, 0
                o = self._restart(i, error) if error is not None else self._reset(i)
            obs[i] = o
        self.obs = obs
        return StepResult(obs, reward, terminated, truncated, final_obs, ep_return, ep_length)

    def _reset(self, i: int) -> np.ndarray:
        try:
            with _time_limit(self.step_timeout_s):
                return self._checked(self.envs[i].reset(), "reset")
        except ObservationShapeError:
            raise
        except Exception as exc:
            return self._restart(i, exc)

    def close(self) -> None:
        for env in self.envs:
            env.close()
