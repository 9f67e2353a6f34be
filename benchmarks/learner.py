"""Learner throughput: updates per second at a suite's default batch size (CPU threads as given).

Replays are filled with random-policy data; the timing covers sampling, target computation,
forward, backward, the AdamW step and the target EMA. Median of repeats after warm-up.

Beside it, in the same process, the machine's limit for this exact work: every matrix product,
convolution and fused-attention call of one update (forward and backward) is recorded with its
shapes and timed alone (``op_ceiling.py``). Achieved FLOP/s is the update's FLOPs over its
measured time; the ceiling is the same FLOPs over the sum of those isolated times.

    python benchmarks/learner.py --suite minatar --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result
from op_ceiling import record, replay

from scalezero.config import Config, load_suite
from scalezero.model import WorldModel
from scalezero.tasks import SuiteLayout, Task
from scalezero.training.collector import Collector
from scalezero.training.learner import Learner
from scalezero.training.loop import build_model, resolve_tasks


def fill_random(collector: Collector, steps: int, rng: np.random.Generator) -> None:
    """Random-policy data in every task's replay (uniform policy targets, zero root values)."""
    for tid, batch in collector.envs.items():
        n_actions = batch.task.spec.num_actions
        policy = np.zeros((batch.num_envs, collector.layout.num_actions), np.float32)
        policy[:, :n_actions] = 1.0 / n_actions
        for _ in range(steps // batch.num_envs):
            obs = batch.obs
            actions = rng.integers(0, n_actions, batch.num_envs)
            step = batch.step(actions)
            replay = collector.replays[tid]
            replay.add_steps(obs, actions, step.reward, policy, np.zeros(batch.num_envs, np.float32))
            done = np.nonzero(step.done)[0]
            replay.add_finals(done, step.final_obs[done], step.terminated[done])


class FilledLearner(NamedTuple):
    """What the learner benchmarks start from: a fresh model and learner, and replays already
    holding random-policy data."""

    tasks: list[Task]
    layout: SuiteLayout
    model: WorldModel
    collector: Collector
    learner: Learner


def filled_learner(config: Config, device: torch.device, steps: int = 2_000, seed: int = 0, task_ids: list[int] | None = None) -> FilledLearner:
    """Build ``config``'s model, collector (``task_ids``, default all) and learner, and put
    ``steps`` random-policy steps per task into the replays (actions drawn with ``seed``)."""
    tasks, layout = resolve_tasks(config)
    model = build_model(config, layout, device)
    collector = Collector(tasks, layout, config, device, task_ids=task_ids)
    fill_random(collector, steps, np.random.default_rng(seed))
    return FilledLearner(tasks, layout, model, collector, Learner(model, layout, config, device))


def measure(suite: str, threads: int, repeats: int, per_repeat: int) -> dict:
    torch.set_num_threads(threads)
    config = load_suite(suite)
    tasks, _, model, collector, learner = filled_learner(config, torch.device("cpu"))
    ids = list(range(len(tasks)))
    for _ in range(3):
        learner.update(learner.sample(collector.replays, ids))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_repeat):
            learner.update(learner.sample(collector.replays, ids))
        times.append((time.perf_counter() - start) / per_repeat)
    median = statistics.median(times)
    ceiling = replay(record(lambda: learner.update(learner.sample(collector.replays, ids))))
    achieved = ceiling.flops / median
    return {
        "suite": suite,
        "threads": threads,
        "tasks": len(tasks),
        "batch_per_task": config.train.batch_size,
        "unroll_steps": config.replay.unroll_steps,
        "embed_dim": config.model.embed_dim,
        "num_layers": config.model.num_layers,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds_per_update_median": median,
        "updates_per_s": 1.0 / median,
        "repeats": repeats,
        "updates_per_repeat": per_repeat,
        "flops_per_update": ceiling.flops,
        "achieved_flops_per_s": achieved,
        "ceiling_flops_per_s": ceiling.flops_per_s,
        "fraction_of_ceiling": achieved / ceiling.flops_per_s,
        "heavy_ops_isolated_s": ceiling.seconds,
        "heavy_op_calls": ceiling.calls,
        "by_op": ceiling.by_op,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", nargs="+", default=["cartpole", "minatar"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--per-repeat", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for suite in args.suite:
        r = measure(suite, args.threads, args.repeats, args.per_repeat)
        rows.append(r)
        print(
            f"{suite:10s} tasks={r['tasks']} batch={r['batch_per_task']}/task width={r['embed_dim']} "
            f"params={r['parameters']:,}: {r['updates_per_s']:.2f} updates/s ({1000 * r['seconds_per_update_median']:.0f} ms/update), "
            f"{r['flops_per_update'] / 1e9:.2f} GFLOP/update, {r['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s achieved "
            f"against a ceiling of {r['ceiling_flops_per_s'] / 1e9:.1f} for the same ops alone ({100 * r['fraction_of_ceiling']:.0f}%)"
        )
    path = write_result("learner", {"results": rows})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
