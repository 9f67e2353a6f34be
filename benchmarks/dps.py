"""Dynamic Parameter Scaling on MinAtar: plain MoE multi-task vs MoE + DPS, same budget per game.

All agents are the MinAtar benchmarks' MoE configuration (``common.minatar_suite``; the plain
agent is the very same runs as the MoE agent of multitask.py); the DPS agents add LoRA stages
and the DPS controller. Each game gets a target return; a game whose evaluation return reaches
it is solved and leaves training, which saves environment steps. Two DPS settings:

* ``moe-dps``: the CPU targets of ``common.CPU_TARGETS``; 4 stages (3 LoRA adapters), stage 0
  runs at least a fifth of the updates and at most two fifths, each later stage at most a fifth;
* ``moe-dps-tuned``: targets 75% of the way from the random return to the CPU target (games the
  plain agent reaches within the budget, most of them before its end), 3 stages, stage 0 runs at
  least three fifths of the updates and at most four fifths, the next stage at most a fifth:
  the backbone trains longer before it is frozen;
* ``moe-dps-reopen``: ``moe-dps-tuned`` with ``dps.reopen_below: 0.5``: a solved game whose
  evaluation return falls below half of the way from random to its target rejoins training
  (the tuned runs forgot games after they left).

The score of a run at an evaluation is the mean over games of ``(return - random) / (target -
random)`` capped at 1, with the targets of the DPS setting it is compared under. Seeds are
averaged evaluation by evaluation (score and total steps). The reference score S* is the plain
agent's final mean score; the benchmark reports, for each agent, the total environment steps
(all games) its seed-averaged curve has spent when it first reaches S*, the final scores at
equal per-game budget, and the bound a perfect solve-and-leave agent would reach
(``oracle_curve``).

    python benchmarks/dps.py --seeds 0 1 --parallel 2 --steps 20000     # hours on 2 CPU cores
    python benchmarks/dps.py --seeds 0 1 --settings moe-dps moe-dps-tuned  # only these settings
    python benchmarks/dps.py --smoke --out /tmp/dps_smoke                # tiny settings, minutes

Writes ``benchmarks/results/dps.json`` and ``benchmarks/results/dps.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ARCHIVE, CPU_TARGETS, SMOKE_MODEL, merge, minatar_parser, minatar_suite, returns_by_eval, run_all, save_outputs

SMOKE = {
    "model": SMOKE_MODEL,
    "search": {"num_simulations": 4},
    "train": {"env_steps": 200, "learning_starts": 80, "eval_every": 100, "eval_episodes": 2, "eval_max_steps": 30, "batch_size": 4, "checkpoint_every": 200},
    "dps": {"min_stage0_updates": 10, "max_stage_updates": 10},
}
TARGET_SCALE = {"moe-dps": 1.0, "moe-dps-tuned": 0.75, "moe-dps-reopen": 0.75}
"""Each DPS setting's targets, as the fraction of the way from the random return to the CPU target."""


def targets(scale: float) -> dict[str, tuple[float, float]]:
    """Game -> (random return, target) with the target ``scale`` of the way to the CPU target."""
    from scalezero.tasks import get_task

    out = {}
    for game, target in CPU_TARGETS.items():
        low = get_task(game).spec.random_return or 0.0
        out[game] = (low, target if scale == 1.0 else round(low + scale * (target - low), 2))
    return out


