"""Ablations on MinAtar: MoE baseline vs + EZ-M consistency losses vs + MoW task clustering.

Every variant is the MinAtar benchmarks' MoE configuration (``common.minatar_suite``: 4 routed
experts, top-1, beside a shared one; the baseline is the very same runs as the MoE agent of
multitask.py) at the same environment budget per game; only the named option changes:

* ``moe``: the baseline;
* ``moe+consistency``: temporal consistency (SimSiam head, weight 2) and path consistency (weight 0.5);
* ``moe+clustering``: task clustering every 500 updates into at most 2 clusters, experts per cluster.

Scores are normalised per game by the random-policy return and the CPU-budget target of
``common.CPU_TARGETS`` (random 0, target 1) and capped at 1 before the mean over games, so games
weigh equally: freeway's greedy policy either never crosses or crosses 10+ times (10+ times its
target), and uncapped one freeway success would outweigh every other game. The uncapped mean
(the multitask benchmark's measure) is reported beside it.

    python benchmarks/ablations.py --seeds 0 1 --parallel 2 --steps 20000   # hours on 2 CPU cores
    python benchmarks/ablations.py --smoke --out /tmp/ablations_smoke       # tiny settings, minutes

Writes ``benchmarks/results/ablations.json`` and ``benchmarks/results/ablations.png`` and prints
the Markdown table for BENCHMARKS.md. Runs archived in ``benchmarks/results/runs`` are reused.
"""

from __future__ import annotations

import sys
from itertools import pairwise
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ARCHIVE,
    SMOKE_MODEL,
    conflict_summary,
    late_losses,
    merge,
    minatar_parser,
    minatar_suite,
    returns_by_eval,
    run_all,
    save_outputs,
    target_scores,
)

SMOKE = {
    "model": SMOKE_MODEL,
    "search": {"num_simulations": 4},
    "train": {"env_steps": 160, "learning_starts": 80, "eval_every": 160, "eval_episodes": 2, "eval_max_steps": 30, "batch_size": 4,
              "checkpoint_every": 160, "cluster_every": 5},
}  # fmt: skip


def variants(steps: int | None) -> dict[str, dict]:
    base = minatar_suite(moe=True, steps=steps)
    return {
        "moe": base,
        "moe+consistency": merge(base, {"model": {"consistency_head": True}, "train": {"temporal_consistency_weight": 2.0, "path_consistency_weight": 0.5}}),
        "moe+clustering": merge(base, {"train": {"cluster_every": 500, "num_clusters": 2}}),
    }


def cluster_history(metrics: dict) -> list[tuple[int, list[list[str]]]]:
    """(updates, partition of the games) at each re-clustering a run logged; games are named in
    suite order (task ``t`` is the t-th game of the summary's per-task step counts)."""
    games = [g.removeprefix("minatar-") for g in metrics["summary"]["env_steps_per_task"]]
    history = []
    for row in metrics["train"]:
        labels = {t: int(row[f"task{t}/cluster"]) for t in range(len(games)) if f"task{t}/cluster" in row}
        if labels:
            groups: dict[int, list[str]] = {}
            for t, c in sorted(labels.items()):
                groups.setdefault(c, []).append(games[t])
            history.append((int(row["updates"]), sorted(groups.values())))
    return history


def capped_mean(returns: dict[str, float]) -> float:
    """Mean over games of the normalised return capped at 1: one game far past its target (freeway
    crosses 10 times where its target is 1) cannot outweigh the others."""
    return float(np.mean([min(1.0, x) for x in target_scores(returns).values()]))


def normalised_curve(metrics: dict) -> list[tuple[int, float]]:
    """(env steps per game, :func:`capped_mean`) at each evaluation."""
    return [(step, capped_mean(r)) for step, r in returns_by_eval(metrics).items()]


