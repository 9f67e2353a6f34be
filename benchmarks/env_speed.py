"""Environment speed per task family: agent steps per CPU second of one env copy.

Uniform random legal actions (the per-step legal set where the env has one), resets included,
one process, one torch thread. Figures are per CPU second of this process, so they hold even
when other processes share the cores; the wall-clock rate is recorded beside them.

    python benchmarks/env_speed.py                      # one task per installed family
    python benchmarks/env_speed.py --tasks atari-pong dmc-walker-walk --steps 5000

Writes ``benchmarks/results/env_speed.json``. Families whose package is missing are skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import write_result

DEFAULT_TASKS = [
    "cartpole", "minatar-breakout", "minatar-seaquest", "atari-pong", "atari-pong-rgb96",
    "dmc-cartpole-balance", "dmc-walker-walk", "mw-reach-v3", "mw-pick-place-v3", "textworld-easy", "textworld-expert",
]  # fmt: skip


def measure(name: str, steps: int, seed: int = 0) -> dict:
    """Steps per CPU second and per wall second of one copy of ``name`` under random actions."""
    from scalezero.tasks import get_task

    task = get_task(name)
    spec, env, rng = task.spec, task.make_env(seed), np.random.default_rng(seed)
    static = np.array(spec.legal_actions if spec.legal_actions is not None else range(max(spec.num_actions, 1)))
    env.reset()
    episodes = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        if spec.action_dim:
            action = rng.uniform(-1.0, 1.0, spec.action_dim).astype(np.float32)
        else:
            legal = np.flatnonzero(env.legal_actions()) if hasattr(env, "legal_actions") else static
            action = int(rng.choice(legal))
        _, _, terminated, truncated = env.step(action)
        if terminated or truncated:
            env.reset()
            episodes += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if hasattr(env, "close"):
        env.close()
    return {"steps": steps, "episodes": episodes, "steps_per_cpu_s": steps / max(cpu, 1e-9), "steps_per_wall_s": steps / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    parser.add_argument("--steps", type=int, default=3_000, help="agent steps per task")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from scalezero.tasks.dmc import configure_headless_gl

    configure_headless_gl()
    results, skipped = {}, {}
    for name in args.tasks:
        try:
            results[name] = measure(name, args.steps)
        except ImportError as exc:
            skipped[name] = str(exc)
            print(f"{name:24s} skipped: {exc}", flush=True)
            continue
        r = results[name]
        print(f"{name:24s} {r['steps_per_cpu_s']:8.0f} steps/CPU-s  {r['steps_per_wall_s']:8.0f} steps/wall-s  ({r['episodes']} episodes)", flush=True)
    path = write_result("env_speed", {"steps": args.steps, "tasks": results, "skipped": skipped})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
