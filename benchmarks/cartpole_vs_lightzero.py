"""CartPole against LightZero's UniZero, per environment step and per wall second.

Trains ours on several seeds (the shipped ``cartpole`` suite, and optionally at LightZero's own
CartPole settings) and reads LightZero's records of the same seeds, made in the same sitting by
``../shared/peer/unizero_cartpole.py`` (one torch thread each, the two programs on separate
cores at the same time). Both evaluate greedy episodes capped at 200 steps (LightZero's
CartPole-v0): ours every ``--eval-every`` env steps, LightZero every 100 learner iterations
(``--eval-freq 100 --eval-episodes 8``).

    # LightZero, seed s, on core 0 ...
    taskset -c 0 $LZPEER/bin/python ../shared/peer/unizero_cartpole.py --algo unizero --threads 1 --seed s \\
        --max-env-step 10000 --budget-s 3000 --eval-freq 100 --eval-episodes 8
    # ... while ours trains seed s on core 1
    taskset -c 1 python benchmarks/cartpole_vs_lightzero.py --seeds s --out /tmp/cpvl
    # then the summary of everything:
    python benchmarks/cartpole_vs_lightzero.py --seeds 0 1 2 --lightzero $LZPEER_RUNS/unizero_cartpole_seed*.json

Writes ``benchmarks/results/cartpole_vs_lightzero.json`` (every evaluation of both: env steps,
wall seconds, returns) and ``cartpole_vs_lightzero.png``. Targets: ours >= 195 by 4,000 env
steps on every seed and >= 190 at every later evaluation; wall time to the first >= 195 at most a
third of LightZero's on the median seed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ARCHIVE, merge, run_all, save_outputs

from scalezero.config import load_suite

SOLVED, HOLD, BY_STEP = 195.0, 190.0, 4_000
#: Each program gets one core: evaluation in the loop (a background worker would share the core).
PROTOCOL = {"train": {"env_steps": 10_000, "eval_every": 500, "eval_episodes": 8, "eval_max_steps": 200, "checkpoint_every": 100_000,
                      "background_eval": False}}  # fmt: skip
LIGHTZERO_SETTINGS = {  # LightZero's cartpole_unizero_config, in our keys (../shared/peer/README.md)
    "model": {"embed_dim": 64, "num_layers": 2, "num_heads": 2, "mlp_hidden": 64},
    "search": {"num_simulations": 25},
    "replay": {"unroll_steps": 5},
    "train": {"num_envs": 8, "batch_size": 256, "replay_ratio": 0.25, "context_steps": 4, "lr": 1e-4},
}


def variants(steps: int, eval_every: int, lightzero_settings: bool) -> dict[str, dict]:
    protocol = merge(PROTOCOL, {"train": {"env_steps": steps, "eval_every": eval_every}})
    shipped = merge(load_suite("cartpole").to_dict(), protocol)
    out = {"ours": shipped}
    if lightzero_settings:
        out["ours-lz-settings"] = merge(shipped, LIGHTZERO_SETTINGS)
    return out


def our_curve(metrics: dict) -> list[dict]:
    """Every evaluation of one of our runs: env steps, wall seconds (with and without the
    evaluations so far), mean return."""
    rows, eval_total = [], 0.0
    for r in metrics["eval"]:
        eval_total += r.get("eval_s", 0.0)
        rows.append({"env_steps": r["env_steps"], "wall_s": r["wall_s"], "train_wall_s": round(r["wall_s"] - eval_total, 2),
                     "return_mean": r["return_mean"], "return_std": r["return_std"]})  # fmt: skip
    return rows


def lightzero_curve(record: dict) -> list[dict]:
    """Every evaluation of a LightZero record (the entry's own and the harness's final one).
    Times count from its first collect (``setup_s`` excluded); without evaluations, each one is
    charged the mean evaluation time (the record keeps only the total)."""
    setup = record.get("setup_s") or 0.0
    calls = max(record["phase_calls"].get("eval", 0), 1)
    per_eval = record["phase_s"].get("eval", 0.0) / calls
    evals = list(record["all_entry_evals"])
    rows = []
    for i, e in enumerate(evals):
        if not e.get("returns"):
            continue
        wall = e["t"] - setup
        rows.append({"env_steps": e["envstep"], "wall_s": round(wall, 2), "train_wall_s": round(wall - (i + 1) * per_eval, 2),
                     "return_mean": float(np.mean(e["returns"])), "return_std": float(np.std(e["returns"])), "returns": e["returns"]})  # fmt: skip
    final = record.get("final_eval")
    if final and final.get("returns"):
        wall = record["wall_s"] - setup + final["eval_s"]
        rows.append({"env_steps": final["envstep"], "wall_s": round(wall, 2), "train_wall_s": round(record["wall_s"] - setup - len(evals) * per_eval, 2),
                     "return_mean": float(np.mean(final["returns"])), "return_std": float(np.std(final["returns"])), "returns": final["returns"],
                     "final": True})  # fmt: skip
    return rows


def curve_summary(curve: list[dict]) -> dict:
    """First evaluation >= 195 (env steps, wall), whether it came by 4,000 steps, and the
    lowest mean return of every later evaluation."""
    first = next((r for r in curve if r["return_mean"] >= SOLVED), None)
    later = [r["return_mean"] for r in curve if first is not None and r["env_steps"] > first["env_steps"]]
    return {
        "first_solved_env_steps": first["env_steps"] if first else None,
        "first_solved_wall_s": first["wall_s"] if first else None,
        "first_solved_train_wall_s": first["train_wall_s"] if first else None,
        "solved_by_4000": bool(first and first["env_steps"] <= BY_STEP),
        "min_after_first": min(later) if later else None,
        "held_190": bool(first) and all(x >= HOLD for x in later),
        "final_return": curve[-1]["return_mean"] if curve else None,
        "env_steps": curve[-1]["env_steps"] if curve else 0,
    }


def _median(values: list[float | None]) -> float | None:
    finite = [math.inf if v is None else v for v in values]
    if not finite:
        return None
    m = float(np.median(finite))
    return None if math.isinf(m) else m


def summarise(ours: dict[str, dict[int, list[dict]]], lightzero: dict[int, list[dict]]) -> dict:
    agents = {name: {s: curve_summary(c) for s, c in curves.items()} for name, curves in ours.items()}
    agents["lightzero"] = {s: curve_summary(c) for s, c in lightzero.items()}
    out = {"per_seed": agents, "targets": {}}
    for name, seeds in agents.items():
        out["targets"][name] = {
            "solved_by_4000_every_seed": all(v["solved_by_4000"] for v in seeds.values()),
            "held_190_every_seed": all(v["held_190"] for v in seeds.values()),
            "median_wall_to_195_s": _median([v["first_solved_wall_s"] for v in seeds.values()]),
            "median_train_wall_to_195_s": _median([v["first_solved_train_wall_s"] for v in seeds.values()]),
        }
    lz = out["targets"]["lightzero"]["median_wall_to_195_s"]
    for name in ours:
        mine = out["targets"][name]["median_wall_to_195_s"]
        out["targets"][name]["wall_ratio_to_lightzero"] = round(mine / lz, 3) if mine and lz else None
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = {"ours": "tab:blue", "ours-lz-settings": "tab:green", "lightzero": "tab:red"}
    for name, seeds in result["curves"].items():
        for i, (seed, curve) in enumerate(sorted(seeds.items())):
            for ax, key in zip(axes, ("env_steps", "wall_s")):
                ax.plot([r[key] for r in curve], [r["return_mean"] for r in curve], color=colours.get(name, "grey"),
                        alpha=0.8, marker=".", label=name if i == 0 else None)  # fmt: skip
    for ax, label in zip(axes, ("env steps", "wall seconds (evaluation included)")):
        ax.axhline(SOLVED, color="black", lw=0.8, ls="--")
        ax.set_xlabel(label, fontsize=11)
        ax.set_ylabel("greedy return (8 episodes, cap 200)", fontsize=11)
        ax.grid(alpha=0.3)
    axes[0].axvline(BY_STEP, color="grey", lw=0.8, ls=":")
    axes[0].legend()
    fig.suptitle("CartPole: scalezero vs LightZero UniZero (one line per seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--lightzero", nargs="*", default=[], help="LightZero records (unizero_cartpole_seed<s>_*.json)")
    parser.add_argument("--lightzero-settings", action="store_true", help="also train ours at LightZero's CartPole settings")
    parser.add_argument("--only", nargs="+", choices=["ours", "ours-lz-settings"], help="train (and archive) only these agents; no summary")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/cartpole_vs_lightzero"))
    args = parser.parse_args()

    suites = variants(args.steps, args.eval_every, args.lightzero_settings or "ours-lz-settings" in (args.only or []))
    jobs = [(name, suite, seed) for name, suite in suites.items() for seed in args.seeds if not args.only or name in args.only]
    metrics = run_all(jobs, args.out, args.parallel, "cartpole vs lightzero", archive=ARCHIVE)
    if args.only:
        return
    ours = {name: {seed: our_curve(m) for seed, m in zip(args.seeds, metrics[name])} for name in suites}
    lightzero = {}
    for path in args.lightzero:
        record = json.loads(Path(path).read_text())
        lightzero[int(record["seed"])] = lightzero_curve(record)
    result = {"curves": {**ours, "lightzero": lightzero}, **summarise(ours, lightzero)}
    result["lightzero_records"] = [str(p) for p in args.lightzero]
    path = save_outputs("cartpole_vs_lightzero", result, plot)
    for name, t in result["targets"].items():
        print(name, json.dumps(t))
        for seed, v in sorted(result["per_seed"][name].items()):
            print(f"  seed {seed}: first >= 195 at {v['first_solved_env_steps']} steps / {v['first_solved_wall_s']} s, "
                  f"min after {v['min_after_first']}, final {v['final_return']}")  # fmt: skip
    print("wrote", path)


if __name__ == "__main__":
    main()
