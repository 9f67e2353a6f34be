"""MinAtar single-task: one agent per game, the shipped ``minatar`` model size, full-length
evaluation episodes; how sharp the search targets are and how much each game learns.

    python benchmarks/minatar_single.py --seeds 2 3 --parallel 2      # hours on 2 CPU cores
    python benchmarks/minatar_single.py --games space_invaders          # train these games now
    python benchmarks/minatar_single.py --smoke --out /tmp/ms_smoke   # tiny settings, minutes
    python benchmarks/minatar_single.py --seeds 2 3 --set train.reset_every=5000   # a probe

Each game trains alone for ``--steps`` env steps (the minatar suite's settings with one task, at
``REPLAY_RATIO`` updates per env step and learning rate ``LEARNING_RATE``, collecting with
``EXPLORATION``, replaying with ``PRIORITY`` and resetting with ``RESET``),
evaluated on 32 greedy episodes that run to the game's own end. Reports per game: the final
return (mean over seeds, and each seed), the final policy loss against ``log |A|`` (a policy
loss near ``log |A|`` means the search targets were nearly uniform), and the targets: policy loss
at most 0.75 log|A| on every game, every return at least twice the earlier single-task figure
(``BEFORE``), freeway at least 10. Runs are archived like the other MinAtar benchmarks.
Writes ``benchmarks/results/minatar_single.json`` and ``.png``.

The grid takes about 15 CPU-hours, so it is filled over several sittings: ``--games`` trains
only those games, and the summary also takes every other game whose runs of these settings and
seeds are archived; a game with neither is listed under ``missing``. Seeds 0 and 1 picked the
protocol (the probes of BENCHMARKS.md), so its grid is measured on seeds 2 and 3; other seeds
(a fresh-seed check) write ``minatar_single_seeds<s>-<s>.json`` and leave the grid's file alone.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from scalezero.cli import parse_overrides

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ARCHIVE,
    SMOKE_MODEL,
    add_probe_option,
    is_archived,
    late_losses,
    merge,
    minatar_parser,
    minatar_suite,
    plot_game_curves,
    probe_name,
    run_all,
    run_path,
    save_outputs,
    seeds_name,
)

#: Single-task final returns at 20,000 env steps before this benchmark's learner changes
#: (BENCHMARKS.md, "MinAtar: single-task vs dense vs MoE multi-task", mean of 2 seeds, commit
#: fbdc94e; evaluation capped at 1,000 steps).
BEFORE = {
    "minatar-breakout": 5.09,
    "minatar-asterix": 0.58,
    "minatar-freeway": 0.06,
    "minatar-seaquest": 0.59,
    "minatar-space_invaders": 7.34,
}
FREEWAY_TARGET = 10.0
#: The seeds of the benchmark's grid (``minatar_single.json``).
PROTOCOL_SEEDS = [2, 3]
#: Updates per env step. The shipped suite's 0.25 keeps ``make demo`` short; one game alone at
#: 1.0 reached at 10,000 steps what 0.25 reached at 20,000 (BENCHMARKS.md, replay-ratio probe),
#: so this benchmark of learning per env step trains at 1.0 (four times the updates).
REPLAY_RATIO = 1.0
#: The shipped rate is 3e-4. In 10,000-step probes at replay ratio 1.0, 1e-3 learned faster on
#: space_invaders and as fast on breakout (BENCHMARKS.md, learning-rate probes; the probe's
#: 11.97 on space_invaders did not repeat under this benchmark, which gave 9.03 at that point),
#: so this benchmark trains at 1e-3.
LEARNING_RATE = 1e-3
#: Collection starts with random runs of actions and sharpens onto the search over the first
#: quarter of the budget (temporally extended epsilon-greedy, docs/search.md): without it, four of
#: the ten runs of the ratio-1.0 grid never met a reward (asterix seed 1, freeway seed 1, both
#: seaquest seeds); with it, on one seed per game, four of six runs ended ahead (BENCHMARKS.md,
#: epsilon-z probe). The settings were picked once, before any run.
EXPLORATION = {"collect_epsilon": 1.0, "collect_epsilon_final": 0.01, "epsilon_anneal": 0.25, "epsilon_zeta": 2.0}
#: Prioritized replay with EfficientZero's exponents: +21% on space_invaders seed 0, level on
#: breakout (BENCHMARKS.md, prioritized replay probe), no slower per update.
PRIORITY = {"priority_alpha": 0.6, "priority_beta": 0.4}
#: Shrink-and-perturb resets every 5,000 updates (about every 5,000 env steps at this ratio):
#: heads fresh, other weights keep half of themselves, optimiser moments cleared. Over seeds 2
#: and 3 (BENCHMARKS.md, "Resets on every game"): freeway 9.98 against 2.56, space_invaders 13.06
#: against 11.28, breakout 6.69 against 6.89, seaquest 0.58 against 0.41,
#: asterix 0.62 against 0.80 (the seeds spread 0.34-0.91 with or without resets).
RESET = {"reset_every": 5000, "reset_keep": 0.5}
POLICY_LOSS_FRACTION = 0.75
GAMES = [game.removeprefix("minatar-") for game in BEFORE]
SMOKE = {
    "model": SMOKE_MODEL,
    "search": {"num_simulations": 4},
    "train": {"env_steps": 160, "learning_starts": 80, "eval_every": 160, "eval_episodes": 2, "eval_max_steps": 30, "batch_size": 4, "checkpoint_every": 160},
}


def variants(steps: int | None, smoke: bool = False, probe: dict | None = None) -> dict[str, dict]:
    """``single-<game>`` -> a suite of that game alone (no conflict diagnostic: one task);
    ``probe`` ({section: {key: value}}) changes the protocol for a probe (its runs get their own
    digest, so they are archived beside the protocol's and never mistaken for them)."""
    protocol = {"train": {"conflict_every": 0, "replay_ratio": REPLAY_RATIO, "lr": LEARNING_RATE, **RESET}, "search": EXPLORATION, "replay": PRIORITY}
    base = merge(merge(minatar_suite(moe=False, steps=steps), protocol), probe or {})
    if smoke:
        base = merge(base, SMOKE)
    return {f"single-{t['name'].removeprefix('minatar-')}": {**base, "tasks": [t]} for t in base["tasks"]}


def summarise(runs: dict[str, list[dict]], missing: list[str] = ()) -> dict:
    from scalezero.tasks import get_task

    games = {}
    for seeds in runs.values():
        game = next(iter(seeds[0]["summary"]["final_eval"]))
        actions = get_task(game).spec.num_actions
        returns = [m["summary"]["final_eval"][game]["return_mean"] for m in seeds]
        losses = [late_losses(m).get("policy", math.nan) for m in seeds]  # the last tenth of training
        target = FREEWAY_TARGET if game == "minatar-freeway" else 2 * BEFORE[game]
        games[game] = {
            "returns": returns,
            "return_mean": float(np.mean(returns)),
            "before": BEFORE[game],
            "return_target": target,
            "policy_loss": losses,
            "log_actions": math.log(actions),
            "policy_loss_over_log_actions": [x / math.log(actions) for x in losses],
            "wall_s": [m["summary"]["wall_s"] for m in seeds],
            "curve": [[(r["env_steps"], r["return_mean"]) for r in m["eval"]] for m in seeds],
        }
    return {
        "games": games,
        "missing": list(missing),
        "targets": {
            "policy_loss_at_most_0.75_log_actions": all(max(g["policy_loss_over_log_actions"]) <= POLICY_LOSS_FRACTION for g in games.values()),
            "returns_at_least_target": {game: g["return_mean"] >= g["return_target"] for game, g in games.items()},
        },
    }


def result_name(probe: dict, seeds: list[int]) -> str:
    """``minatar_single`` for the grid, with the probe's overrides and, for seeds other than
    :data:`PROTOCOL_SEEDS`, the seeds appended, so neither overwrites the grid's results."""
    return seeds_name(probe_name("minatar_single", probe), seeds, PROTOCOL_SEEDS)


def markdown_table(result: dict) -> str:
    lines = [
        "| game | before (2 seeds) | now: mean (seeds) | target | policy loss / log\\|A\\| (seeds) | wall per run |",
        "|---|---|---|---|---|---|",
    ]
    for game, g in result["games"].items():
        seeds = ", ".join(f"{x:.2f}" for x in g["returns"])
        ratio = ", ".join(f"{x:.2f}" for x in g["policy_loss_over_log_actions"])
        walls = " / ".join(f"{w:,.0f}" for w in g["wall_s"])
        lines.append(f"| {game.removeprefix('minatar-')} | {g['before']:.2f} | **{g['return_mean']:.2f}** ({seeds}) | >= {g['return_target']:.2f} | {ratio} | {walls} s |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    plot_game_curves(result["games"], path, "greedy return (32 full episodes)", {"before": "before", "target": "return_target"}, prefix="minatar-", seeds=result.get("seeds"))


def main() -> None:
    parser = minatar_parser(__doc__)
    parser.add_argument("--games", nargs="+", choices=GAMES, help="train only these games (default: all five)")
    add_probe_option(parser, "train.reset_every=5000")
    args = parser.parse_args()
    probe = parse_overrides(args.set)
    table = variants(None if args.smoke else args.steps, smoke=args.smoke, probe=probe)
    archive = None if args.smoke else ARCHIVE
    out = Path(args.out)
    wanted = {f"single-{g}" for g in args.games or GAMES}

    def archived(name: str) -> bool:
        return all(is_archived(run_path(out, name, table[name], s), archive) for s in args.seeds)

    chosen = [name for name in table if name in wanted or archived(name)]
    jobs = [(name, table[name], seed) for name in chosen for seed in args.seeds]
    runs = run_all(jobs, out, args.parallel, "minatar single-task", archive=archive)
    result = summarise(runs, missing=["minatar-" + name.removeprefix("single-") for name in table if name not in chosen])
    result["seeds"] = list(args.seeds)
    name = result_name(probe, args.seeds)
    result["probe"] = probe
    path = save_outputs(name, result, plot, smoke_dir=Path(args.out) if args.smoke else None)
    print(markdown_table(result))
    if result["missing"]:
        print("no runs yet of", ", ".join(result["missing"]))
    print("wrote", path)


if __name__ == "__main__":
    main()
