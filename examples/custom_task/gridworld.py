"""A tiny Gymnasium environment written by a user: walk to the goal on a grid.

The agent starts in the top-left corner of a ``size x size`` grid and must reach the
bottom-right corner: reward 1 on arrival (the episode ends), -0.01 for every other step, and
the episode is cut after ``4 * size`` steps. The step cost makes the shortest path the only
best one (the best return on the 5x5 grid is 1 - 7 * 0.01 = 0.93); without it every path that
eventually arrives looks equally good to a discounted value. The observation is a greyscale image ``(size, size)``
(uint8: agent 255, goal 128), so scalezero gives it an image encoder of its own beside the
vector encoder of CartPole. Nothing in this file knows about scalezero.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])  # up, down, left, right


class GridWorld(gymnasium.Env):
    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, size: int = 5) -> None:
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        self.size = size
        self.observation_space = spaces.Box(0, 255, (size, size), dtype=np.uint8)
        self.action_space = spaces.Discrete(4)
        self._pos = np.zeros(2, dtype=np.int64)
        self._steps = 0

    def _obs(self) -> np.ndarray:
        grid = np.zeros((self.size, self.size), dtype=np.uint8)
        grid[-1, -1] = 128
        grid[self._pos[0], self._pos[1]] = 255
        return grid

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._pos[:] = 0
        self._steps = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._pos = np.clip(self._pos + MOVES[int(action)], 0, self.size - 1)
        self._steps += 1
        at_goal = bool((self._pos == self.size - 1).all())
        truncated = not at_goal and self._steps >= 4 * self.size
        reward = 1.0 if at_goal else -0.01
        return self._obs(), reward, at_goal, truncated, {}
