"""What the Mixture-of-Experts backbone costs: CPU seconds per learner update and per collection
step, dense vs MoE, on the MinAtar benchmarks' configuration (``common.minatar_suite``).

Also one layer alone, MoE (4 routed experts, top-1, shared expert) vs the dense FFN, on a
search-sized batch (80 tokens) and a learner-sized one (4,400 tokens).

One torch thread and CPU time of this process (``time.process_time``), so the figures hold
while other processes share the cores. A collection step is one batched search over every env
copy of every task (40 roots for the minatar suite) plus the env steps; at the suite's replay
ratio a collection step is followed by two updates.

    python benchmarks/moe_cost.py --repeats 5

Writes ``benchmarks/results/moe_cost.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import minatar_suite, write_result
from learner import filled_learner

from scalezero.config import config_from_dict


def cpu_seconds(fn, repeats: int, per_repeat: int) -> float:
    """Median over ``repeats`` of the mean CPU seconds of ``fn()`` over ``per_repeat`` calls."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(per_repeat):
            fn()
        times.append((time.process_time() - start) / per_repeat)
    return statistics.median(times)


def measure(moe: bool, repeats: int, per_repeat: int) -> dict:
    config = config_from_dict({**minatar_suite(moe), "suite": "minatar"})
    tasks, _, model, collector, learner = filled_learner(config, torch.device("cpu"))
    ids = list(range(len(tasks)))
    update = lambda: learner.update(learner.sample(collector.replays, ids))
    collect = lambda: collector.step(model, ids)
    for _ in range(2):
        update()
        collect()
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "update_cpu_s": cpu_seconds(update, repeats, per_repeat),
        "collect_step_cpu_s": cpu_seconds(collect, repeats, per_repeat),
        "roots_per_collect_step": sum(b.num_envs for b in collector.envs.values()),
    }


def layer_us(tokens: int, dim: int = 128, calls: int = 200) -> dict:
    """CPU microseconds per forward of one dense FFN and one MoE layer on ``tokens`` tokens."""
    from scalezero.model.moe import FeedForward, MoE

    torch.manual_seed(0)
    x = torch.randn(tokens, dim)
    out = {}
    for name, layer in (("dense", FeedForward(dim)), ("moe", MoE(dim, 4, 1, True))):
        layer.eval()
        with torch.no_grad():
            for _ in range(20):
                layer(x)
            out[name] = cpu_seconds(lambda layer=layer: layer(x), 3, calls) * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--per-repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {name: measure(name == "moe", args.repeats, args.per_repeat) for name in ("dense", "moe")}
    for name, r in results.items():
        print(f"{name:5s} {r['parameters']:>9,} params  update {r['update_cpu_s']:.3f} CPU s  collection step {r['collect_step_cpu_s']:.3f} CPU s")
    d, m = results["dense"], results["moe"]
    ratios = {key: m[key] / d[key] for key in ("update_cpu_s", "collect_step_cpu_s")}
    print(f"MoE / dense: update {ratios['update_cpu_s']:.2f}x, collection step {ratios['collect_step_cpu_s']:.2f}x")
    layers = {str(n): layer_us(n) for n in (80, 4_400)}
    for n, r in layers.items():
        print(f"one layer, {n:>5} tokens: dense FFN {r['dense']:7.0f} us, MoE {r['moe']:7.0f} us ({r['moe'] / r['dense']:.1f}x)")
    payload = {"threads": 1, "results": results, "moe_over_dense": ratios, "layer_us": layers}
    print(f"written: {write_result('moe_cost', payload)}")


if __name__ == "__main__":
    main()
