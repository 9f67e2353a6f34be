"""MinAtar games (Young & Tian 2019): 10x10 Atari-like grids with 4 to 10 binary channels.

Each game uses its minimal action set (3 to 6 actions); inside a suite, actions are
mapped onto the suite's maximal action set and masked per task. Sticky actions with
probability 0.1 and difficulty ramping are MinAtar's standard protocol and are kept.
Observations are channels-first ``uint8`` ``(C, 10, 10)``.
"""

from __future__ import annotations

import numpy as np

from scalezero.tasks.base import Task, TaskSpec

#: game -> (channels, minimal action count, target return, random-policy return).
#: Random returns: mean over 100 episodes of a uniform policy on the minimal action set under
#: the minatar suite's evaluation protocol (episodes capped at 1,000 steps), measured by
#: ``python benchmarks/random_returns.py --suite minatar --episodes 100`` (see BENCHMARKS.md).
MINATAR_GAMES: dict[str, tuple[int, int, float, float]] = {
    "breakout": (4, 3, 10.0, 0.41),
    "asterix": (4, 5, 10.0, 0.49),
    "freeway": (7, 3, 20.0, 0.10),
    "seaquest": (10, 6, 10.0, 0.11),
    "space_invaders": (6, 4, 30.0, 4.22),
}

#: MinAtar truncates no game except Freeway; cap episodes so a stuck agent cannot stall a run.
MAX_EPISODE_STEPS = 10_000


class MinAtarEnv:
    """One MinAtar game behind the project's env interface (minimal action set, channels first)."""

    def __init__(self, game: str, seed: int, sticky_action_prob: float = 0.1) -> None:
        try:
            from minatar import Environment
        except ImportError as exc:  # pragma: no cover - minatar is a core dependency
            raise ImportError("MinAtar tasks need the 'minatar' package: pip install minatar") from exc
        self._env = Environment(game, sticky_action_prob=sticky_action_prob)
        self._env.seed(seed)
        self._actions = np.asarray(self._env.minimal_action_set(), dtype=np.int64)
        self._steps = 0

    def _obs(self) -> np.ndarray:
        return np.ascontiguousarray(self._env.state().transpose(2, 0, 1)).astype(np.uint8)

    def reset(self) -> np.ndarray:
        self._env.reset()
        self._steps = 0
        return self._obs()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        reward, terminated = self._env.act(int(self._actions[action]))
        self._steps += 1
        truncated = (not terminated) and self._steps >= MAX_EPISODE_STEPS
        return self._obs(), float(reward), bool(terminated), truncated

    def close(self) -> None:
        pass


def minatar_tasks() -> list[Task]:
    """The five MinAtar games as tasks named ``minatar-<game>``."""
    tasks = []
    for game, (channels, actions, target, random_return) in MINATAR_GAMES.items():
        spec = TaskSpec(
            name=f"minatar-{game}",
            obs_kind="image",
            obs_shape=(channels, 10, 10),
            num_actions=actions,
            target_return=target,
            random_return=random_return,
            max_episode_steps=MAX_EPISODE_STEPS,
        )
        tasks.append(Task(spec=spec, make_env=lambda seed, g=game: MinAtarEnv(g, seed)))
    return tasks