def variants(steps: int | None) -> dict[str, dict]:
    base = minatar_suite(moe=True, steps=steps)
    updates = int(base["train"]["replay_ratio"] * (base["train"]["env_steps"] - base["train"]["learning_starts"]))
    lora = {"lora_rank": 8, "lora_alpha": 16.0}
    # stage 0: at least 3/5, timed out after 4/5; stage 1 at most 1/5; stage 2 the rest
    tuned_model, tuned_dps = {**lora, "lora_stages": 3}, {"min_stage0_updates": updates * 3 // 5, "max_stage_updates": updates // 5}
    schedules = {
        # stage 0: at least 1/5 of the updates, timed out after 2/5; later stages at most 1/5 each
        "moe-dps": ({**lora, "lora_stages": 4}, {"min_stage0_updates": updates // 5, "max_stage_updates": updates // 5}),
        "moe-dps-tuned": (tuned_model, tuned_dps),
        # the tuned schedule, and a solved game rejoins training when its evaluation return falls
        # below half of the way from random to its target (the tuned runs forgot solved games)
        "moe-dps-reopen": (tuned_model, {**tuned_dps, "reopen_below": 0.5}),
    }
    table = {"moe": base}
    for name, (model, dps) in schedules.items():
        goal = targets(TARGET_SCALE[name])
        tasks = [{"name": t["name"], "target_return": goal[t["name"]][1]} for t in base["tasks"]]
        table[name] = merge({**base, "tasks": tasks}, {"model": model, "dps": {"enabled": True, **dps}})
    return table


def _capped_score(ret: float, spec: tuple[float, float]) -> float:
    """``(return - random) / (target - random)`` capped at 1; ``spec`` is (random, target)."""
    return min(1.0, (ret - spec[0]) / (spec[1] - spec[0]))


def score_curve(metrics: dict, specs: dict[str, tuple[float, float]]) -> list[tuple[int, float]]:
    """(total env steps, mean capped normalised score) at each evaluation of a run."""
    totals = {row["env_steps"]: row.get("env_steps_total") or row["env_steps"] * len(specs) for row in metrics["eval"]}
    return [(totals[step], float(np.mean([_capped_score(r, specs[g]) for g, r in returns.items()]))) for step, returns in returns_by_eval(metrics).items()]


def oracle_curve(metrics: dict, specs: dict[str, tuple[float, float]]) -> list[tuple[int, float]]:
    """A perfect solve-and-leave agent replayed on a plain run: the bound on what DPS can save.

    Each game leaves training at the first evaluation where the plain run reached its target and
    counts as solved (score 1) from then on; the other games are assumed to learn exactly as in
    the plain run. Returns (total env steps, mean capped score) at each evaluation, so the
    savings it shows are the most that stopping solved games can give at this budget and
    evaluation spacing, whatever the stage schedule.
    """
    solved: set[str] = set()
    total, previous, curve = 0, 0, []
    for step, returns in returns_by_eval(metrics).items():
        total += (step - previous) * (len(specs) - len(solved))
        previous = step
        curve.append((total, float(np.mean([1.0 if g in solved else _capped_score(r, specs[g]) for g, r in returns.items()]))))
        solved |= {g for g, r in returns.items() if r >= specs[g][1]}
    return curve


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[float, float]]:
    """Seeds averaged evaluation by evaluation: (mean total env steps, mean score)."""
    n = min(len(c) for c in curves)
    return [(float(np.mean([c[i][0] for c in curves])), float(np.mean([c[i][1] for c in curves]))) for i in range(n)]


def summarise(runs: dict[str, list[dict]], specs_by_variant: dict[str, dict[str, tuple[float, float]]] | None = None) -> dict:
    """Per DPS variant, its comparison with the plain runs under its targets; per run, the raw
    figures. ``specs_by_variant`` maps each DPS variant to game -> (random return, target)."""
    specs_by_variant = specs_by_variant or {n: targets(TARGET_SCALE[n]) for n in runs if n != "moe"}
    result: dict = {"runs": {}, "comparisons": {}}
    for n, ms in runs.items():
        result["runs"][n] = {
            "final_returns": [{g: r["return_mean"] for g, r in m["summary"]["final_eval"].items()} for m in ms],
            "env_steps_total": [m["summary"]["env_steps_total"] for m in ms],
            "env_steps_per_task": [m["summary"]["env_steps_per_task"] for m in ms],
            "wall_s": [m["summary"]["wall_s"] for m in ms],
            "dps_history": [m["summary"].get("dps", {}).get("history", []) for m in ms],
        }
    for n, specs in specs_by_variant.items():
        curves = {"moe": [score_curve(m, specs) for m in runs["moe"]], n: [score_curve(m, specs) for m in runs[n]]}
        reference = float(np.mean([c[-1][1] for c in curves["moe"]]))
        agents = {}
        for agent, cs in curves.items():
            mean = mean_curve(cs)
            agents[agent] = {
                "final_score": [c[-1][1] for c in cs],
                "steps_to_reference": first_reaching(mean, reference),
                "steps_to_reference_per_seed": [first_reaching(c, reference) for c in cs],
                "mean_curve": mean,
                "curves": cs,
            }
        plain, dps = agents["moe"]["steps_to_reference"], agents[n]["steps_to_reference"]
        result["comparisons"][n] = {
            "targets": {g: t for g, (_, t) in specs.items()},
            "reference_score": reference,
            "agents": agents,
            "dps_steps_fraction": dps / plain if plain and dps is not None else None,
            "oracle": solve_and_leave_bound(runs["moe"], specs),
        }
    # The bound for lower targets (a fraction of the way from random to the first setting's):
    # how much stopping solved games could save had the games been solved earlier.
    first = next(iter(specs_by_variant.values()))
    result["oracle_by_target_scale"] = {
        scale: {k: v for k, v in solve_and_leave_bound(runs["moe"], {g: (lo, lo + scale * (hi - lo)) for g, (lo, hi) in first.items()}).items() if k != "curves"}
        for scale in (1.0, 0.75, 0.5)
    }  # fmt: skip
    return result


def first_reaching(curve: list[tuple[float, float]], score: float) -> float | None:
    """Env steps at the first evaluation of ``curve`` whose score reaches ``score``."""
    return next((steps for steps, s in curve if s >= score - 1e-9), None)


def solve_and_leave_bound(plain_runs: list[dict], specs: dict[str, tuple[float, float]]) -> dict:
    """Steps a perfect solve-and-leave agent (``oracle_curve``) needs to reach the plain agent's
    final score, absolute and as a fraction of the plain agent's, with these targets."""
    curves = [score_curve(m, specs) for m in plain_runs]
    plain = mean_curve(curves)
    oracle = [oracle_curve(m, specs) for m in plain_runs]
    reference = float(np.mean([c[-1][1] for c in curves]))
    reached, plain_reached = first_reaching(mean_curve(oracle), reference), first_reaching(plain, reference)
    fraction = reached / plain_reached if reached is not None and plain_reached else None
    return {"curves": oracle, "reference_score": reference, "steps_to_reference": reached, "steps_fraction": fraction}


def markdown_table(result: dict) -> str:
    """The BENCHMARKS table: per game final returns, steps used, steps to S* and the bound."""
    runs = result["runs"]
    names = list(runs)
    comparisons = result["comparisons"]

    def cell(values: list[float], fmt: str = "{:.2f}") -> str:
        return f"{fmt.format(np.mean(values))} ({', '.join(fmt.format(x) for x in values)})"

    def steps(x: float | None) -> str:
        return "never" if x is None else f"{x:,.0f}"

    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for game in runs["moe"]["final_returns"][0]:
        lines.append(f"| final return, {game.removeprefix('minatar-')} | " + " | ".join(cell([f[game] for f in runs[n]["final_returns"]]) for n in names) + " |")
    lines.append("| env steps used, all games | " + " | ".join(cell(runs[n]["env_steps_total"], "{:,.0f}") for n in names) + " |")
    solved = {n: [sorted({e["task"].removeprefix("minatar-") for e in h if e["event"] == "solved"}) for h in runs[n]["dps_history"]] for n in names}
    lines.append("| games ever solved (per seed) | " + " | ".join("; ".join(", ".join(g) or "none" for g in solved[n]) if n != "moe" else "" for n in names) + " |")
    switches = {n: ["/".join(f"{e['env_steps']:,}" for e in h if e["event"] == "stage") for h in runs[n]["dps_history"]] for n in names}
    lines.append("| stage switches at env steps per game (per seed) | " + " | ".join("; ".join(s or "none" for s in switches[n]) if n != "moe" else "" for n in names) + " |")
    for name, c in comparisons.items():
        agents = c["agents"]
        row = {n: "" for n in names}
        row["moe"], row[name] = cell(agents["moe"]["final_score"], "{:.3f}"), cell(agents[name]["final_score"], "{:.3f}")
        lines.append(f"| final mean capped score, {name}'s targets | " + " | ".join(row[n] for n in names) + " |")
        row = {n: "" for n in names}
        row["moe"], row[name] = steps(agents["moe"]["steps_to_reference"]), steps(agents[name]["steps_to_reference"])
        lines.append(f"| env steps to S* = {c['reference_score']:.3f} ({name}'s targets) | " + " | ".join(row[n] for n in names) + " |")
        fraction = "-" if c["dps_steps_fraction"] is None else f"{c['dps_steps_fraction']:.0%}"
        bound = "-" if c["oracle"]["steps_fraction"] is None else f"{c['oracle']['steps_fraction']:.0%}"
        row = {n: "" for n in names}
        row[name] = f"**{fraction}** (bound {bound})"
        lines.append("| steps to S* / plain's (target <= 80%; perfect solve-and-leave bound) | " + " | ".join(row[n] for n in names) + " |")
    lines.append("| wall time per run | " + " | ".join(" / ".join(f"{w:,.0f}" for w in runs[n]["wall_s"]) + " s" for n in names) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comparisons = result["comparisons"]
    fig, axes = plt.subplots(1, len(comparisons), figsize=(6.5 * len(comparisons), 3.8), squeeze=False)
    for ax, (name, c) in zip(axes[0], comparisons.items()):
        for (agent, v), color in zip(c["agents"].items(), ("tab:blue", "tab:orange")):
            for i, curve in enumerate(v["curves"]):
                x, y = zip(*curve)
                ax.plot(x, y, color=color, marker="o", markersize=3, alpha=0.8, label=agent if i == 0 else None)
        for i, curve in enumerate(c["oracle"]["curves"]):
            x, y = zip(*curve)
            label = "perfect solve-and-leave bound (from plain runs)" if i == 0 else None
            ax.plot(x, y, color="tab:green", linestyle=":", marker=".", alpha=0.8, label=label)
        ax.axhline(c["reference_score"], color="grey", linestyle="--", label="S* (plain MoE final, mean of seeds)")
        ax.set_title(f"{name}: targets {TARGET_SCALE.get(name, 1.0):.0%} of the way to the CPU targets", fontsize=9)
        ax.set_xlabel("total environment steps (all games)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("mean normalised score (capped at 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = minatar_parser(__doc__)
    parser.add_argument("--only", nargs="+", choices=list(variants(None)), help="train (and archive) only these variants; no summary")
    parser.add_argument("--settings", nargs="+", choices=[n for n in variants(None) if n != "moe"], help="summarise only these DPS settings (default: all)")
    args = parser.parse_args()
    out = Path(args.out)
    table = variants(args.steps)
    if args.settings:
        table = {n: v for n, v in table.items() if n == "moe" or n in args.settings}
    if args.smoke:
        table = {k: merge(v, SMOKE if "dps" in v else {k2: v2 for k2, v2 in SMOKE.items() if k2 != "dps"}) for k, v in table.items()}
    archive = None if args.smoke else ARCHIVE
    jobs = [(name, table[name], seed) for seed in args.seeds for name in table]
    if args.only:
        run_all([job for job in jobs if job[0] in args.only], out, args.parallel, "DPS benchmark", archive=archive)
        print("trained; run without --only for the summary")
        return
    result = summarise(run_all(jobs, out, args.parallel, "DPS benchmark", archive=archive))
    result.update({"seeds": args.seeds, "smoke": args.smoke, "env_steps_per_game": table["moe"]["train"]["env_steps"]})
    path = save_outputs("dps", result, plot, out if args.smoke else None)
    for name, c in result["comparisons"].items():
        print(f"{name}: targets {c['targets']}, S* = {c['reference_score']:.3f}")
        for agent, v in c["agents"].items():
            reached = "never" if v["steps_to_reference"] is None else f"{v['steps_to_reference']:,.0f}"
            steps = np.mean(result["runs"][agent]["env_steps_total"])
            print(f"  {agent:14s} final {np.mean(v['final_score']):.3f}  env steps {steps:,.0f}  steps to S*: {reached}")
        fraction = "-" if c["dps_steps_fraction"] is None else f"{c['dps_steps_fraction']:.1%}"
        bound = "-" if c["oracle"]["steps_fraction"] is None else f"{c['oracle']['steps_fraction']:.1%}"
        print(f"  DPS steps to S* / plain: {fraction}; a perfect solve-and-leave agent: {bound}")
    for scale, bound in result["oracle_by_target_scale"].items():
        fraction = "never" if bound["steps_fraction"] is None else f"{bound['steps_fraction']:.1%}"
        print(f"bound with targets at {scale:.0%} of the way from random: {fraction} (S* {bound['reference_score']:.3f})")
    print(markdown_table(result))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
