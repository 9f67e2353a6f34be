"""Which task families resume exactly: every env copy rebuilt from its seed and recorded actions.

    python benchmarks/env_determinism.py            # the first two tasks of every family, minutes

For each task: 2 copies step 90 random legal actions (episodes capped at 40 steps, so several
end and reset), their state is saved (``EnvBatch.state_dict``) and loaded into a batch built
with other seeds, and both batches then take the same 20 further actions; a task is exact when
observations and rewards agree throughout. Writes ``benchmarks/results/env_determinism.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

from scalezero.tasks import EnvBatch, get_task, task_families
from scalezero.tasks.vector import EnvReplayMismatch


def _actions(task, batch: EnvBatch, rng: np.random.Generator) -> np.ndarray:
    if task.spec.continuous:
        return rng.uniform(-1.0, 1.0, (batch.num_envs, task.spec.action_dim))
    return (rng.random(batch.legal.shape) * batch.legal).argmax(axis=1)


def check(name: str, steps: int = 90, after: int = 20) -> dict:
    task = get_task(name)
    start = time.perf_counter()
    batch = EnvBatch(task, 2, seed=5, max_episode_steps=40)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        batch.step(_actions(task, batch, rng))
    twin = EnvBatch(task, 2, seed=77, max_episode_steps=40)
    try:
        twin.load_state_dict(batch.state_dict())
    except EnvReplayMismatch as exc:
        return {"exact": False, "reason": str(exc), "seconds": round(time.perf_counter() - start, 1)}
    same = True
    for _ in range(after):
        actions = _actions(task, batch, rng)
        x, y = batch.step(actions), twin.step(actions)
        same &= bool(np.array_equal(x.obs, y.obs) and np.array_equal(x.reward, y.reward))
    return {"exact": same, "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-family", type=int, default=2, help="tasks checked per family")
    args = parser.parse_args()
    results = {}
    for family, names in task_families().items():
        for name in names[: args.per_family]:
            try:
                results[name] = {"family": family, **check(name)}
            except ImportError as exc:  # a family whose optional dependency is not installed
                results[name] = {"family": family, "exact": None, "reason": f"not installed: {exc}"}
            r = results[name]
            print(f"{family:8s} {name:28s} {'exact' if r['exact'] else r.get('reason', 'DIVERGES')} ({r.get('seconds', '-')} s)", flush=True)
    print("wrote", write_result("env_determinism", {"tasks": results}))


if __name__ == "__main__":
    main()
