"""Dynamic Parameter Scaling on MinAtar: plain MoE multi-task vs MoE + DPS, same budget per game.

Both agents are the MinAtar benchmarks' MoE configuration (``common.minatar_suite``; the plain
agent is the very same runs as the MoE agent of multitask.py); the DPS agent adds LoRA stages
and the DPS controller. Each game gets a target return that a multi-task agent reaches within
the CPU budget (``common.CPU_TARGETS``), so solved games leave training and save environment
steps.

The score of a run at an evaluation is the mean over games of ``(return - random) / (target -
random)`` capped at 1. Seeds are averaged evaluation by evaluation (score and total steps).
The reference score S* is the plain agent's final mean score; the benchmark reports, for each
agent, the total environment steps (all games) its seed-averaged curve has spent when it
first reaches S*, and the final scores at equal per-game budget.

    python benchmarks/dps.py --seeds 0 1 --parallel 2 --steps 20000     # hours on 2 CPU cores
    python benchmarks/dps.py --smoke --out /tmp/dps_smoke                # tiny settings, minutes

Writes ``benchmarks/results/dps.json`` and ``benchmarks/results/dps.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ARCHIVE, merge, minatar_suite, run_all, save_outputs
from common import CPU_TARGETS as TARGETS

SMOKE = {
    "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8},
    "search": {"num_simulations": 4},
    "train": {"env_steps": 200, "learning_starts": 80, "eval_every": 100, "eval_episodes": 2, "eval_max_steps": 30, "batch_size": 4, "checkpoint_every": 200},
    "dps": {"min_stage0_updates": 10, "max_stage_updates": 10},
}


def variants(steps: int | None) -> dict[str, dict]:
    base = minatar_suite(moe=True, steps=steps)
    updates = int(base["train"]["replay_ratio"] * (base["train"]["env_steps"] - base["train"]["learning_starts"]))
    dps = merge(
        {**base, "tasks": [{"name": t["name"], "target_return": TARGETS[t["name"]]} for t in base["tasks"]]},
        {
            "model": {"lora_stages": 4, "lora_rank": 8, "lora_alpha": 16.0},
            # Stage 0 runs at least a fifth of the updates and ends by the time limit after two
            # fifths (the clock starts after the minimum); each later stage at most a fifth.
            "dps": {"enabled": True, "min_stage0_updates": updates // 5, "max_stage_updates": updates // 5},
        },
    )
    return {"moe": base, "moe-dps": dps}


def score_curve(metrics: dict, specs: dict[str, tuple[float, float]]) -> list[tuple[int, float]]:
    """(total env steps, mean capped normalised score) at each evaluation of a run."""
    by_step: dict[int, dict[str, float]] = {}
    totals: dict[int, int] = {}
    for row in metrics["eval"]:
        by_step.setdefault(row["env_steps"], {})[row["task"]] = row["return_mean"]
        totals[row["env_steps"]] = row.get("env_steps_total") or row["env_steps"] * len(specs)
    curve = []
    for step in sorted(by_step):
        scores = [min(1.0, (r - specs[g][0]) / (specs[g][1] - specs[g][0])) for g, r in by_step[step].items()]
        curve.append((totals[step], float(np.mean(scores))))
    return curve


def oracle_curve(metrics: dict, specs: dict[str, tuple[float, float]]) -> list[tuple[int, float]]:
    """A perfect solve-and-leave agent replayed on a plain run: the bound on what DPS can save.

    Each game leaves training at the first evaluation where the plain run reached its target and
    counts as solved (score 1) from then on; the other games are assumed to learn exactly as in
    the plain run. Returns (total env steps, mean capped score) at each evaluation, so the
    savings it shows are the most that stopping solved games can give at this budget and
    evaluation spacing, whatever the stage schedule.
    """
    by_step: dict[int, dict[str, float]] = {}
    for row in metrics["eval"]:
        by_step.setdefault(row["env_steps"], {})[row["task"]] = row["return_mean"]
    solved: set[str] = set()
    total, previous, curve = 0, 0, []
    for step in sorted(by_step):
        total += (step - previous) * (len(specs) - len(solved))
        previous = step
        scores = [1.0 if g in solved else min(1.0, (r - specs[g][0]) / (specs[g][1] - specs[g][0])) for g, r in by_step[step].items()]
        curve.append((total, float(np.mean(scores))))
        solved |= {g for g, r in by_step[step].items() if r >= specs[g][1]}
    return curve


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[float, float]]:
    """Seeds averaged evaluation by evaluation: (mean total env steps, mean score)."""
    n = min(len(c) for c in curves)
    return [(float(np.mean([c[i][0] for c in curves])), float(np.mean([c[i][1] for c in curves]))) for i in range(n)]


def summarise(runs: dict[str, list[dict]], specs: dict[str, tuple[float, float]] | None = None) -> dict:
    """Curves, steps to S* and final figures; ``specs`` maps game -> (random return, target)."""
    if specs is None:
        from scalezero.tasks import get_task

        specs = {g: (get_task(g).spec.random_return or 0.0, t) for g, t in TARGETS.items()}
    names = list(runs)
    curves = {n: [score_curve(m, specs) for m in ms] for n, ms in runs.items()}
    reference = float(np.mean([c[-1][1] for c in curves["moe"]]))
    result: dict = {"reference_score": reference, "targets": {g: t for g, (_, t) in specs.items()}, "variants": {}}
    for n in names:
        mean = mean_curve(curves[n])
        reached = first_reaching(mean, reference)
        result["variants"][n] = {
            "final_score": [c[-1][1] for c in curves[n]],
            "final_returns": [{g: r["return_mean"] for g, r in m["summary"]["final_eval"].items()} for m in runs[n]],
            "env_steps_total": [m["summary"]["env_steps_total"] for m in runs[n]],
            "env_steps_per_task": [m["summary"]["env_steps_per_task"] for m in runs[n]],
            "steps_to_reference": reached,
            "steps_to_reference_per_seed": [first_reaching(c, reference) for c in curves[n]],
            "mean_curve": mean,
            "wall_s": [m["summary"]["wall_s"] for m in runs[n]],
            "dps_history": [m["summary"].get("dps", {}).get("history", []) for m in runs[n]],
            "curves": curves[n],
        }
    plain, dps = (result["variants"][n]["steps_to_reference"] for n in ("moe", "moe-dps"))
    if plain and dps is not None:
        result["dps_steps_fraction"] = dps / plain
    result["oracle"] = solve_and_leave_bound(runs["moe"], specs)
    # The same bound if the targets were lower (a fraction of the way from random to target):
    # how much stopping solved games could save had the games been solved earlier.
    result["oracle_by_target_scale"] = {
        scale: {k: v for k, v in solve_and_leave_bound(runs["moe"], {g: (lo, lo + scale * (hi - lo)) for g, (lo, hi) in specs.items()}).items() if k != "curves"}
        for scale in (1.0, 0.75, 0.5)
    }  # fmt: skip
    return result


def first_reaching(curve: list[tuple[float, float]], score: float) -> float | None:
    """Env steps at the first evaluation of ``curve`` whose score reaches ``score``."""
    return next((steps for steps, s in curve if s >= score - 1e-9), None)


def solve_and_leave_bound(plain_runs: list[dict], specs: dict[str, tuple[float, float]]) -> dict:
    """Steps a perfect solve-and-leave agent (``oracle_curve``) needs to reach the plain agent's
    final score, absolute and as a fraction of the plain agent's, with these targets."""
    plain = mean_curve([score_curve(m, specs) for m in plain_runs])
    oracle = [oracle_curve(m, specs) for m in plain_runs]
    reference = float(np.mean([score_curve(m, specs)[-1][1] for m in plain_runs]))
    reached, plain_reached = first_reaching(mean_curve(oracle), reference), first_reaching(plain, reference)
    fraction = reached / plain_reached if reached is not None and plain_reached else None
    return {"curves": oracle, "reference_score": reference, "steps_to_reference": reached, "steps_fraction": fraction}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for (name, v), color in zip(result["variants"].items(), ("tab:blue", "tab:orange")):
        for i, curve in enumerate(v["curves"]):
            x, y = zip(*curve)
            ax.plot(x, y, color=color, marker="o", markersize=3, alpha=0.8, label=name if i == 0 else None)
    for i, curve in enumerate(result.get("oracle", {}).get("curves", [])):
        x, y = zip(*curve)
        ax.plot(x, y, color="tab:green", linestyle=":", marker=".", alpha=0.8, label="perfect solve-and-leave bound (from plain runs)" if i == 0 else None)
    ax.axhline(result["reference_score"], color="grey", linestyle="--", label="S* (plain MoE final, mean of seeds)")
    ax.set_xlabel("total environment steps (all games)")
    ax.set_ylabel("mean normalised score (capped at 1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per game")
    parser.add_argument("--out", default="runs/minatar_bench", help="run directories (shared with multitask.py and ablations.py)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings to check the pipeline (results mean nothing)")
    parser.add_argument("--only", nargs="+", choices=list(variants(None)), help="train (and archive) only these variants; no summary")
    args = parser.parse_args()
    out = Path(args.out)
    table = variants(args.steps)
    if args.smoke:
        table = {k: merge(v, SMOKE if k == "moe-dps" else {k2: v2 for k2, v2 in SMOKE.items() if k2 != "dps"}) for k, v in table.items()}
    archive = None if args.smoke else ARCHIVE
    jobs = [(name, table[name], seed) for seed in args.seeds for name in table]
    if args.only:
        run_all([job for job in jobs if job[0] in args.only], out, args.parallel, "DPS benchmark", archive=archive)
        print("trained; run without --only for the summary")
        return
    result = summarise(run_all(jobs, out, args.parallel, "DPS benchmark", archive=archive))
    result.update({"seeds": args.seeds, "smoke": args.smoke, "env_steps_per_game": table["moe"]["train"]["env_steps"]})
    path = save_outputs("dps", result, plot, out if args.smoke else None)
    print(f"reference score S* = {result['reference_score']:.3f}")
    for n, v in result["variants"].items():
        reached = "never" if v["steps_to_reference"] is None else f"{v['steps_to_reference']:,.0f}"
        print(f"{n:8s} final {np.mean(v['final_score']):.3f}  env steps {np.mean(v['env_steps_total']):,.0f}  steps to S*: {reached}")
    if "dps_steps_fraction" in result:
        print(f"DPS needs {result['dps_steps_fraction']:.1%} of the plain agent's steps to reach S*")
    if result["oracle"]["steps_fraction"] is not None:
        print(f"a perfect solve-and-leave agent would need {result['oracle']['steps_fraction']:.1%} (the bound at this budget)")
    for scale, bound in result["oracle_by_target_scale"].items():
        fraction = "never" if bound["steps_fraction"] is None else f"{bound['steps_fraction']:.1%}"
        print(f"  with targets at {scale:.0%} of the way from random: bound {fraction} (S* {bound['reference_score']:.3f})")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
