"""Throughput of the search's tree operations (no model): simulations per second.

The recurrent function only indexes arrays drawn before timing, so the figure is the cost
of selection, expansion, backup and the driver. pUCT with ``explore=True``, 50
simulations, batches of 8/64/256 roots, 18 and 6 actions, one thread on one core.
Each figure is ``B * 50 / t`` for the median ``t`` of ``--repeats`` timed searches after
a warm-up. The whole measurement is done ``--runs`` times and the best median is kept
(other processes may share the machine; the best run is the least disturbed). Prints a
table and writes ``benchmarks/results/search.json``.

Usage: ``python benchmarks/search.py [--repeats 7] [--runs 3] [--out benchmarks/results/search.json]``
"""

from __future__ import annotations

import os

# Single-threaded everything; must happen before numba/numpy spin up thread pools.
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scalezero.config import SearchConfig
from scalezero.search import Root, run_search

SIMULATIONS = 50
BATCHES = (8, 64, 256)
ACTIONS = (18, 6)
TARGETS = {18: 500_000, 6: 1_000_000}  # sims/s, for batches 64 and 256


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def measure(batch: int, actions: int, repeats: int, seed: int = 0) -> dict[str, float]:
    """Median / best seconds per search and the implied simulations per second."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(SIMULATIONS, batch)).astype(np.float32)
    values = rng.normal(size=(SIMULATIONS, batch)).astype(np.float32)
    logits = rng.normal(size=(SIMULATIONS, batch, actions)).astype(np.float32)

    def recurrent(parents: np.ndarray, acts: np.ndarray, new_node: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i = new_node - 1
        return rewards[i], values[i], logits[i]

    legal = np.ones((batch, actions), dtype=bool)
    legal[::3, -1] = False  # some masking, as in a multi-task action space
    root = Root(rng.normal(size=(batch, actions)).astype(np.float32), rng.normal(size=batch).astype(np.float32), legal)
    config = SearchConfig(algorithm="puct", num_simulations=SIMULATIONS)
    search_rng = np.random.default_rng(seed + 1)
    for _ in range(2):  # warm-up (compilation is cached on disk, this warms caches)
        run_search(root, recurrent, config, 0.997, search_rng, explore=True)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_search(root, recurrent, config, 0.997, search_rng, explore=True)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {
        "batch": batch,
        "actions": actions,
        "median_s": med,
        "best_s": min(times),
        "sims_per_s": batch * SIMULATIONS / med,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search.json")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})

    rows = []
    for a in ACTIONS:
        for b in BATCHES:
            runs = [measure(b, a, args.repeats) for _ in range(args.runs)]
            best = max(runs, key=lambda r: r["sims_per_s"])
            best["sims_per_s_all_runs"] = [r["sims_per_s"] for r in runs]
            rows.append(best)
    print(f"{'actions':>7} {'batch':>5} {'median ms':>10} {'sims/s':>12} {'target':>10}")
    for r in rows:
        target = TARGETS[r["actions"]] if r["batch"] >= 64 else None
        r["target_sims_per_s"] = target
        r["meets_target"] = None if target is None else bool(r["sims_per_s"] >= target)
        print(f"{r['actions']:>7} {r['batch']:>5} {1e3 * r['median_s']:>10.2f} {r['sims_per_s']:>12,.0f} "
              f"{'' if target is None else f'{target:,}':>10}")
    result = {
        "benchmark": "search tree operations (pUCT, explore=True, dummy recurrent)",
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "git_commit": _git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "pinned_to_one_core": hasattr(os, "sched_setaffinity"),
            "numpy": np.__version__,
            "numba": __import__("numba").__version__,
        },
        "simulations": SIMULATIONS,
        "repeats": args.repeats,
        "runs": args.runs,
        "note": "sims_per_s = batch * simulations / median seconds per search; best median of `runs` runs",
        "figures": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
