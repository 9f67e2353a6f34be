"""Ablations on MinAtar: MoE baseline vs + EZ-M consistency losses vs + MoW task clustering.

Every variant is the MinAtar benchmarks' MoE configuration (``common.minatar_suite``: 4 routed
experts, top-1, beside a shared one; the baseline is the very same runs as the MoE agent of
multitask.py) at the same environment budget per game; only the named option changes:

* ``moe``: the baseline;
* ``moe+consistency``: temporal consistency (SimSiam head, weight 2) and path consistency (weight 0.5);
* ``moe+clustering``: task clustering every 500 updates into at most 2 clusters, experts per cluster.

Scores are normalised per game by the random-policy return and the CPU-budget target of
``common.CPU_TARGETS`` (random 0, target 1), so games weigh equally.

    python benchmarks/ablations.py --seeds 0 1 --parallel 2 --steps 20000   # hours on 2 CPU cores
    python benchmarks/ablations.py --smoke --out /tmp/ablations_smoke       # tiny settings, minutes

Writes ``benchmarks/results/ablations.json`` and ``benchmarks/results/ablations.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ARCHIVE, merge, minatar_suite, run_all, save_outputs, target_scores

SMOKE = {
    "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8},
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


def summarise(all_runs: dict[str, list[dict]]) -> dict:
    result: dict = {"variants": {}}
    for name, runs in all_runs.items():
        finals = [{g: r["return_mean"] for g, r in m["summary"]["final_eval"].items()} for m in runs]
        scores = [float(np.mean(list(target_scores(f).values()))) for f in finals]
        result["variants"][name] = {
            "final_returns": finals,
            "mean_normalised": scores,
            "mean_normalised_mean": float(np.mean(scores)),
            "mean_normalised_sem": float(np.std(scores, ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else None,
            "wall_s": [m["summary"]["wall_s"] for m in runs],
            "clusters": [m["summary"].get("clusters") for m in runs],
            "curves": [[(r["env_steps"], r["task"], r["return_mean"]) for r in m["eval"]] for m in runs],
        }
    return result


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["variants"])
    games = list(result["variants"][names[0]]["final_returns"][0])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        finals = result["variants"][name]["final_returns"]
        norm = [[target_scores(f)[g] for g in games] for f in finals]
        ax1.bar([x + (i - (len(names) - 1) / 2) * width for x in range(len(games))], np.mean(norm, axis=0), width, label=name)
        for seed in norm:
            ax1.scatter([x + (i - (len(names) - 1) / 2) * width for x in range(len(games))], seed, color="black", s=6, zorder=3)
        v = result["variants"][name]
        ax2.bar(i, v["mean_normalised_mean"], yerr=v["mean_normalised_sem"] or 0, capsize=3)
    ax1.set_xticks(range(len(games)), [g.removeprefix("minatar-") for g in games])
    ax1.set_ylabel("normalised return (random 0, target 1)")
    ax1.legend(fontsize=8)
    ax2.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax2.set_title("mean over games (± s.e. over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per game")
    parser.add_argument("--out", default="runs/minatar_bench", help="run directories (shared with multitask.py and dps.py)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings to check the pipeline (results mean nothing)")
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
        print(f"{n:16s} mean normalised {v['mean_normalised_mean']:.3f} (seeds: {', '.join(f'{x:.3f}' for x in v['mean_normalised'])})")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
