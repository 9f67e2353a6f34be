"""Text games in one model, greedy returns against random legal play measured by the same script:
the four games made by TextWorld (``textworld4``) or Jericho's 9:05 (``jericho905``).

    python benchmarks/text_games.py --seeds 0 1 --parallel 2 --steps 10000   # hours on 2 CPU cores
    SCALEZERO_JERICHO_DIR=../shared/data/jericho \
        python benchmarks/text_games.py --suite jericho905 --steps 3000        # about an hour
    python benchmarks/text_games.py --smoke --out /tmp/tg_smoke              # tiny settings, minutes
    python benchmarks/text_games.py --novelty 0.3 ...                          # with a novelty bonus
    python benchmarks/text_games.py --set train.novelty_centered=true ...       # a probe

Each seed trains the shipped suite for ``--steps`` env steps per game (one torch thread),
evaluated greedily every quarter of the budget. Random legal play: uniformly random legal
commands (``random_policy_returns``, episodes run to the game's step cap like an evaluation
episode; 200 per TextWorld game, 8 for 9:05, whose new states cost Jericho's filter 0.5-1 s
each). Targets: the maximum score on the two easiest TextWorld games and on 9:05, more than
random on all. Writes ``benchmarks/results/text_games.json`` (``jericho905.json``) and
``.png``; runs are archived like the other training benchmarks. ``--novelty B`` trains with
``train.novelty_bonus: B`` (count-based exploration; evaluations report the games' own scores)
and names its outputs ``<result>_novelty<B>``; ``--set SECTION.KEY=VALUE ...`` changes any other
setting for a probe, its outputs named after the overrides the same way. Seeds other than
0 and 1 (a fresh-seed check) append ``_seeds<s>-<s>`` to the outputs' name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import yaml

from scalezero.cli import parse_overrides

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ARCHIVE,
    ROOT,
    SMOKE_MODEL,
    add_probe_option,
    merge,
    minatar_parser,
    plot_game_curves,
    probe_name,
    run_all,
    save_outputs,
    seeds_name,
)

SUITES = {"textworld4": ("text_games", 200), "jericho905": ("jericho905", 8)}
"""suite -> (result name, random episodes per game)."""
SMOKE = {
    "model": SMOKE_MODEL,
    "search": {"num_simulations": 4},
    "train": {"learning_starts": 40, "eval_episodes": 2, "batch_size": 4, "num_envs": 2},
}


def suite(name: str, steps: int, smoke: bool = False) -> dict:
    base = yaml.safe_load((ROOT / "scalezero" / "suites" / f"{name}.yaml").read_text())
    base = merge(base, {"train": {"env_steps": steps, "eval_every": max(steps // 4, 1), "checkpoint_every": steps}})
    return merge(base, SMOKE) if smoke else base


def random_returns(suite: dict, episodes: int) -> dict[str, float]:
    """Mean return of uniformly random legal play per task of ``suite``."""
    from scalezero.tasks import get_task
    from scalezero.training.evaluator import random_policy_returns

    out = {}
    for name in [t["name"] for t in suite["tasks"]]:
        task = get_task(name)
        out[name] = float(random_policy_returns(task, episodes, task.spec.max_episode_steps).mean())
    return out


def summarise(runs: list[dict], random: dict[str, float]) -> dict:
    from scalezero.tasks import get_task

    games = {}
    for game, rand in random.items():
        returns = [m["summary"]["final_eval"][game]["return_mean"] for m in runs]
        games[game] = {
            "returns": returns,
            "return_mean": float(np.mean(returns)),
            "random_return": rand,
            "max_score": get_task(game).spec.target_return,
            "curve": [[(r["env_steps"], r["return_mean"]) for r in m["eval"] if r["task"] == game] for m in runs],
        }
    easiest = list(games)[:2]  # the TextWorld levels rise in difficulty; 9:05 is alone
    return {
        "games": games,
        "wall_s": [m["summary"]["wall_s"] for m in runs],
        "targets": {
            "max_score_on_the_two_easiest": {g: min(games[g]["returns"]) >= games[g]["max_score"] for g in easiest},
            "beats_random_on_all": {g: v["return_mean"] > v["random_return"] for g, v in games.items()},
        },
    }


def markdown_table(result: dict) -> str:
    lines = ["| game | greedy return: mean (seeds) | random legal play | max score |", "|---|---|---|---|"]
    for game, g in result["games"].items():
        seeds = ", ".join(f"{x:.2f}" for x in g["returns"])
        lines.append(f"| {game} | **{g['return_mean']:.2f}** ({seeds}) | {g['random_return']:.2f} | {g['max_score']:g} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    plot_game_curves(result["games"], path, "greedy return", {"random legal": "random_return", "max score": "max_score"}, seeds=result.get("seeds"))


def main() -> None:
    parser = minatar_parser(__doc__, steps=10_000, out="runs/text_bench")
    parser.add_argument("--suite", choices=sorted(SUITES), default="textworld4")
    parser.add_argument("--novelty", type=float, default=0.0, help="train.novelty_bonus of the runs (0: the shipped suite); outputs named <result>_novelty<value>")
    add_probe_option(parser, "train.novelty_centered=true")
    args = parser.parse_args()
    probe = parse_overrides(args.set)
    name, episodes = SUITES[args.suite]
    steps = 80 if args.smoke else args.steps
    settings = suite(args.suite, steps, args.smoke)
    run_name = args.suite
    if args.novelty > 0:
        settings = merge(settings, {"train": {"novelty_bonus": args.novelty}})
        name, run_name = f"{name}_novelty{args.novelty:g}", f"{args.suite}-novelty{args.novelty:g}"
    if probe:
        settings = merge(settings, probe)
        name, run_name = probe_name(name, probe), probe_name(run_name, probe).replace("_", "-")
    name = seeds_name(name, args.seeds, [0, 1])
    jobs = [(run_name, settings, seed) for seed in args.seeds]
    runs = run_all(jobs, Path(args.out), args.parallel, args.suite, archive=None if args.smoke else ARCHIVE)
    random = random_returns(settings, min(episodes, 8) if args.smoke else episodes)
    result = summarise(runs[run_name], random)
    result["novelty_bonus"] = args.novelty
    result["probe"] = probe
    result["seeds"] = list(args.seeds)
    path = save_outputs(name, result, plot, smoke_dir=Path(args.out) if args.smoke else None)
    print(markdown_table(result))
    print("wrote", path)


if __name__ == "__main__":
    main()