def _sem(values: list[float]) -> float | None:
    """Standard error of the mean over seeds (None for a single seed)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None


def summarise(all_runs: dict[str, list[dict]]) -> dict:
    result: dict = {"variants": {}}
    for name, runs in all_runs.items():
        finals = [{g: r["return_mean"] for g, r in m["summary"]["final_eval"].items()} for m in runs]
        scores = [float(np.mean(list(target_scores(f).values()))) for f in finals]
        capped = [capped_mean(f) for f in finals]
        result["variants"][name] = {
            "final_returns": finals,
            "mean_normalised": scores,
            "mean_normalised_mean": float(np.mean(scores)),
            "mean_normalised_sem": _sem(scores),
            "mean_capped": capped,
            "mean_capped_mean": float(np.mean(capped)),
            "mean_capped_sem": _sem(capped),
            "wall_s": [m["summary"]["wall_s"] for m in runs],
            "clusters": [m["summary"].get("clusters") for m in runs],
            "cluster_history": [cluster_history(m) for m in runs],
            "late_losses": [late_losses(m, last=10) for m in runs],
            "conflict": [conflict_summary(m["train"]) for m in runs],
            "normalised_curves": [normalised_curve(m) for m in runs],
            "curves": [[(r["env_steps"], r["task"], r["return_mean"]) for r in m["eval"]] for m in runs],
        }
    return result


#: Gradient-conflict statistics in the table (``common.conflict_summary`` keys): clustering
#: exists to separate tasks whose gradients conflict.
CONFLICT_ROWS = {
    "conflict/backbone/mean_cosine": "task-gradient cosine, backbone",
    "conflict/backbone/fraction_negative": "task pairs with cos < 0, backbone",
    "conflict/experts/fraction_negative": "task pairs with cos < 0, routed experts",
    "conflict/experts/conflict_strength": "conflict strength, routed experts",
}


def markdown_table(result: dict) -> str:
    """The BENCHMARKS table: per game final returns, the mean normalised score, the size of the
    consistency terms late in training, gradient conflict, the clusters found and wall time;
    cells are mean (per seed)."""
    variants_ = result["variants"]
    names = list(variants_)

    def cell(values: list[float], fmt: str = "{:.2f}") -> str:
        return f"{fmt.format(np.mean(values))} ({', '.join(fmt.format(x) for x in values)})" if values else ""

    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for game in variants_[names[0]]["final_returns"][0]:
        lines.append(f"| final return, {game.removeprefix('minatar-')} | " + " | ".join(cell([f[game] for f in variants_[n]["final_returns"]]) for n in names) + " |")
    lines.append("| mean normalised return, capped at 1 per game | " + " | ".join(f"**{cell(variants_[n]['mean_capped'], '{:.3f}')}**" for n in names) + " |")
    lines.append("| mean normalised return, uncapped | " + " | ".join(cell(variants_[n]["mean_normalised"], "{:.3f}") for n in names) + " |")
    for term in ("value", "policy", "temporal_consistency", "path_consistency"):
        values = {n: [x[term] for x in variants_[n]["late_losses"] if term in x] for n in names}
        if any(values.values()):
            lines.append(f"| loss/{term}, last 10 logged updates | " + " | ".join(cell(values[n], "{:.3f}") for n in names) + " |")

    for key, label in CONFLICT_ROWS.items():
        values = {n: [c[key] for c in variants_[n]["conflict"] if key in c and not np.isnan(c[key])] for n in names}
        if any(values.values()):
            lines.append(f"| {label}, second half | " + " | ".join(cell(values[n], "{:.3f}") for n in names) + " |")

    def partitions(n: str) -> str:
        out = []
        for history in variants_[n]["cluster_history"]:
            if history:
                final = " / ".join("+".join(g) for g in history[-1][1])
                changes = sum(a[1] != b[1] for a, b in pairwise(history))
                out.append(f"{final} ({len(history)} clusterings, {changes} changes)")
        return "; ".join(out)

    if any(partitions(n) for n in names):
        lines.append("| final clusters per seed | " + " | ".join(partitions(n) for n in names) + " |")
    lines.append("| wall time per run | " + " | ".join(" / ".join(f"{w:,.0f}" for w in variants_[n]["wall_s"]) + " s" for n in names) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Final normalised returns per game and their mean, and the mean's learning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    CLIP = 1.5
    names = list(result["variants"])
    games = list(result["variants"][names[0]]["final_returns"][0])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw={"width_ratios": [3, 1, 2]})
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        v = result["variants"][name]
        xs = [x + (i - (len(names) - 1) / 2) * width for x in range(len(games))]
        norm = [[target_scores(f)[g] for g in games] for f in v["final_returns"]]
        means = np.mean(norm, axis=0)
        ax1.bar(xs, np.minimum(means, CLIP), width, label=name, color=colors[i])
        for x, m in zip(xs, means):
            if m > CLIP:  # freeway's 10+ crossings would flatten every other bar
                ax1.text(x, CLIP, f"{m:.1f}", ha="center", va="bottom", fontsize=7)
        for seed in norm:
            ax1.scatter(xs, np.minimum(seed, CLIP), color="black", s=6, zorder=3)
        ax2.bar(i, v["mean_capped_mean"], yerr=v["mean_capped_sem"] or 0, capsize=3, color=colors[i])
        for j, curve in enumerate(v["normalised_curves"]):
            x, y = zip(*curve)
            ax3.plot(x, y, color=colors[i], marker="o", markersize=3, alpha=0.8, linestyle="-" if j == 0 else "--", label=f"{name}, seed {result['seeds'][j]}")
    ax1.set_xticks(range(len(games)), [g.removeprefix("minatar-") for g in games])
    ax1.set_ylabel("normalised return (random 0, target 1)")
    ax1.set_ylim(top=CLIP * 1.12)
    ax1.set_title(f"final return per game (dots: seeds; above {CLIP}: value written)", fontsize=9)
    ax1.legend(fontsize=8)
    ax2.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax2.set_title("mean over games, capped at 1 (± s.e.)", fontsize=9)
    ax3.set_xlabel("environment steps per game")
    ax3.set_title("mean normalised return during training (capped at 1 per game)", fontsize=9)
    ax3.grid(alpha=0.3)
    ax3.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = minatar_parser(__doc__)
    parser.add_argument("--only", nargs="+", choices=list(variants(None)), help="train (and archive) only these variants; no summary")
    args = parser.parse_args()
    out = Path(args.out)
    table = variants(args.steps)
    if args.smoke:
        table = {k: merge(v, {**SMOKE, "train": {**SMOKE["train"], "cluster_every": v["train"].get("cluster_every", 0) and 5}}) for k, v in table.items()}
    archive = None if args.smoke else ARCHIVE
    jobs = [(name, table[name], seed) for seed in args.seeds for name in table]
    if args.only:
        run_all([job for job in jobs if job[0] in args.only], out, args.parallel, "ablations", archive=archive)
        print("trained; run without --only for the summary")
        return
    result = summarise(run_all(jobs, out, args.parallel, "ablations", archive=archive))
    result.update({"seeds": args.seeds, "smoke": args.smoke, "env_steps_per_game": table["moe"]["train"]["env_steps"]})
    path = save_outputs("ablations", result, plot, out if args.smoke else None)
    for n, v in result["variants"].items():
        print(f"{n:16s} mean normalised, capped {v['mean_capped_mean']:.3f} (seeds: {', '.join(f'{x:.3f}' for x in v['mean_capped'])})")
    print(markdown_table(result))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
