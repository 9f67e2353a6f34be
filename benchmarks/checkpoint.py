"""Checkpoint size and write/restore time for a suite, with every task's replay full.

Replays are filled with random-policy data up to ``replay.capacity_per_task`` (the largest a
checkpoint of that suite gets); the timing covers the whole ``save_run`` (tensors, compressed
replay, JSON, fsyncs, rename) and ``restore_run``. Median of repeats.

    python benchmarks/checkpoint.py --suite minatar
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result
from learner import filled_learner

from scalezero.config import load_suite
from scalezero.training.collector import Collector
from scalezero.training.learner import Learner
from scalezero.training.loop import build_model
from scalezero.training.metrics import MetricsLogger
from scalezero.training.run_state import LoopState, restore_run, save_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="minatar")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = load_suite(args.suite)
    device = torch.device("cpu")
    tasks, layout, _, collector, learner = filled_learner(config, device, steps=config.replay.capacity_per_task)
    learner.update(learner.sample(collector.replays, list(range(len(tasks)))))  # optimiser moments exist
    loop = LoopState(clock=1000.0, recent_returns={t: [] for t in range(len(tasks))})
    root = Path(tempfile.mkdtemp(prefix="scalezero-ckpt-"))
    logger = MetricsLogger(root / "probe", [t.spec.name for t in tasks])
    writes, reads, size = [], [], 0
    try:
        for _ in range(args.repeats):
            start = time.perf_counter()
            path = save_run(root, learner, collector, loop, None, logger, 0.0, keep=1)
            writes.append(time.perf_counter() - start)
            size = sum(f.stat().st_size for f in path.iterdir())
            fresh = Collector(tasks, layout, config, device)
            start = time.perf_counter()
            restore_run(path, Learner(build_model(config, layout, device), layout, config, device), fresh, None, logger)
            reads.append(time.perf_counter() - start)
        files = {f.name: f.stat().st_size for f in path.iterdir()}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    replay_steps = sum(len(r) for r in collector.replays.values())
    result = {
        "suite": args.suite,
        "replay_steps_stored": replay_steps,
        "size_bytes": size,
        "files_bytes": files,
        "write_s_median": statistics.median(writes),
        "restore_s_median": statistics.median(reads),
        "repeats": args.repeats,
    }
    path = write_result(f"checkpoint_{args.suite}", result)
    print(f"{args.suite}: {size / 1e6:.1f} MB ({', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in files.items())}), "
          f"{replay_steps:,} replay steps; write {result['write_s_median']:.2f} s, restore {result['restore_s_median']:.2f} s (median of {args.repeats})")  # fmt: skip
    print(f"written: {path}")


if __name__ == "__main__":
    main()
