"""Gradient conflict on fixed data: dense vs MoE variants trained on one and the same replay.

In the online multi-task benchmark each agent collects its own data, so its conflict figures
mix the architecture with what it happened to play. Here every variant of the MinAtar
benchmarks' model trains on the same random-policy replay (``--fill`` steps per game, one
seed) with the same sequence of learner batches, and every ``--every`` updates each task's
gradient is taken on ``--probes`` held-out probe batches of ``--probe-batch`` windows per game
(larger than a training batch, so a cosine says more than the sampling noise of one batch).
Conflict is reported, as in training (``scalezero.training.conflict``), as the mean pairwise
cosine and the fraction of task pairs with cosine < 0, on four groups of weights:

* ``attention``: attention, norms and embeddings of the transformer (the same weights in every
  variant, so directly comparable);
* ``ffn``: the dense FFN, or the MoE's shared expert, routers and routed experts;
* ``routed``: the routed experts alone (MoE variants);
* ``all``: every transformer weight.

    python benchmarks/conflict.py --seeds 0 1 --parallel 2     # ~15 min per seed on one core
    python benchmarks/conflict.py --smoke                      # tiny settings, a minute

Writes ``benchmarks/results/conflict.json`` and ``benchmarks/results/conflict.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import merge, minatar_suite, save_outputs

#: Variant -> model settings on top of the MinAtar benchmarks' dense configuration.
VARIANTS = {
    "dense": {"moe_num_experts": 0},
    "moe (benchmark: 4 routed top-1 + shared)": {"moe_num_experts": 4, "moe_top_k": 1, "moe_shared_expert": True},
    "moe 4 routed top-1, no shared": {"moe_num_experts": 4, "moe_top_k": 1, "moe_shared_expert": False},
    "moe 8 routed top-1, no shared": {"moe_num_experts": 8, "moe_top_k": 1, "moe_shared_expert": False},
}
GROUPS = ("attention", "ffn", "routed", "all")


def parameter_groups(model) -> dict[str, list]:
    """The transformer's trainable weights in the groups of the module docstring."""
    from scalezero.model.moe import FeedForward, MoE

    ffn_ids, routed_ids = set(), set()
    for module in model.transformer.modules():
        if isinstance(module, (MoE, FeedForward)):
            ffn_ids |= {id(p) for p in module.parameters()}
        if isinstance(module, MoE):
            routed_ids |= {id(p) for p in module.experts.parameters()}
    params = [p for p in model.transformer.parameters() if p.requires_grad]
    return {
        "attention": [p for p in params if id(p) not in ffn_ids],
        "ffn": [p for p in params if id(p) in ffn_ids],
        "routed": [p for p in params if id(p) in routed_ids],
        "all": params,
    }


