"""MinAtar suite benchmark: one model on five games against a uniformly random policy.

Trains ``scalezero train --suite minatar`` (what ``make demo`` runs), or reads a finished run
with ``--run``, then measures the random policy under the same evaluation protocol and
writes per-game returns, standard errors and the difference in standard errors.

    python benchmarks/minatar_suite.py --run runs/demo           # score an existing run
    python benchmarks/minatar_suite.py --out runs/minatar_bench  # train, then score
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result
from random_returns import random_returns


def _sem(r: dict) -> float:
    return r["return_std"] / max(1.0, float(r["episodes"])) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="score this finished run instead of training")
    parser.add_argument("--out", default="runs/minatar_bench", help="run directory when training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-episodes", type=int, default=100)
    args = parser.parse_args()
    if args.run:
        run = Path(args.run)
    else:
        from scalezero.config import load_suite, with_overrides
        from scalezero.training.loop import train

        run = Path(args.out)
        start = time.perf_counter()
        train(with_overrides(load_suite("minatar"), "train", seed=args.seed), run)
        print(f"trained in {time.perf_counter() - start:.0f} s")
    metrics = json.loads((run / "metrics.json").read_text())
    summary = metrics["summary"]
    print("random policy, same protocol:")
    rnd = random_returns("minatar", args.random_episodes, seed=12345)
    rows = []
    print(f"\n{'game':24s} {'agent':>16s} {'random':>16s} {'(a-r)/se':>9s}")
    for game, agent in summary["final_eval"].items():
        base = rnd[game]
        z = (agent["return_mean"] - base["return_mean"]) / max(1e-9, (_sem(agent) ** 2 + _sem(base) ** 2) ** 0.5)
        rows.append({"game": game, "agent": agent, "random": base, "difference_in_standard_errors": z})
        print(
            f"{game:24s} {agent['return_mean']:7.2f} ± {_sem(agent):5.2f} {base['return_mean']:7.2f} ± {_sem(base):5.2f} {z:9.1f}"
        )
    path = write_result(
        "minatar",
        {"run": str(run), "summary": summary, "eval_history": metrics["eval"], "games": rows},
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
