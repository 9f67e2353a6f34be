"""Classic-control tasks from Gymnasium (vector observations, small discrete action sets)."""

from __future__ import annotations

import numpy as np

from scalezero.tasks.base import Task, TaskSpec


class GymnasiumEnv:
    """Thin adapter: a Gymnasium env with float32 observations and an explicit seed on first reset."""

    def __init__(self, env_id: str, seed: int) -> None:
        import gymnasium

        self._env = gymnasium.make(env_id)
        self._seed: int | None = seed

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset(seed=self._seed)
        self._seed = None
        return np.asarray(obs, dtype=np.float32)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        obs, reward, terminated, truncated, _ = self._env.step(int(action))
        return np.asarray(obs, dtype=np.float32), float(reward), bool(terminated), bool(truncated)

    def close(self) -> None:
        self._env.close()


def _classic(name: str, env_id: str, obs_dim: int, num_actions: int, target: float, random_return: float, max_steps: int) -> Task:
    spec = TaskSpec(
        name=name,
        obs_kind="vector",
        obs_shape=(obs_dim,),
        num_actions=num_actions,
        target_return=target,
        random_return=random_return,
        max_episode_steps=max_steps,
    )
    return Task(spec=spec, make_env=lambda seed: GymnasiumEnv(env_id, seed))


def classic_tasks() -> list[Task]:
    """CartPole (2 actions) and Acrobot (3 actions): the fast smoke-test tasks."""
    return [
        _classic("cartpole", "CartPole-v1", 4, 2, target=195.0, random_return=22.0, max_steps=500),
        _classic("acrobot", "Acrobot-v1", 6, 3, target=-100.0, random_return=-500.0, max_steps=500),
    ]
