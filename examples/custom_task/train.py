"""Train the custom-task example with the Python API, then play the gridworld with the agent.

    python examples/custom_task/train.py              # train (about 6 minutes on 2 CPU cores), then play
    python examples/custom_task/train.py --random     # the random policy's return on the gridworld
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from scalezero import load_agent, train

HERE = Path(__file__).resolve().parent


def random_return(episodes: int = 2000) -> float:
    from gridworld import GridWorld

    env, rng, total = GridWorld(size=5), np.random.default_rng(0), 0.0
    for _ in range(episodes):
        env.reset(seed=int(rng.integers(1 << 30)))
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(4)))
            total += reward
            done = terminated or truncated
    return total / episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", action="store_true", help="only measure the random policy's return")
    parser.add_argument("--out", default="runs/custom-example")
    parser.add_argument("--steps", type=int, default=None, help="env steps per task (default: the suite's)")
    args = parser.parse_args()
    if args.random:
        print(f"random policy on the 5x5 gridworld: mean return {random_return():.3f} (2000 episodes)")
        return

    result = train(HERE / "suite.yaml", steps=args.steps, out=args.out)
    print({name: round(r["return_mean"], 2) for name, r in result.final_eval.items()})

    agent = load_agent(args.out)
    env = agent.make_env("gridworld", seed=123)
    obs, done, steps, total = env.reset(), False, 0, 0.0
    action = agent.act(obs, task="gridworld", new_episode=True)
    while not done:
        obs, reward, terminated, truncated = env.step(action)
        total, steps, done = total + reward, steps + 1, terminated or truncated
        if not done:
            action = agent.act(obs, task="gridworld")
    print(f"one greedy gridworld episode: return {total:.2f} in {steps} steps (the shortest path: 8 steps, return 0.93)")


if __name__ == "__main__":
    main()
