"""Random valid-action baseline: uniformly random *legal* commands until the episode ends.

    python -m scalezero.tasks.text.baseline --episodes 2000

prints the mean return per text task; these are the figures in ``TEXT_GAMES`` (the
``random_return`` of each task's spec).
"""

from __future__ import annotations

import argparse

import numpy as np

from scalezero.tasks.text.env import TextGameEnv
from scalezero.tasks.text.world import Game


def random_legal_return(game: Game, episodes: int, seed: int = 0) -> float:
    """Mean return of ``episodes`` episodes of ``game`` played with uniformly random legal
    commands (each episode runs to its win or its step cap)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    rng = np.random.default_rng(seed)
    env = TextGameEnv(game, seed)
    total = 0.0
    for _ in range(episodes):
        env.reset()
        done = False
        while not done:
            legal = np.flatnonzero(env.legal_actions())
            _, reward, terminated, truncated = env.step(int(legal[rng.integers(len(legal))]))
            total += reward
            done = terminated or truncated
    return total / episodes


def random_legal_returns(episodes: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean random-legal-policy return of every text task, keyed by task name."""
    from scalezero.tasks.text import suite_games

    return {name: random_legal_return(game, episodes, seed) for name, game in suite_games().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="Mean return of uniformly random legal commands on the text games.")
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, value in random_legal_returns(args.episodes, args.seed).items():
        print(f"{name:14s} {value:.3f}  ({args.episodes} episodes)")


if __name__ == "__main__":
    main()
