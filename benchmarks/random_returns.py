"""Returns of a uniformly random policy (legal actions only) under the evaluation protocol.

Same env copies, seeds and episode cap (``train.eval_max_steps``, or the task's own limit) as ``scalezero``'s
evaluator, so the agent's evaluation returns can be compared with these directly.

    python benchmarks/random_returns.py --suite minatar --episodes 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

from scalezero.config import load_suite
from scalezero.training.evaluator import eval_episode_cap, random_policy_returns
from scalezero.training.loop import resolve_tasks


def random_returns(suite: str, episodes: int, seed: int) -> dict[str, dict[str, float]]:
    config = load_suite(suite)
    tasks, _ = resolve_tasks(config)
    out = {}
    for t, task in enumerate(tasks):
        cap = eval_episode_cap(task, config.train.eval_max_steps)
        returns = random_policy_returns(task, episodes, cap, seed=seed + 1_000 * t)
        out[task.spec.name] = {"return_mean": float(returns.mean()), "return_std": float(returns.std()), "episodes": episodes}
        print(f"{task.spec.name:28s} {returns.mean():8.3f} ± {returns.std():.3f}  ({episodes} episodes)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="minatar")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()
    results = random_returns(args.suite, args.episodes, args.seed)
    path = write_result(f"random_{args.suite}", {"suite": args.suite, "returns": results})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