def measure(name: str, seed: int, args: argparse.Namespace) -> dict:
    """Train variant ``name`` on the fixed replay of ``seed``; conflict per group at every probe point."""
    import torch
    from learner import fill_random

    from scalezero.config import config_from_dict
    from scalezero.training.collector import Collector
    from scalezero.training.conflict import pairwise_conflict, per_task_gradients
    from scalezero.training.learner import Batch, Learner
    from scalezero.training.loop import build_model, resolve_tasks

    torch.set_num_threads(1)
    suite = merge(minatar_suite(moe=False), {"model": VARIANTS[name], "train": {"seed": seed, "conflict_every": 0}})
    if args.smoke:
        suite = merge(suite, {"model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "conv_channels": 8}, "train": {"batch_size": 4}})
    config = config_from_dict({k: v for k, v in suite.items() if k != "suite"})
    tasks, layout = resolve_tasks(config)
    device = torch.device("cpu")
    # The data: the same random-policy replay for every variant (same env and action seeds).
    collector = Collector(tasks, layout, config, device)
    fill_random(collector, args.fill, np.random.default_rng(1_000 + seed))
    ids = list(range(len(tasks)))
    length = config.replay.unroll_steps + config.replay.td_steps + 1
    probe_rng = np.random.default_rng(2_000 + seed)
    probe_batches = [Batch({t: collector.replays[t].sample(args.probe_batch, length, probe_rng) for t in ids}) for _ in range(args.probes)]
    torch.manual_seed(seed)
    model = build_model(config, layout, device)
    learner = Learner(model, layout, config, device)
    groups = parameter_groups(model)
    # Columns of each group in the flattened gradient over all transformer weights.
    bounds = np.cumsum([0] + [p.numel() for p in groups["all"]])
    column = {id(p): torch.arange(int(a), int(b)) for p, a, b in zip(groups["all"], bounds[:-1], bounds[1:])}
    columns = {g: torch.cat([column[id(p)] for p in ps]) for g, ps in groups.items() if ps}
    rows = []
    start = time.perf_counter()
    for step in range(args.updates + 1):
        if step % args.every == 0:
            per_group: dict[str, list] = {g: [] for g in columns}
            for probe in probe_batches:
                flat = per_task_gradients(model, learner.compute_losses(probe).task_totals, groups["all"])
                for g, values in per_group.items():
                    values.append(pairwise_conflict(flat[:, columns[g]]))
                model.zero_grad(set_to_none=True)
            row = {"updates": step}
            for g, values in per_group.items():
                for stat in values[0]._fields:
                    row[f"{g}/{stat}"] = float(np.mean([getattr(v, stat) for v in values]))
            rows.append(row)
        if step < args.updates:
            learner.update(learner.sample(collector.replays, ids))
    return {
        "variant": name,
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "group_sizes": {g: sum(p.numel() for p in ps) for g, ps in groups.items()},
        "rows": rows,
        "wall_s": round(time.perf_counter() - start, 1),
    }


def summarise(runs: list[dict], updates: int) -> dict:
    """Per variant: each group's statistics averaged over the probe points of the second half
    of training (as the online benchmark does) and over seeds, with the per-seed values."""
    out: dict = {}
    for name in VARIANTS:
        mine = [r for r in runs if r["variant"] == name]
        if not mine:
            continue
        late = [[row for row in r["rows"] if row["updates"] >= updates / 2] for r in mine]
        stats = {}
        for key in sorted({k for rows in late for row in rows for k in row if k != "updates"}):
            per_seed = [float(np.mean([row[key] for row in rows])) for rows in late]
            stats[key] = {"mean": float(np.mean(per_seed)), "per_seed": per_seed}
        out[name] = {"parameters": mine[0]["parameters"], "group_sizes": mine[0]["group_sizes"], "second_half": stats, "curves": [r["rows"] for r in mine]}
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
    for ax, group in zip(axes, ("attention", "ffn", "routed")):
        for (name, v), color in zip(result["variants"].items(), ("black", "tab:blue", "tab:orange", "tab:green")):
            key = f"{group}/fraction_negative"
            if key not in v["curves"][0][0]:
                continue
            steps = [row["updates"] for row in v["curves"][0]]
            mean = np.mean([[row[key] for row in curve] for curve in v["curves"]], axis=0)
            ax.plot(steps, mean, marker="o", markersize=3, color=color, label=name)
        ax.set_title(f"{group} weights", fontsize=9)
        ax.set_xlabel("updates on the fixed replay")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("conflicting task pairs (cos < 0)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--parallel", type=int, default=2, help="processes (one torch thread each)")
    parser.add_argument("--updates", type=int, default=400)
    parser.add_argument("--every", type=int, default=50, help="updates between probe points")
    parser.add_argument("--probes", type=int, default=2, help="probe batches per point")
    parser.add_argument("--probe-batch", type=int, default=128, help="windows per game in a probe batch")
    parser.add_argument("--fill", type=int, default=4_000, help="random-policy steps per game in the replay")
    parser.add_argument("--smoke", action="store_true", help="tiny settings to check the pipeline (results mean nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.updates, args.every, args.probes, args.probe_batch, args.fill, args.seeds = 4, 2, 1, 4, 200, [0]
    jobs = [(name, seed) for seed in args.seeds for name in VARIANTS]
    with ProcessPoolExecutor(max_workers=args.parallel) as pool:
        futures = [pool.submit(measure, name, seed, args) for name, seed in jobs]
        runs = []
        for (name, seed), future in zip(jobs, futures):
            runs.append(future.result())
            print(f"[done] {name}, seed {seed}: {runs[-1]['wall_s']:.0f} s")
    result = {"seeds": args.seeds, "settings": {k: v for k, v in vars(args).items() if k not in ("seeds", "parallel")}, "variants": summarise(runs, args.updates)}
    path = save_outputs("conflict", result, plot, Path("/tmp") if args.smoke else None)
    print("per group: conflicting pairs / mean cosine / conflict strength (mean of max(0, -cos))")
    print(f"{'variant':44s}" + "".join(f"{g:>28s}" for g in GROUPS))
    for variant, v in result["variants"].items():
        cells = []
        for g in GROUPS:
            s = v["second_half"]
            cell = f"{s[g + '/fraction_negative']['mean']:6.1%} / {s[g + '/mean_cosine']['mean']:+.3f}" if g + "/fraction_negative" in s else "-"
            cells.append(cell + (f" / {s[g + '/conflict_strength']['mean']:.3f}" if g + "/conflict_strength" in s else ""))
        print(f"{variant:44s}" + "".join(f"{c:>28s}" for c in cells))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
