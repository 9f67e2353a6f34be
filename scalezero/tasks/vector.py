"""Vectorised stepping of several copies of one task's environment, with auto-reset.

Stepping is synchronous in one process: MinAtar and classic control step in
microseconds, far below the cost of one search, so worker processes would only add
latency. When an episode ends, its final observation is returned in ``final_obs``
(needed as the last latent-consistency target) and the copy is reset at once.
"""

from __future__ import annotations

from dataclasses import dataclass

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


class EnvBatch:
    """``num_envs`` copies of one task, seeded ``seed, seed+1, ...``."""

    def __init__(self, task: Task, num_envs: int, seed: int, max_episode_steps: int | None = None) -> None:
        self.task = task
        self.num_envs = num_envs
        self.envs = [task.make_env(seed + i) for i in range(num_envs)]
        limit = task.spec.max_episode_steps
        self.max_episode_steps = min(x for x in (limit, max_episode_steps) if x) if (limit or max_episode_steps) else None
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self.obs = np.stack([env.reset() for env in self.envs])

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
            o, r, term, trunc = env.step(int(actions[i]))
            self._returns[i] += r
            self._lengths[i] += 1
            if self.max_episode_steps is not None and self._lengths[i] >= self.max_episode_steps and not term:
                trunc = True
            reward[i], terminated[i], truncated[i] = r, term, trunc
            if term or trunc:
                final_obs[i] = o
                ep_return[i], ep_length[i] = self._returns[i], self._lengths[i]
                self._returns[i], self._lengths[i] = 0.0, 0
                o = env.reset()
            obs[i] = o
        self.obs = obs
        return StepResult(obs, reward, terminated, truncated, final_obs, ep_return, ep_length)

    def close(self) -> None:
        for env in self.envs:
            env.close()
