"""Multi-task benchmark on MinAtar: single-task agents vs one dense vs one MoE multi-task agent.

Same environment-step budget per game for every agent, several seeds. Each training run is a
``scalezero train`` process with its own run directory; runs that already finished (their
``metrics.json`` exists) are skipped, so the benchmark can be resumed after an interruption.
Runs go ``--parallel`` at a time with one torch thread each.

    python benchmarks/multitask.py --seeds 0 1 --parallel 2 --steps 20000   # hours on 2 CPU cores
    python benchmarks/multitask.py --smoke --out /tmp/mt_smoke         # tiny settings, minutes

Writes ``benchmarks/results/multitask.json`` and ``benchmarks/results/multitask.png``: per-game
returns, the mean score normalised by the single-task return of each game, parameter counts,
wall times, and gradient-conflict statistics of the dense vs the MoE agent.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ARCHIVE,
    SMOKE_MODEL,
    conflict_summary,
    merge,
    minatar_parser,
    minatar_suite,
    run_all,
    save_outputs,
    target_scores,
)

SMOKE = {
    "model": SMOKE_MODEL,
    "search": {"num_simulations": 4},
    "train": {"env_steps": 160, "learning_starts": 80, "eval_every": 160, "eval_episodes": 2, "eval_max_steps": 30, "batch_size": 4, "checkpoint_every": 160},
}


def variants(steps: int | None) -> dict[str, dict]:
    """Name -> suite. Single-task agents use the dense multi-task settings with one game."""
    dense = minatar_suite(moe=False, steps=steps)
    alone = {**dense, "train": {**dense["train"], "conflict_every": 0}}  # one task: nothing to conflict with
    out = {f"single-{t['name'].removeprefix('minatar-')}": {**alone, "tasks": [t]} for t in dense["tasks"]}
    out["dense"] = dense
    out["moe"] = minatar_suite(moe=True, steps=steps)
    return out


def _routing_summary(train_rows: list[dict]) -> dict | None:
    """MoE routing over the second half of training: each task's fraction of tokens per expert
    and layer (``load[task][layer]``), and the mean over layers and task pairs of the routing
    overlap ``sum_e min(p_i(e), p_j(e))`` (1: two tasks use the experts alike; 0: disjoint)."""
    rows = [r for r in train_rows if any("/moe/" in k for k in r)]
    rows = rows[len(rows) // 2 :]
    if not rows:
        return None
    load: dict[str, dict[str, list[float]]] = {}
    for key in sorted({k for r in rows for k in r if "/moe/" in k}):
        task, _, layer, expert = key.split("/")
        value = float(np.mean([r[key] for r in rows if key in r]))
        load.setdefault(task, {}).setdefault(layer, []).append((int(expert.removeprefix("expert")), value))
    load = {t: {layer: [v for _, v in sorted(pairs)] for layer, pairs in layers.items()} for t, layers in load.items()}
    tasks = sorted(load)
    overlaps = [
        float(np.minimum(load[a][layer], load[b][layer]).sum())
        for i, a in enumerate(tasks) for b in tasks[i + 1 :] for layer in load[a]
    ]
    return {"load": load, "overlap": float(np.mean(overlaps)) if overlaps else math.nan}


def summarise(runs: dict[str, list[dict]], previous: dict | None = None) -> dict:
    """Per-variant returns, parameters, wall times and conflict statistics of the runs, plus
    the seeds of ``previous`` (an earlier ``multitask.json`` whose runs were not archived)
    placed before them; then the table normalised by the single-task returns."""
    per_variant: dict[str, dict] = {}
    for name, summaries in runs.items():
        returns: dict[str, list[float]] = {}
        for m in summaries:
            for game, r in m["summary"]["final_eval"].items():
                returns.setdefault(game, []).append(r["return_mean"])
        per_variant[name] = {
            "returns": returns,
            "parameters": summaries[0]["summary"]["parameters"],
            "wall_s": [m["summary"]["wall_s"] for m in summaries],
            "conflict": [conflict_summary(m["train"]) for m in summaries],
            "routing": [_routing_summary(m["train"]) for m in summaries],
        }
    if previous is not None:
        for name, d in per_variant.items():
            old = previous["variants"][name]
            if old["parameters"] != d["parameters"]:
                raise ValueError(f"{name}: the previous result has {old['parameters']} parameters, these runs {d['parameters']}: not the same agent")
            d["returns"] = {g: old["returns"][g] + v for g, v in d["returns"].items()}
            d["wall_s"] = old["wall_s"] + d["wall_s"]
            d["conflict"] = old["conflict"] + d["conflict"]
            d["routing"] = old.get("routing", [None] * len(old["wall_s"])) + d["routing"]
    return {"variants": per_variant, "normalised_by_single_task": normalised_table(per_variant)}


def _single_task_returns(per_variant: dict[str, dict]) -> dict[str, list[float]]:
    """Game -> per-seed returns of the single-task agent of that game."""
    return {g: v for n, d in per_variant.items() if n.startswith("single-") for g, v in d["returns"].items()}


def normalised_table(per_variant: dict[str, dict]) -> dict:
    """Per agent (single-task, dense, MoE), from the returns averaged over seeds: each game's
    return divided by the single-task return (the headline aggregate: mean, and the median,
    which a near-zero single-task return cannot dominate), and each game on the random -> CPU
    target scale of :func:`common.target_scores`."""
    from scalezero.tasks import get_task

    single = _single_task_returns(per_variant)
    table = {}
    for name, returns in (("single", single), ("dense", per_variant["dense"]["returns"]), ("moe", per_variant["moe"]["returns"])):
        means = {g: float(np.mean(v)) for g, v in returns.items()}
        norm = {g: r / float(np.mean(single[g])) for g, r in means.items() if np.mean(single[g]) != 0}
        scaled = target_scores(means)
        # Games the single-task agent learned at all: a ratio to a return at or below random means nothing.
        learned = [g for g in norm if np.mean(single[g]) > (get_task(g).spec.random_return or 0.0)]
        table[name] = {
            "normalised": norm,
            "mean_normalised": float(np.mean(list(norm.values()))) if norm else math.nan,
            "median_normalised": float(np.median(list(norm.values()))) if norm else math.nan,
            "games_single_task_learned": learned,
            "mean_normalised_where_single_task_learned": float(np.mean([norm[g] for g in learned])) if learned else math.nan,
            "target_scaled": scaled,
            "mean_target_scaled": float(np.mean(list(scaled.values()))),
        }
    return table


def markdown_table(result: dict) -> str:
    """The result as the Markdown table of BENCHMARKS.md (means over seeds; seeds in brackets)."""
    from scalezero.tasks import get_task

    v, table = result["variants"], result["normalised_by_single_task"]
    games = list(v["dense"]["returns"])
    single = _single_task_returns(v)

    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.2f} ({', '.join(f'{x:.2f}' for x in values)})"

    def seconds(values: list[float]) -> str:
        return " / ".join(f"{x:,.0f}" for x in values) + " s"

    lines = ["| game | random | (a) single-task | (b) dense multi-task | (c) MoE multi-task |", "|---|---|---|---|---|"]
    for g in games:
        rnd = get_task(g).spec.random_return or 0.0
        lines.append(f"| {g.removeprefix('minatar-')} | {rnd:.2f} | {cell(single[g])} | {cell(v['dense']['returns'][g])} | {cell(v['moe']['returns'][g])} |")
    for label, key in (("mean of return / single-task return", "mean_normalised"), ("median of return / single-task return", "median_normalised"), ("mean of return / single-task return, games the single-task agent learned (beat random)", "mean_normalised_where_single_task_learned"), ("mean of (return - random) / (CPU target - random)", "mean_target_scaled")):
        lines.append(f"| {label} | | {table['single'][key]:.2f} | {table['dense'][key]:.2f} | {table['moe'][key]:.2f} |")
    singles = [d for n, d in v.items() if n.startswith("single-")]
    lines.append(f"| parameters | | {min(d['parameters'] for d in singles):,}-{max(d['parameters'] for d in singles):,} each | {v['dense']['parameters']:,} | {v['moe']['parameters']:,} |")
    walls = [w for d in singles for w in d["wall_s"]]
    lines.append(f"| wall time per run (per seed) | | {min(walls):,.0f}-{max(walls):,.0f} s | {seconds(v['dense']['wall_s'])} | {seconds(v['moe']['wall_s'])} |")
    for group in ("all", "backbone", "experts"):
        for stat, fmt in (("fraction_negative", "{:.1%}"), ("mean_cosine", "{:.3f}")):
            key = f"conflict/{group}/{stat}"
            cells = []
            for name in ("dense", "moe"):
                values = [c[key] for c in v[name]["conflict"] if key in c]
                cells.append(f"{fmt.format(np.mean(values))} ({', '.join(fmt.format(x) for x in values)})" if values else "")
            label = "conflicting gradient pairs" if stat == "fraction_negative" else "mean pairwise cosine"
            lines.append(f"| {label} (2nd half), {group} | | | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants_ = result["variants"]
    games = list(variants_["dense"]["returns"])
    single = _single_task_returns(variants_)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.27
    for i, (label, source) in enumerate([("single-task", single), ("dense multi-task", variants_["dense"]["returns"]), ("MoE multi-task", variants_["moe"]["returns"])]):
        means = [sum(source[g]) / len(source[g]) for g in games]
        ax.bar([x + (i - 1) * width for x in range(len(games))], means, width, label=label)
        for x, g in enumerate(games):
            ax.scatter([x + (i - 1) * width] * len(source[g]), source[g], color="black", s=8, zorder=3)
    ax.set_xticks(range(len(games)), [g.removeprefix("minatar-") for g in games])
    ax.set_ylabel("final greedy eval return")
    ax.legend(fontsize=8)
    ax.set_title("same env steps per game; bars = mean over seeds, dots = seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = minatar_parser(__doc__)
    parser.add_argument("--previous", type=Path, help="an earlier multitask.json whose seeds (not among --seeds) are added to the result")
    args = parser.parse_args()
    out = Path(args.out)
    table = variants(args.steps)
    previous = json.loads(args.previous.read_text()) if args.previous else None
    if previous is not None and set(previous["seeds"]) & set(args.seeds):
        parser.error(f"--previous already holds seeds {sorted(set(previous['seeds']) & set(args.seeds))}; leave them out of --seeds")
    if args.smoke:
        table = {k: merge(v, SMOKE) for k, v in table.items()}
    # Longest runs first within each seed, so the parallel slots finish close together.
    order = sorted(table, key=lambda n: n.startswith("single-"))
    archive = None if args.smoke else ARCHIVE
    jobs = [(name, table[name], seed) for seed in args.seeds for name in order]
    result = summarise(run_all(jobs, out, args.parallel, "multitask benchmark", archive=archive), previous)
    seeds = (previous["seeds"] if previous else []) + args.seeds
    result.update({"seeds": seeds, "previous": {"commit": previous["commit"], "command": previous["command"]} if previous else None, "smoke": args.smoke, "moe_experts": table["moe"]["model"]["moe_num_experts"], "env_steps_per_game": next(iter(table.values()))["train"]["env_steps"]})
    path = save_outputs("multitask", result, plot, out if args.smoke else None)
    for variant, row in result["normalised_by_single_task"].items():
        print(f"{variant:6s} mean normalised score {row['mean_normalised']:.3f} (median {row['median_normalised']:.3f}, target-scaled {row['mean_target_scaled']:.3f})  " + "  ".join(f"{g.removeprefix('minatar-')} {v:.2f}" for g, v in row["normalised"].items()))
    print(markdown_table(result))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
